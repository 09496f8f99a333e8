//! `cargo xtask driver [--check] --target aarch64-pc-windows-msvc` (issue #16): the sample driver
//! for ARM64 Windows, `target/driver/aarch64/mmsecure_sample.sys`, and its checks.
//!
//! Nothing here runs ARM64 Windows code: the driver is built, linked and checked structurally.
//!
//! 1. rustup's toolchain (the one running this task) builds the sample as a release `staticlib`
//!    for `aarch64-pc-windows-msvc`, offline from the same vendor folder as the x64 build. Not
//!    Debian's rustc 1.63: it has no std (nor core) for this target, and rustup's 1.63 channel
//!    lists none either (the MSRV build for ARM64 is `cross --target`, see [`msrv`]).
//! 2. Import libraries from `.def` files with `llvm-dlltool -m arm64` (Debian's `llvm`):
//!    mingw-w64's `libntoskrnl.a` is x64 only. `ntoskrnl.lib` lists the sample's own imports
//!    (`samples/driver/ntoskrnl.def`), what mmsecure-sys declares ([`MMSECURE_SYS_IMPORTS`],
//!    `MmHighestUserAddress` as DATA) and the two C routines LLVM calls for the MSVC target
//!    ([`CRT_IMPORTS`]); `hal.lib` has `KeGetCurrentIrql`, which wdm.h declares `NTHALAPI` on
//!    ARM64. `MmSecureVirtualMemoryEx` is in neither, so a static import of it cannot link.
//! 3. rustup's `rust-lld -flavor link /machine:arm64 /driver /subsystem:native`.
//!
//! `--check` then reads the image with `object` ([`verify`]): the headers, the imports, and the
//! `.pdata`/`.xdata` of every guarded function (see [`unwind`]), cross-checked with
//! `llvm-readobj --unwind`; and what a secure + drop compiles to ([`disasm`]).

mod a64;
pub mod disasm;
pub mod msrv;
mod unwind;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::pe::IMAGE_FILE_MACHINE_ARM64;

use crate::command::{run_checked, stdout_of};
use crate::cross::{self, Stopwatch};
use crate::driver::{self, Checks, SERVICE};
use crate::{debian, pe};

/// The target: rustup's, tier 2 with host tools.
pub const TARGET: &str = "aarch64-pc-windows-msvc";

/// `llvm-dlltool` and `llvm-readobj` (Debian's `llvm`, LLVM 14 on bookworm: [`debian::LLVM`]).
const DLLTOOL: &str = "llvm-dlltool";
const READOBJ: &str = "llvm-readobj";

/// What mmsecure-sys imports from ntoskrnl.exe on Windows (its generated declarations and
/// `kernel.rs`/`seh_aarch64.rs`), as `.def` lines. Not `MmSecureVirtualMemoryEx`: nothing may
/// import it statically.
pub const MMSECURE_SYS_IMPORTS: &[&str] = &[
    "MmSecureVirtualMemory",
    "MmUnsecureVirtualMemory",
    "MmGetSystemRoutineAddress",
    "IoGetCurrentProcess",
    "PsGetProcessId",
    "PsGetCurrentProcessId",
    "ObfReferenceObject",
    "ObfDereferenceObject",
    "RtlUnwindEx",
    "MmHighestUserAddress DATA",
];

/// What LLVM calls for block copies and fills on `*-windows-msvc`, where Rust's
/// compiler_builtins does not define them (the C runtime would); ntoskrnl.exe exports both.
pub const CRT_IMPORTS: &[&str] = &["memcpy", "memset"];

/// The HAL's exports the driver uses: wdm.h declares `KeGetCurrentIrql` `NTHALAPI` on ARM64.
pub const HAL_IMPORTS: &[&str] = &["KeGetCurrentIrql"];

/// The routines the driver must import from ntoskrnl.exe, and the one it must not.
const MUST_IMPORT: &[&str] = &[
    "MmSecureVirtualMemory",
    "MmUnsecureVirtualMemory",
    "MmGetSystemRoutineAddress",
    "RtlUnwindEx",
    "ObfReferenceObject",
    "ObfDereferenceObject",
    "IoGetCurrentProcess",
    "PsGetProcessId",
    "PsGetCurrentProcessId",
    "MmHighestUserAddress",
];
const MUST_NOT_IMPORT: &str = "MmSecureVirtualMemoryEx";

