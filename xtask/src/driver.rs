//! `cargo xtask driver [--check]`: builds the sample kernel driver (`samples/driver/`) into
//! `target/driver/mmsecure_sample.sys`; `--check` then verifies the file.
//!
//! 1. Debian's cargo 1.65 and rustc 1.63 build the sample as a release `staticlib` for
//!    `x86_64-pc-windows-gnu`, offline from the vendor folder (see `cross`). Release, because
//!    that is what a driver ships and because debug builds of mmsecure assert the IRQL by reading
//!    CR8, a privileged instruction (Wine happens to emulate it; see the sample's docs). Release
//!    with LTO also drops the unwind tables of the precompiled `core` that name
//!    `rust_eh_personality`, which a `panic = "abort"` driver does not define.
//! 2. The sample's own imports are listed in `samples/driver/ntoskrnl.def`; those that mingw-w64's
//!    `libntoskrnl.a` lacks get an import library from `x86_64-w64-mingw32-dlltool`.
//! 3. rustup's `rust-lld -flavor link` links the driver: `/driver /subsystem:native
//!    /entry:DriverEntry /cetcompat /guard:ehcont` (kernel shadow stacks, issue #23: see
//!    `cet`), against `libntoskrnl.a` (which is what mmsecure-sys's `-l ntoskrnl`
//!    means here) and that import library, with a map file that gives DriverEntry's address.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::{run_checked, stdout_of};
use crate::cross::{self, Stopwatch, TARGET};
use object::pe::{
    IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, IMAGE_DLLCHARACTERISTICS_NX_COMPAT, IMAGE_FILE_DLL,
    IMAGE_FILE_EXECUTABLE_IMAGE, IMAGE_FILE_MACHINE_AMD64, IMAGE_NT_OPTIONAL_HDR64_MAGIC,
    IMAGE_SUBSYSTEM_NATIVE,
};

use crate::{debian, pe, x86};

/// The service name the sample reports under, and the file's stem.
pub const SERVICE: &str = "mmsecure_sample";

const LIBNTOSKRNL: &str = "/usr/x86_64-w64-mingw32/lib/libntoskrnl.a";
const DLLTOOL: &str = "x86_64-w64-mingw32-dlltool";
const NM: &str = "x86_64-w64-mingw32-nm";
const AR: &str = "x86_64-w64-mingw32-ar";

/// The routines the sample must import (through mmsecure), and the one it must not: Windows
/// before 10 1809 has no `MmSecureVirtualMemoryEx`, and a static import would keep the driver
/// from loading there, so mmsecure looks it up at run time.
const MUST_IMPORT: &[&str] = &[
    "MmSecureVirtualMemory",
    "MmUnsecureVirtualMemory",
    "MmGetSystemRoutineAddress",
    // mmsecure-sys's exception handler unwinds to its landing label with it (issue #9).
    "RtlUnwindEx",
    // Every region holds a reference on its process (issue #12).
    "ObfReferenceObject",
    "ObfDereferenceObject",
    // SecureRegion::scope tells its thread's own process from an attached one (issue #21).
    "PsGetProcessId",
    "PsGetCurrentProcessId",
    // The highest user address ranges are checked against, a data export (issue #12).
    "MmHighestUserAddress",
];
const MUST_NOT_IMPORT: &str = "MmSecureVirtualMemoryEx";

/// The files a build makes.
pub struct Built {
    /// The driver.
    pub sys: PathBuf,
    /// rust-lld's map of it.
    pub map: PathBuf,
    /// The staticlib it was linked from.
    pub staticlib: PathBuf,
}

