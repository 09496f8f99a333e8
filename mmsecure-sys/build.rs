//! Links the kernel routines on Windows targets; off Windows the host backend defines them with
//! `#[no_mangle]`, and nothing is linked.
//!
//! `cargo:rustc-link-lib=ntoskrnl` asks for an import library of `ntoskrnl.exe` (kind `dylib`,
//! the default), which each Windows toolchain turns into its own spelling:
//!
//! - MSVC targets (`*-windows-msvc`, link.exe or lld-link): `ntoskrnl.lib`, looked up in the
//!   library path, where the WDK's `Lib\<version>\km\<arch>\ntoskrnl.lib` is in a driver build
//!   (the WDK's build environment sets `LIB`; wdk-build adds the folder as a link search path).
//! - GNU targets (`*-windows-gnu`, mingw-w64's ld): `-lntoskrnl`, which finds mingw-w64's
//!   `libntoskrnl.a` in the toolchain's own library folder.
//!
//! Both were checked: a small no_std driver calling `MmSecureVirtualMemory` through this crate,
//! linked once by mingw-w64 gcc (Debian's rustc 1.63) and once by lld-link against an MSVC-format
//! `ntoskrnl.lib` (rustup's stable), imports it from `ntoskrnl.exe` (`objdump -p`: `DLL Name:
//! ntoskrnl.exe`).
//!
//! Why not `#[link(name = "ntoskrnl.exe", kind = "raw-dylib")]`, which needs no import library at
//! all: raw-dylib is stable only since Rust 1.71, and the MSRV is 1.63. Why not a `#[link]`
//! attribute at all: the `extern` block is generated and shared with the host backend, and the
//! platform choice belongs to one place, here. (`cargo:` rather than `cargo::` for the same MSRV.)
//!
//! mingw-w64 10's `libntoskrnl.a` lacks `MmSecureVirtualMemoryEx`: a driver that imports it
//! statically must bring an import library that has it. The `mmsecure` crate never imports it; it
//! looks it up at run time with `MmGetSystemRoutineAddress`.
//!
//! The `links = "mmsecure_ntoskrnl"` key is this crate's alone (a `links` value may appear once in
//! a build graph; `ntoskrnl` would collide with any other crate that picked the obvious name), and
//! it lets a build replace this script from `.cargo/config.toml`
//! (`[target.<triple>.mmsecure_ntoskrnl]`), for instance to add a `rustc-link-search` for a WDK
//! outside the library path.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // CARGO_CFG_WINDOWS is set when the *target* is Windows (the build script itself runs on the
    // host, so `cfg!(windows)` here would describe the wrong machine).
    if std::env::var_os("CARGO_CFG_WINDOWS").is_some() {
        println!("cargo:rustc-link-lib=ntoskrnl");
    }
}