/// The functions with an exception handler, each with its handler and its landing label, and
/// the sample's assembly shim, which has unwind data and no handler.
pub const GUARDED: &[(&str, &str, &str)] = &[
    (
        "mmsecure_sys_copy_guarded",
        "mmsecure_sys_copy_guarded_handler",
        "mmsecure_sys_copy_guarded_landing",
    ),
    (
        "mmsecure_sys_call_guarded",
        "mmsecure_sys_call_guarded_handler",
        "mmsecure_sys_call_guarded_landing",
    ),
];
const SHIM: &str = "sample_secure_in_guard";

/// The files a build makes.
pub struct Built {
    /// The driver.
    pub sys: PathBuf,
    /// rust-lld's map of it.
    pub map: PathBuf,
}

/// `cargo xtask driver [--check] --target aarch64-pc-windows-msvc`.
pub fn run(check: bool) -> crate::Result {
    let root = cross::workspace_root();
    let mut watch = Stopwatch::new("driver (aarch64)");
    let result = build(&root, &mut watch).and_then(|built| {
        if check {
            let checked =
                verify(&built).and_then(|()| disasm::check_driver(&built.sys, &built.map));
            watch.lap("check");
            checked
        } else {
            Ok(())
        }
    });
    watch.print();
    result
}

/// Where the ARM64 build goes: `target/driver/aarch64/`.
fn out_dir(root: &Path) -> PathBuf {
    cross::driver_out_dir(root).join("aarch64")
}

/// The rustc of the toolchain whose cargo runs this task.
pub fn rustup_rustc() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .and_then(|cargo| cargo.parent().map(|bin| bin.join("rustc")))
        .filter(|rustc| rustc.exists())
        .unwrap_or_else(|| PathBuf::from("rustc"))
}

/// Fails unless `rustc` has a `core` for [`TARGET`] (`rustup target add` gives it).
pub fn require_target(rustc: &Path) -> crate::Result {
    let libdir =
        stdout_of(Command::new(rustc).args(["--print", "target-libdir", "--target", TARGET]))?;
    let has_core = fs::read_dir(libdir.trim())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
        .unwrap_or(false);
    if has_core {
        Ok(())
    } else {
        Err(format!(
            "{} has no core for {TARGET}: run `rustup target add {TARGET}`",
            rustc.display()
        )
        .into())
    }
}

/// Builds and links the ARM64 sample driver, timing each step on `watch`.
pub fn build(root: &Path, watch: &mut Stopwatch) -> crate::Result<Built> {
    debian::ensure("driver", &[debian::LLVM])?;
    let rustc = rustup_rustc();
    require_target(&rustc)?;
    watch.lap("packages (llvm), target");

    cross::vendor(root)?;
    watch.lap("vendor");

    let out = out_dir(root);
    let target_dir = out.join("cargo");
    let sample = cross::sample_dir(root);
    println!(
        "[driver] build the sample as a release staticlib for {TARGET} with rustup's toolchain"
    );
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "-p", "mmsecure-sample-driver"])
        .arg("--manifest-path")
        .arg(sample.join("Cargo.toml"))
        .args(["--target", TARGET, "--offline", "--locked"])
        .args([
            "--config",
            r#"source.crates-io.replace-with="vendored-sources""#,
        ])
        .arg("--config")
        .arg(format!(
            "source.vendored-sources.directory={}",
            cross::toml_string(&sample.join("vendor").to_string_lossy())
        ))
        .env("CARGO_TARGET_DIR", &target_dir);
    cross::clear_cargo_settings(&mut cmd);
    run_checked(&mut cmd)?;
    let staticlib = target_dir
        .join(TARGET)
        .join("release")
        .join("mmsecure_sample.lib");
    watch.lap("cargo build --release");

    let (ntoskrnl, hal) = import_libraries(root, &out)?;
    watch.lap("import libraries");

    let sys = out.join(format!("{SERVICE}.sys"));
    let map = out.join(format!("{SERVICE}.map"));
    println!("[driver] link with rust-lld as an ARM64 kernel driver");
    let mut link = Command::new(driver::rust_lld()?);
    link.args(["-flavor", "link"])
        .arg(format!("/out:{}", sys.display()))
        .arg(format!("/map:{}", map.display()))
        .args([
            "/driver",
            "/subsystem:native",
            "/entry:DriverEntry",
            "/machine:arm64",
            "/nodefaultlib",
            "/base:0x140000000",
            "/opt:ref",
            "/release",
        ])
        .arg(&staticlib)
        .arg(&ntoskrnl)
        .arg(&hal);
    run_checked(&mut link)?;
    watch.lap("link");

    let size = fs::metadata(&sys)?.len();
    println!("[driver] built {} ({size} bytes)", sys.display());
    Ok(Built { sys, map })
}