/// `cargo xtask driver [--check]`.
pub fn run(args: &[String]) -> crate::Result {
    let mut check = false;
    let mut target = TARGET;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--target" => target = args.next().map_or("", String::as_str),
            other => {
                return Err(format!(
                    "unknown argument `{other}`: usage: cargo xtask driver [--check] \
                     [--target {TARGET}|{}]",
                    crate::arm64::TARGET
                )
                .into())
            }
        }
    }
    // ARM64 (issue #16): its own toolchain, import libraries and checks.
    if target == crate::arm64::TARGET {
        return crate::arm64::run(check);
    } else if target != TARGET {
        return Err(format!(
            "`--target {target}`: the sample driver builds for {TARGET} and {}",
            crate::arm64::TARGET
        )
        .into());
    }
    let root = cross::workspace_root();
    let mut watch = Stopwatch::new("driver");
    let result = build(&root, &mut watch).and_then(|built| {
        if check {
            let checked = verify(&built);
            watch.lap("check");
            checked
        } else {
            Ok(())
        }
    });
    watch.print();
    result
}

/// Builds and links the sample driver, timing each step on `watch`.
pub fn build(root: &Path, watch: &mut Stopwatch) -> crate::Result<Built> {
    // The toolchain, then what the link needs beyond it: `libntoskrnl.a`, dlltool, nm and ar.
    debian::ensure(
        "driver",
        &[
            debian::MSRV_TOOLCHAIN,
            debian::MINGW_HEADERS,
            debian::MINGW_BINUTILS,
        ],
    )?;
    watch.lap("packages (toolchain, mingw-w64)");

    cross::vendor(root)?;
    watch.lap("vendor");

    println!("[driver] build the sample as a release staticlib with rustc 1.63");
    run_checked(cross::debian_cargo(root, "build").args([
        "--release",
        "-p",
        "mmsecure-sample-driver",
    ]))?;
    let staticlib = staticlib_path(root);
    watch.lap("cargo build --release");

    let out = cross::driver_out_dir(root);
    let extra = extra_import_library(root, &out)?;
    watch.lap("import library");

    let sys = out.join(format!("{SERVICE}.sys"));
    let map = out.join(format!("{SERVICE}.map"));
    println!("[driver] link with rust-lld as a kernel driver");
    link(&sys, &map, &staticlib, extra.as_deref(), true)?;
    watch.lap("link");

    let size = fs::metadata(&sys)?.len();
    println!("[driver] built {} ({size} bytes)", sys.display());
    Ok(Built {
        sys,
        map,
        staticlib,
    })
}

/// Links the driver `sys` (and its map) from the staticlib, the extra import library and
/// mingw-w64's `libntoskrnl.a`; `shadow_stacks` adds `/cetcompat /guard:ehcont`.
fn link(
    sys: &Path,
    map: &Path,
    staticlib: &Path,
    extra: Option<&Path>,
    shadow_stacks: bool,
) -> crate::Result {
    let mut link = Command::new(rust_lld()?);
    link.args(["-flavor", "link"])
        .arg(format!("/out:{}", sys.display()))
        .arg(format!("/map:{}", map.display()))
        .args([
            "/driver",
            "/subsystem:native",
            "/entry:DriverEntry",
            "/machine:x64",
            "/nodefaultlib",
            "/base:0x140000000",
            "/opt:ref",
            // Writes the checksum, which Windows verifies for drivers.
            "/release",
        ]);
    if shadow_stacks {
        // Kernel shadow stacks (issue #23): marks the image CET-compatible (the
        // IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT debug entry), and builds its EH continuation
        // table from the `.gehcont$y` entries mmsecure-sys brings, which the sample's
        // `_load_config_used` points to (`samples/driver/src/load_config.rs`).
        link.args(["/cetcompat", "/guard:ehcont"]);
    }
    link.arg(staticlib);
    if let Some(lib) = extra {
        link.arg(lib);
    }
    link.arg(LIBNTOSKRNL);
    run_checked(&mut link)
}

