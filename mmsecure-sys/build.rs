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
        if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
            link_ehcont_object();
        }
    }
}

/// The guard's landing labels (`src/seh.rs`) as EH continuation targets, for a driver linked
/// with `/guard:ehcont` (issue #23, `docs/exceptions.md`, "Kernel shadow stacks").
///
/// The linker takes EH continuation targets from the `.gehcont$y` sections (symbol-table
/// indexes) of the objects whose `@feat.00` symbol has bit 0x4000 set. rustc's objects always
/// define `@feat.00` themselves, without that bit on stable Rust (only nightly's `-Z
/// ehcont-guard` sets it), and an assembly `.set` cannot redefine it. So the two entries live in
/// an object of their own, written here byte by byte (no assembler or C compiler needed): one
/// `.gehcont$y` section naming the two landing labels, `@feat.00` = 0x4000, and an absolute
/// symbol `mmsecure_sys_ehcont_anchor` that `src/seh.rs` references, so that the linker loads
/// the object from its archive. Without `/guard:ehcont` the linker ignores both section and bit.
fn link_ehcont_object() {
    const NAME: &str = "mmsecure_sys_ehcont";
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let archive = ehcont_archive();
    // GNU targets look for `lib<name>.a`, MSVC targets for `<name>.lib`: the same bytes.
    for file in [format!("lib{NAME}.a"), format!("{NAME}.lib")] {
        std::fs::write(out.join(file), &archive).expect("OUT_DIR is writable");
    }
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static={NAME}");
}

/// The symbols the EH continuation object refers to or defines, in its symbol-table order after
/// `@feat.00` (index 0): the two landing labels (undefined here, indexes 1 and 2) and the anchor.
const EHCONT_TARGETS: [&str; 2] = [
    "mmsecure_sys_copy_guarded_landing",
    "mmsecure_sys_call_guarded_landing",
];
const EHCONT_ANCHOR: &str = "mmsecure_sys_ehcont_anchor";