/// Writes `ntoskrnl.def` and `hal.def` into `out` and makes ARM64 import libraries of them.
fn import_libraries(root: &Path, out: &Path) -> crate::Result<(PathBuf, PathBuf)> {
    let def_path = cross::sample_dir(root).join("ntoskrnl.def");
    let def = fs::read_to_string(&def_path)
        .map_err(|e| format!("cannot read {}: {e}", def_path.display()))?;
    let mut ntoskrnl: Vec<String> = driver::def_exports(&def);
    ntoskrnl.extend(MMSECURE_SYS_IMPORTS.iter().map(|s| (*s).to_owned()));
    ntoskrnl.extend(CRT_IMPORTS.iter().map(|s| (*s).to_owned()));
    let hal: Vec<String> = HAL_IMPORTS.iter().map(|s| (*s).to_owned()).collect();
    fs::create_dir_all(out)?;
    let mut libs = Vec::new();
    for (dll, stem, names) in [
        ("ntoskrnl.exe", "ntoskrnl", &ntoskrnl),
        ("HAL.dll", "hal", &hal),
    ] {
        let def_out = out.join(format!("{stem}.def"));
        let lib_out = out.join(format!("{stem}.lib"));
        fs::write(
            &def_out,
            format!("LIBRARY {dll}\nEXPORTS\n{}\n", names.join("\n")),
        )?;
        run_checked(
            Command::new(DLLTOOL)
                .args(["-m", "arm64", "-d"])
                .arg(&def_out)
                .arg("-l")
                .arg(&lib_out),
        )?;
        libs.push(lib_out);
    }
    let hal = libs.pop().ok_or("no hal.lib")?;
    let ntoskrnl = libs.pop().ok_or("no ntoskrnl.lib")?;
    Ok((ntoskrnl, hal))
}

/// `--check`: the headers and imports of an ARM64 kernel driver, and the unwind data of every
/// guarded function, read with `object` and cross-checked with `llvm-readobj --unwind`.
pub fn verify(built: &Built) -> crate::Result {
    println!("[check] {}", built.sys.display());
    let file = fs::read(&built.sys)?;
    let map = fs::read_to_string(&built.map)?;
    let mut checks = Checks::new();
    let image = match pe::parse(&file) {
        Ok(image) => image,
        Err(e) => {
            checks.record(false, "a PE32+ image", e.to_string());
            return checks.finish("check");
        }
    };
    driver::check_headers(
        &image,
        &map,
        (IMAGE_FILE_MACHINE_ARM64, "ARM64 (0xAA64)"),
        &mut checks,
    );

    let dlls: BTreeSet<String> = image
        .imports
        .iter()
        .map(|i| i.dll.to_ascii_lowercase())
        .collect();
    checks.record(
        dlls.iter().all(|d| d == "ntoskrnl.exe" || d == "hal.dll") && dlls.contains("ntoskrnl.exe"),
        "imports only from ntoskrnl.exe (and HAL.dll)",
        format!("{dlls:?}"),
    );
    let hal = image.imports_from("hal.dll");
    checks.record(
        hal.iter().all(|name| HAL_IMPORTS.contains(name)),
        "from HAL.dll only KeGetCurrentIrql (wdm.h: NTHALAPI on ARM64)",
        format!("{hal:?}"),
    );
    let imported = image.imports_from("ntoskrnl.exe");
    for name in MUST_IMPORT {
        checks.record(
            imported.contains(name),
            &format!("imports {name}"),
            "ntoskrnl.exe",
        );
    }
    checks.record(
        !imported.contains(&MUST_NOT_IMPORT) && !hal.contains(&MUST_NOT_IMPORT),
        &format!("does not import {MUST_NOT_IMPORT} (looked up at run time)"),
        "ntoskrnl.exe, HAL.dll",
    );

    let readobj = stdout_of(Command::new(READOBJ).arg("--unwind").arg(&built.sys));
    if let Err(e) = &readobj {
        checks.record(false, "llvm-readobj --unwind runs", e.to_string());
    }
    let readobj = readobj.unwrap_or_default();
    unwind::check(&file, &map, &readobj, &mut checks);

    let mut names: Vec<&str> = imported;
    names.sort_unstable();
    println!(
        "[check] {} bytes; imports from ntoskrnl.exe: {}; from HAL.dll: {}",
        file.len(),
        names.join(", "),
        hal.join(", ")
    );
    checks.finish("check")
}