/// Shows that the shadow stack checks can fail on a real image: the same driver linked without
/// `/cetcompat` and `/guard:ehcont` must fail every one of them but the load config's presence,
/// which the sample's source provides either way.
fn shadow_stack_self_check(built: &Built, checks: &mut Checks) {
    let out = built.sys.parent().unwrap_or_else(|| Path::new("."));
    let plain = out.join(format!("{SERVICE}_plain.sys"));
    let plain_map = out.join(format!("{SERVICE}_plain.map"));
    let extra = out.join("libsample_ntoskrnl.a");
    let extra = extra.exists().then_some(extra);
    let what = "self-check: the same driver linked without /cetcompat and /guard:ehcont fails \
                every shadow stack check the two decide";
    let verdicts = link(
        &plain,
        &plain_map,
        &built.staticlib,
        extra.as_deref(),
        false,
    )
    .and_then(|()| {
        let file = fs::read(&plain)?;
        let map = fs::read_to_string(&plain_map)?;
        let info = crate::pe::shadow_stack_info(&file)?;
        Ok(crate::cet::verdicts(&info, &map))
    });
    match verdicts {
        Ok(verdicts) => {
            let passed: Vec<&String> = verdicts
                .iter()
                .filter(|(ok, what, _)| *ok && !what.starts_with(crate::cet::LOAD_CONFIG_CHECK))
                .map(|(_, what, _)| what)
                .collect();
            checks.record(
                passed.is_empty(),
                what,
                format!("{} checks, passed: {passed:?}", verdicts.len()),
            );
        }
        Err(e) => checks.record(false, what, e.to_string()),
    }
}

/// Where the release build puts the sample's staticlib.
pub fn staticlib_path(root: &Path) -> PathBuf {
    cross::cargo_target_dir(root)
        .join(TARGET)
        .join("release")
        .join("libmmsecure_sample.a")
}

/// Makes an import library for the sample's own imports that `libntoskrnl.a` lacks, if any.
fn extra_import_library(root: &Path, out: &Path) -> crate::Result<Option<PathBuf>> {
    let sample = cross::sample_dir(root);
    let def_path = sample.join("ntoskrnl.def");
    let def = fs::read_to_string(&def_path)
        .map_err(|e| format!("cannot read {}: {e}", def_path.display()))?;
    let wanted = def_exports(&def);
    let source_path = sample.join("src").join("ntoskrnl.rs");
    let source = fs::read_to_string(&source_path)
        .map_err(|e| format!("cannot read {}: {e}", source_path.display()))?;
    let undeclared: Vec<&String> = wanted
        .iter()
        .filter(|name| !source.contains(&format!("fn {name}(")))
        .collect();
    if !undeclared.is_empty() {
        return Err(format!(
            "{} lists routines that {} does not declare: {undeclared:?}",
            def_path.display(),
            source_path.display()
        )
        .into());
    }

    let available = library_exports(Path::new(LIBNTOSKRNL))?;
    let missing: Vec<&String> = wanted.iter().filter(|n| !available.contains(*n)).collect();
    if missing.is_empty() {
        println!(
            "[driver] all {} of the sample's own imports are in {LIBNTOSKRNL}: no extra import library",
            wanted.len()
        );
        return Ok(None);
    }
    let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
    println!(
        "[driver] {LIBNTOSKRNL} lacks {}: making an import library for them with dlltool",
        names.join(", ")
    );
    fs::create_dir_all(out)?;
    let def_out = out.join("sample_ntoskrnl.def");
    let lib_out = out.join("libsample_ntoskrnl.a");
    fs::write(
        &def_out,
        format!("LIBRARY ntoskrnl.exe\nEXPORTS\n{}\n", names.join("\n")),
    )?;
    run_checked(
        Command::new(DLLTOOL)
            .arg("-d")
            .arg(&def_out)
            .arg("-l")
            .arg(&lib_out)
            .args(["-m", "i386:x86-64"]),
    )?;
    Ok(Some(lib_out))
}

/// The names under `EXPORTS` in a module-definition file.
pub(crate) fn def_exports(def: &str) -> Vec<String> {
    let mut in_exports = false;
    let mut names = Vec::new();
    for line in def.lines() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.eq_ignore_ascii_case("EXPORTS") {
            in_exports = true;
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        if first.eq_ignore_ascii_case("LIBRARY") || first.eq_ignore_ascii_case("NAME") {
            in_exports = false;
            continue;
        }
        if in_exports {
            names.push(first.to_owned());
        }
    }
    names
}