/// A COFF object for x86-64 (PE format specification, "COFF File Header", "Section Table",
/// "COFF Symbol Table"): one section, `.gehcont$y`, holding the symbol-table indexes 1 and 2.
fn ehcont_object() -> Vec<u8> {
    const HEADER: usize = 20;
    const SECTION_HEADER: usize = 40;
    const SYMBOL: usize = 18;
    let data_at = HEADER + SECTION_HEADER;
    let data_len = 4 * EHCONT_TARGETS.len();
    let symbols_at = data_at + data_len;
    let symbols = 2 + EHCONT_TARGETS.len();

    // The string table: its own size first, then `.gehcont$y` (over 8 bytes: the section header
    // names it `/4`) and every symbol name over 8 bytes.
    let mut strings: Vec<u8> = vec![0; 4];
    let mut string = |name: &str| {
        let at = strings.len() as u32;
        strings.extend_from_slice(name.as_bytes());
        strings.push(0);
        at
    };
    let section_name = string(".gehcont$y");
    let target_names: Vec<u32> = EHCONT_TARGETS.iter().map(|name| string(name)).collect();
    let anchor_name = string(EHCONT_ANCHOR);
    let strings_len = strings.len() as u32;
    strings[..4].copy_from_slice(&strings_len.to_le_bytes());

    let mut o = Vec::new();
    o.extend_from_slice(&0x8664_u16.to_le_bytes()); // IMAGE_FILE_MACHINE_AMD64
    o.extend_from_slice(&1_u16.to_le_bytes()); // NumberOfSections
    o.extend_from_slice(&0_u32.to_le_bytes()); // TimeDateStamp
    o.extend_from_slice(&(symbols_at as u32).to_le_bytes()); // PointerToSymbolTable
    o.extend_from_slice(&(symbols as u32).to_le_bytes()); // NumberOfSymbols
    o.extend_from_slice(&0_u16.to_le_bytes()); // SizeOfOptionalHeader
    o.extend_from_slice(&0_u16.to_le_bytes()); // Characteristics

    let mut name = [0u8; 8];
    let slash = format!("/{section_name}");
    name[..slash.len()].copy_from_slice(slash.as_bytes());
    o.extend_from_slice(&name);
    o.extend_from_slice(&0_u32.to_le_bytes()); // VirtualSize
    o.extend_from_slice(&0_u32.to_le_bytes()); // VirtualAddress
    o.extend_from_slice(&(data_len as u32).to_le_bytes()); // SizeOfRawData
    o.extend_from_slice(&(data_at as u32).to_le_bytes()); // PointerToRawData
    o.extend_from_slice(&[0; 12]); // no relocations, no line numbers
                                   // IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_ALIGN_4BYTES | IMAGE_SCN_MEM_READ, as LLVM
                                   // and MSVC emit `.gehcont$y`.
    o.extend_from_slice(&0x4030_0040_u32.to_le_bytes());

    for index in 1..=EHCONT_TARGETS.len() as u32 {
        o.extend_from_slice(&index.to_le_bytes());
    }

    let symbol =
        |o: &mut Vec<u8>, name: Result<&[u8; 8], u32>, value: u32, section: i16, class: u8| {
            match name {
                Ok(short) => o.extend_from_slice(short),
                Err(offset) => {
                    o.extend_from_slice(&0_u32.to_le_bytes());
                    o.extend_from_slice(&offset.to_le_bytes());
                }
            }
            o.extend_from_slice(&value.to_le_bytes());
            o.extend_from_slice(&section.to_le_bytes());
            o.extend_from_slice(&0_u16.to_le_bytes()); // Type: not a function
            o.push(class);
            o.push(0); // NumberOfAuxSymbols
        };
    const ABSOLUTE: i16 = -1; // IMAGE_SYM_ABSOLUTE
    const UNDEFINED: i16 = 0; // IMAGE_SYM_UNDEFINED
    const EXTERNAL: u8 = 2; // IMAGE_SYM_CLASS_EXTERNAL
    const STATIC: u8 = 3; // IMAGE_SYM_CLASS_STATIC
                          // 0x4000: the object's EH continuation targets are in its `.gehcont$y` (LLVM's
                          // `COFF::Feat00Flags::GuardEHCont`).
    symbol(&mut o, Ok(b"@feat.00"), 0x4000, ABSOLUTE, STATIC);
    for offset in target_names {
        symbol(&mut o, Err(offset), 0, UNDEFINED, EXTERNAL);
    }
    symbol(&mut o, Err(anchor_name), 0, ABSOLUTE, EXTERNAL);
    debug_assert_eq!(o.len(), symbols_at + symbols * SYMBOL);
    o.extend_from_slice(&strings);
    o
}

/// An `ar` archive of the object, with the symbol index (the "first linker member", in the
/// format GNU ar, LLVM and link.exe all read) that lets a linker find the anchor in it.
fn ehcont_archive() -> Vec<u8> {
    fn member_header(a: &mut Vec<u8>, name: &str, size: usize) {
        let header = format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n", 0, 0, 0, 0);
        debug_assert_eq!(header.len(), 60);
        a.extend_from_slice(header.as_bytes());
    }
    let object = ehcont_object();
    let index_len = 4 + 4 + EHCONT_ANCHOR.len() + 1;
    let object_at = 8 + 60 + index_len + index_len % 2;

    let mut a = b"!<arch>\n".to_vec();
    member_header(&mut a, "/", index_len);
    a.extend_from_slice(&1_u32.to_be_bytes());
    a.extend_from_slice(&(object_at as u32).to_be_bytes());
    a.extend_from_slice(EHCONT_ANCHOR.as_bytes());
    a.push(0);
    if index_len % 2 == 1 {
        a.push(b'\n');
    }
    debug_assert_eq!(a.len(), object_at);
    member_header(&mut a, "ehcont.obj/", object.len());
    a.extend_from_slice(&object);
    if object.len() % 2 == 1 {
        a.push(b'\n');
    }
    a
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
