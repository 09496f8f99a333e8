//! Chooses the backend and links it: on Windows targets the kernel routines, imported from
//! `ntoskrnl.exe`; off Windows, or on Windows with the `host` feature (a driver's user-mode tests),
//! the host model, which defines them with `#[no_mangle]`, and nothing is linked. The choice is
//! the cfg `mmsecure_host`, set here and read by `src/lib.rs`.
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
    declare_cfg();
    // CARGO_CFG_WINDOWS is set when the *target* is Windows (the build script itself runs on the
    // host, so `cfg!(windows)` here would describe the wrong machine). CARGO_FEATURE_HOST is set
    // by the `host` feature.
    let windows = std::env::var_os("CARGO_CFG_WINDOWS").is_some();
    let host_feature = std::env::var_os("CARGO_FEATURE_HOST").is_some();
    if !windows || host_feature {
        // The one platform seam (see `src/lib.rs`): the model is the backend, nothing is linked.
        println!("cargo:rustc-cfg={HOST_CFG}");
    } else {
        println!("cargo:rustc-link-lib=ntoskrnl");
    }
}

/// Set when the host model is the backend: off Windows, or on Windows with the `host` feature
/// (`cfg(any(not(windows), feature = "host"))`, spelled once here rather than at every use). A
/// `links` override of this script in `.cargo/config.toml` must set it too for such builds.
const HOST_CFG: &str = "mmsecure_host";

/// Declares `mmsecure_host` to rustc's cfg checking, which is on from Rust 1.80 (an undeclared
/// cfg warns there). Older cargo does not know `rustc-check-cfg` (cargo 1.65 warns about it)
/// and older rustc checks nothing, so the line is printed only for rustc 1.80 and later, and for
/// a version this script cannot read (a newer format, most likely).
fn declare_cfg() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let minor = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|version| rustc_minor(&version));
    if minor.map_or(true, |minor| minor >= 80) {
        println!("cargo:rustc-check-cfg=cfg({HOST_CFG})");
    }
}

/// The minor version in `rustc 1.MINOR.PATCH…`.
fn rustc_minor(version: &str) -> Option<u32> {
    let number = version.split_whitespace().nth(1)?;
    let mut parts = number.split('.');
    if parts.next()? != "1" {
        return None;
    }
    parts.next()?.parse().ok()
}