/// The routines an import library defines, read with mingw-w64's nm.
fn library_exports(lib: &Path) -> crate::Result<BTreeSet<String>> {
    Ok(stdout_of(Command::new(NM).arg("--defined-only").arg(lib))?
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().rev();
            let name = fields.next()?;
            let kind = fields.next()?;
            match kind {
                "T" => Some(name.to_owned()),
                "I" => name.strip_prefix("__imp_").map(str::to_owned),
                _ => None,
            }
        })
        .collect())
}

/// The member names of an `ar` archive, read with mingw-w64's ar.
fn archive_members(lib: &Path) -> crate::Result<Vec<String>> {
    let output = Command::new(AR)
        .arg("t")
        .arg(lib)
        .output()
        .map_err(|e| format!("cannot run {AR}: {e}"))?;
    if !output.status.success() {
        return Err(format!("`{AR} t {}` failed", lib.display()).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Whether an archive member is an object of the `std` crate (rustc names them
/// `std-<hash>.std.<…>.o`).
fn is_std_object(member: &str) -> bool {
    member.starts_with("std-") && member.contains(".std.")
}

/// rustup's rust-lld: next to the rustc of the toolchain whose cargo runs this task.
pub(crate) fn rust_lld() -> crate::Result<PathBuf> {
    let rustc = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .and_then(|cargo| cargo.parent().map(|bin| bin.join("rustc")))
        .filter(|rustc| rustc.exists())
        .unwrap_or_else(|| PathBuf::from("rustc"));
    let sysroot = stdout_of(Command::new(&rustc).args(["--print", "sysroot"]))?;
    let version = stdout_of(Command::new(&rustc).arg("-vV"))?;
    let host = version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .ok_or("`rustc -vV` names no host")?;
    let lld = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin/rust-lld");
    if lld.exists() {
        Ok(lld)
    } else {
        Err(format!(
            "{} not found: rust-lld ships with rustup's rustc on {host}",
            lld.display()
        )
        .into())
    }
}

/// The RVA of `symbol` in an MSVC-style map file (as `lld-link /map` writes it).
pub(crate) fn map_symbol_rva(map: &str, symbol: &str) -> Option<u32> {
    let base = map.lines().find_map(|line| {
        let hex = line.trim().strip_prefix("Preferred load address is ")?;
        u64::from_str_radix(hex.trim(), 16).ok()
    })?;
    map.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [section, name, address, ..] if section.contains(':') && *name == symbol => {
                let address = u64::from_str_radix(address, 16).ok()?;
                u32::try_from(address.checked_sub(base)?).ok()
            }
            _ => None,
        }
    })
}

/// The result of each check, printed as it is made.
pub(crate) struct Checks {
    failed: usize,
    total: usize,
}

impl Checks {
    pub(crate) fn new() -> Checks {
        Checks {
            failed: 0,
            total: 0,
        }
    }

    pub(crate) fn record(&mut self, ok: bool, what: &str, detail: impl AsRef<str>) {
        self.total += 1;
        if !ok {
            self.failed += 1;
        }
        let mark = if ok { "pass" } else { "FAIL" };
        println!("  {mark}  {what} ({})", detail.as_ref());
    }

    pub(crate) fn finish(self, what: &str) -> crate::Result {
        if self.failed == 0 {
            println!("[{what}] all {} checks passed", self.total);
            Ok(())
        } else {
            Err(format!("{} of {} {what} checks failed", self.failed, self.total).into())
        }
    }
}

/// The header checks every kernel driver passes, whatever its machine: PE32+, `machine`, the
/// native subsystem, an executable image and no DLL, relocatable and NX-compatible, the entry
/// point at `DriverEntry` (from the link map `map`), and the checksum Windows verifies.
pub fn check_headers(pe: &pe::Image, map: &str, machine: (u16, &str), checks: &mut Checks) {
    checks.record(
        pe.magic == IMAGE_NT_OPTIONAL_HDR64_MAGIC,
        "PE32+",
        format!("optional header magic {:#x}", pe.magic),
    );
    let (machine, machine_name) = machine;
    checks.record(
        pe.machine == machine,
        &format!("machine {machine_name}"),
        format!("{:#06x}", pe.machine),
    );
    checks.record(
        pe.subsystem == IMAGE_SUBSYSTEM_NATIVE,
        "subsystem native (1)",
        format!("subsystem {}", pe.subsystem),
    );
    checks.record(
        pe.characteristics & IMAGE_FILE_EXECUTABLE_IMAGE != 0,
        "executable image",
        format!("characteristics {:#06x}", pe.characteristics),
    );
    checks.record(
        pe.characteristics & IMAGE_FILE_DLL == 0,
        "not a DLL (IMAGE_FILE_DLL clear)",
        format!("characteristics {:#06x}", pe.characteristics),
    );
    let wanted = IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE | IMAGE_DLLCHARACTERISTICS_NX_COMPAT;
    checks.record(
        pe.dll_characteristics & wanted == wanted,
        "relocatable and NX-compatible (DYNAMIC_BASE, NX_COMPAT)",
        format!("DllCharacteristics {:#06x}", pe.dll_characteristics),
    );
    match map_symbol_rva(map, "DriverEntry") {
        Some(rva) => checks.record(
            pe.entry_point == rva,
            "entry point is DriverEntry",
            format!(
                "AddressOfEntryPoint {:#x}, DriverEntry at {rva:#x} in the link map",
                pe.entry_point
            ),
        ),
        None => checks.record(
            false,
            "entry point is DriverEntry",
            "no DriverEntry in the link map",
        ),
    }
    checks.record(
        pe.checksum != 0 && pe.checksum == pe.computed_checksum,
        "checksum set and right (Windows verifies it for drivers)",
        format!(
            "stored {:#x}, computed {:#x}",
            pe.checksum, pe.computed_checksum
        ),
    );
}

/// `--check`: reads the driver as a PE image and checks what a kernel driver must be.
pub fn verify(built: &Built) -> crate::Result {
    println!("[check] {}", built.sys.display());
    let file = fs::read(&built.sys)?;
    let map = fs::read_to_string(&built.map)?;
    let mut checks = Checks::new();
    let pe = match pe::parse(&file) {
        Ok(pe) => pe,
        Err(e) => {
            checks.record(false, "a PE32+ image", e.to_string());
            return checks.finish("check");
        }
    };

    check_headers(&pe, &map, (IMAGE_FILE_MACHINE_AMD64, "x86-64"), &mut checks);
    // Kernel shadow stacks (issue #23): CETCOMPAT, and the landing labels in the EH
    // continuation table.
    crate::cet::check(&file, &map, &mut checks);
    shadow_stack_self_check(built, &mut checks);

    let dlls: BTreeSet<&str> = pe.imports.iter().map(|i| i.dll.as_str()).collect();
    checks.record(
        !dlls.is_empty() && dlls.iter().all(|d| d.eq_ignore_ascii_case("ntoskrnl.exe")),
        "imports only from ntoskrnl.exe",
        format!("{dlls:?}"),
    );
    let imported = pe.imports_from("ntoskrnl.exe");
    for name in MUST_IMPORT {
        checks.record(
            imported.contains(name),
            &format!("imports {name}"),
            "ntoskrnl.exe",
        );
    }
    checks.record(
        !imported.contains(&MUST_NOT_IMPORT),
        &format!("does not import {MUST_NOT_IMPORT} (looked up at run time)"),
        "ntoskrnl.exe",
    );
    // Reading CR8 is how Windows' KeGetCurrentIrql works, and mmsecure's IRQL checks read it;
    // writing it changes the IRQL, which nothing in the sample or mmsecure may do.
    let cr8 = x86::cr8_moves(&x86::decode(&pe.code(&file)));
    checks.record(
        cr8.writes.is_empty(),
        "no CR8 write in code (mov cr8, reg: neither mmsecure nor the sample changes the IRQL)",
        if cr8.writes.is_empty() {
            format!("none; {} CR8 read(s), which are allowed", cr8.reads.len())
        } else {
            format!("at {:x?}", cr8.writes)
        },
    );

    // The sample has mmsecure with the `host` feature as a dev-dependency (its tests run on the
    // model): resolver 2 must keep that feature, and with it std, out of this build.
    match archive_members(&built.staticlib) {
        Ok(members) => {
            let std: Vec<&String> = members.iter().filter(|m| is_std_object(m)).collect();
            checks.record(
                std.is_empty(),
                "no std in the staticlib (no `std-*` object among its members)",
                format!("{} members; std objects: {std:?}", members.len()),
            );
        }
        Err(e) => checks.record(false, "no std in the staticlib", e.to_string()),
    }
    for (marker, what) in [
        (
            &b"library/std/"[..],
            "no std code in the driver (no panic location in library/std/)",
        ),
        (
            &b"mmsecure host model"[..],
            "no host model in the driver (the `host` feature stayed with the tests)",
        ),
    ] {
        let found = file.windows(marker.len()).any(|w| w == marker);
        checks.record(
            !found,
            what,
            format!(
                "\"{}\" {}",
                String::from_utf8_lossy(marker),
                if found { "found" } else { "absent" }
            ),
        );
    }

    let mut names: Vec<&str> = imported;
    names.sort_unstable();
    println!(
        "[check] {} bytes; imports from ntoskrnl.exe: {}",
        file.len(),
        names.join(", ")
    );
    checks.finish("check")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_objects_are_told_from_core_and_the_drivers_own() {
        assert!(is_std_object(
            "std-5f2d7ab3c1e0a9b4.std.8c1d2e3f-cgu.0.rcgu.o"
        ));
        assert!(!is_std_object(
            "core-5f2d7ab3c1e0a9b4.core.8c1d2e3f-cgu.0.rcgu.o"
        ));
        assert!(!is_std_object(
            "mmsecure_sys-0123.mmsecure_sys.4567-cgu.0.rcgu.o"
        ));
        assert!(!is_std_object(
            "std_detect-0123.std_detect.4567-cgu.0.rcgu.o"
        ));
    }

    #[test]
    fn def_exports_are_the_names_after_exports() {
        let def =
            "; comment\nLIBRARY ntoskrnl.exe\nEXPORTS\n  DbgPrint ; prints\nKeBugCheckEx @3\n\n";
        assert_eq!(def_exports(def), ["DbgPrint", "KeBugCheckEx"]);
        assert!(def_exports("LIBRARY x.dll\n").is_empty());
    }

    #[test]
    fn the_committed_def_matches_the_sample_source() {
        let sample = cross::sample_dir(&cross::workspace_root());
        let def = fs::read_to_string(sample.join("ntoskrnl.def")).unwrap();
        let source = fs::read_to_string(sample.join("src/ntoskrnl.rs")).unwrap();
        let names = def_exports(&def);
        assert!(!names.is_empty());
        for name in names {
            assert!(source.contains(&format!("fn {name}(")), "{name} undeclared");
        }
    }

    #[test]
    fn map_symbols_are_rvas_from_the_preferred_base() {
        let map = " Preferred load address is 0000000140000000\n\n  Address  Publics by Value  Rva+Base  Lib:Object\n\n 0001:00000830       DriverEntry                0000000140001830     lib:obj.o\n 0001:000011b4       DbgPrint                   00000001400021b4     lib:x.o\n";
        assert_eq!(map_symbol_rva(map, "DriverEntry"), Some(0x1830));
        assert_eq!(map_symbol_rva(map, "DbgPrint"), Some(0x21b4));
        assert_eq!(map_symbol_rva(map, "Driver"), None);
        assert_eq!(
            map_symbol_rva("0001:0 DriverEntry 140001830", "DriverEntry"),
            None
        );
    }
}
