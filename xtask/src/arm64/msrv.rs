//! `cargo xtask cross --target aarch64-pc-windows-msvc` (issue #16): the MSRV check for ARM64
//! Windows, and its docs.
//!
//! 1. `mmsecure-sys` and `mmsecure` are built for `aarch64-pc-windows-msvc` with **rustc 1.63**
//!    (rustup's `1.63` toolchain) and `RUSTFLAGS=-D warnings`, driven by Debian's cargo 1.65
//!    (cargo 1.63 predates workspace inheritance), offline from the sample's vendor folder.
//!    rustup's 1.63 channel lists no `rust-std` for this target (`rustup target add --toolchain
//!    1.63 aarch64-pc-windows-msvc`: "component 'rust-std' ... is unavailable for download"),
//!    and Debian has none. So, unless that toolchain has the target after all, this task
//!    compiles 1.63's own `core` for it from the toolchain's `rust-src` component into a
//!    sysroot under `target/driver/aarch64/msrv-sysroot/` (with `RUSTC_BOOTSTRAP=1`, which
//!    `core` needs, as every build of it does), next to an empty `compiler_builtins` (rustc
//!    asks for one even for rlibs; nothing is linked), and points the build at it with
//!    `--sysroot`. The crates themselves are compiled as on any stable 1.63: no bootstrap
//!    flag, their `global_asm!` assembled by 1.63's LLVM 14. What this does not give is a
//!    linked 1.63 driver: that needs a prebuilt `core` with its `compiler_builtins`, which the
//!    ARM64 driver gets from rustup's current toolchain (`driver --target`).
//!    The objects 1.63 made are read back with `llvm-readobj --unwind`: the guarded functions
//!    carry the same exception data and unwind codes as in the driver.
//! 2. Their docs for the target with rustdoc 1.63 and `-D warnings`.
//! 3. The docs.rs stand-in: rustup's current rustdoc, `--cfg docsrs -D warnings`, as docs.rs
//!    builds the `aarch64-pc-windows-msvc` page (`[package.metadata.docs.rs] targets`). docs.rs
//!    uses nightly for `doc_cfg`; rustup's nightly has no std for this target here, so the
//!    stable rustdoc gets `RUSTC_BOOTSTRAP=1` for this one documentation build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{require_target, rustup_rustc, TARGET};
use crate::command::{run_checked, stdout_of};
use crate::cross::{self, Stopwatch};
use crate::debian;

/// `cargo xtask cross --target aarch64-pc-windows-msvc`.
pub fn run() -> crate::Result {
    let root = cross::workspace_root();
    let mut watch = Stopwatch::new("cross (aarch64)");
    let result = check(&root, &mut watch);
    watch.print();
    result
}

fn check(root: &Path, watch: &mut Stopwatch) -> crate::Result {
    debian::ensure("cross", &[debian::DEBIAN_CARGO])?;
    let rustc = stdout_of(Command::new("rustup").args(["which", "--toolchain", "1.63", "rustc"]))
        .map_err(|e| {
        format!(
            "{e}\n  rustup's 1.63 toolchain is needed: rustup toolchain install 1.63 \
                 --profile minimal --component rust-src"
        )
    })?;
    let rustc = PathBuf::from(rustc.trim());
    let rustdoc = rustc.with_file_name("rustdoc");
    cross::vendor(root)?;
    watch.lap("packages, vendor");

    let out = cross::driver_out_dir(root).join("aarch64");
    let sysroot = match require_target(&rustc) {
        Ok(()) => {
            println!("[cross] rustc 1.63 has a core for {TARGET}: using its own sysroot");
            None
        }
        Err(_) => {
            println!(
                "[cross] rustup's 1.63 has no rust-std for {TARGET}: building 1.63's core for \
                 it from rust-src"
            );
            Some(core_sysroot(&rustc, &out.join("msrv-sysroot"))?)
        }
    };
    watch.lap("core for rustc 1.63");

    let sysroot_flag = sysroot
        .as_ref()
        .map(|s| format!("--sysroot={} ", s.display()))
        .unwrap_or_default();
    println!("[cross] build mmsecure-sys and mmsecure for {TARGET} with rustc 1.63");
    run_checked(
        debian_cargo(root, &out, "build", &rustc, &rustdoc)
            .args(["-p", "mmsecure-sys", "-p", "mmsecure"])
            .env("RUSTFLAGS", format!("{sysroot_flag}-D warnings")),
    )?;
    watch.lap("build (1.63)");
    unwind_of_msrv_build(&out.join("msrv").join(TARGET).join("debug").join("deps"))?;
    watch.lap("unwind data of the 1.63 build");

    println!("[cross] docs for {TARGET} with rustdoc 1.63 and -D warnings");
    run_checked(
        debian_cargo(root, &out, "doc", &rustc, &rustdoc)
            .args(["--no-deps", "-p", "mmsecure-sys", "-p", "mmsecure"])
            .env("RUSTFLAGS", format!("{sysroot_flag}-D warnings"))
            .env("RUSTDOCFLAGS", format!("{sysroot_flag}-D warnings")),
    )?;
    watch.lap("doc (1.63)");

    println!("[cross] the docs.rs page for {TARGET}: rustup's rustdoc, --cfg docsrs -D warnings");
    require_target(&rustup_rustc())?;
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let mut doc = Command::new(cargo);
    // As docs.rs builds each crate: mmsecure with its `std` feature (its metadata's `features`).
    doc.args([
        "doc",
        "--no-deps",
        "--target",
        TARGET,
        "-p",
        "mmsecure-sys",
        "-p",
        "mmsecure",
        "--features",
        "mmsecure/std",
    ])
    .arg("--manifest-path")
    .arg(root.join("Cargo.toml"))
    .env("CARGO_TARGET_DIR", out.join("docsrs"))
    .env("RUSTDOCFLAGS", "--cfg docsrs -D warnings")
    .env("RUSTC_BOOTSTRAP", "1");
    cross::clear_cargo_settings(&mut doc);
    run_checked(&mut doc)?;
    watch.lap("doc (docs.rs stand-in)");
    println!(
        "[cross] ok: docs in {}",
        out.join("docsrs").join(TARGET).join("doc").display()
    );
    Ok(())
}

/// Checks that the objects rustc 1.63 (LLVM 14) assembled carry the same unwind data as the
/// driver's (built by rustup's current toolchain): for each guarded function, `llvm-readobj
/// --unwind` on mmsecure-sys's rlib shows exception data, its handler, and the prologue codes
/// `e1 81 e4` (`set_fp`, `save_fplr_x`, `end`).
fn unwind_of_msrv_build(deps: &Path) -> crate::Result {
    let rlib = fs::read_dir(deps)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with("libmmsecure_sys-") && name.ends_with(".rlib")
        })
        .max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
        .ok_or_else(|| format!("no libmmsecure_sys-*.rlib in {}", deps.display()))?;
    let text = stdout_of(Command::new("llvm-readobj").arg("--unwind").arg(&rlib))?;
    for (function, handler, _) in super::GUARDED {
        let head = format!("Function: {function} (");
        let block = text
            .split("RuntimeFunction {")
            .find(|b| b.contains(&head))
            .ok_or_else(|| format!("{}: no unwind entry for {function}", rlib.display()))?;
        let codes: Vec<&str> = block
            .lines()
            .skip_while(|l| !l.trim().starts_with("Prologue ["))
            .skip(1)
            .take_while(|l| !l.trim().starts_with(']'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let ok = block.contains("ExceptionData: Yes")
            && block.contains(&format!("Routine: {handler} ("))
            && codes == ["0xe1", "0x81", "0xe4"];
        println!(
            "[cross] rustc 1.63's {function}: exception data and {handler}: {}, prologue codes \
             {codes:?}",
            block.contains(&format!("Routine: {handler} ("))
        );
        if !ok {
            return Err(format!(
                "{}: {function}'s unwind data as rustc 1.63 assembled it is not the expected \
                 (exception data, {handler}, e1 81 e4)",
                rlib.display()
            )
            .into());
        }
    }
    Ok(())
}

/// Debian's cargo for the sample workspace, with `rustc`/`rustdoc` 1.63, the ARM64 target,
/// offline from the vendor folder.
fn debian_cargo(
    root: &Path,
    out: &Path,
    subcommand: &str,
    rustc: &Path,
    rustdoc: &Path,
) -> Command {
    cross::sample_cargo(root, subcommand, TARGET, rustc, rustdoc, &out.join("msrv"))
}

/// A sysroot with rustc 1.63's `core` for [`TARGET`], compiled from its `rust-src`, and an empty
/// `compiler_builtins`; reused while the stamp names the same compiler.
fn core_sysroot(rustc: &Path, sysroot: &Path) -> crate::Result<PathBuf> {
    let version = stdout_of(Command::new(rustc).arg("-vV"))?;
    let lib = sysroot.join("lib/rustlib").join(TARGET).join("lib");
    let stamp = sysroot.join(".xtask-rustc");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(version.as_str())
        && lib.join("libcore.rlib").exists()
        && lib.join("libcompiler_builtins.rlib").exists()
    {
        println!("[cross] {} is built", sysroot.display());
        return Ok(sysroot.to_path_buf());
    }
    let source = Path::new(stdout_of(Command::new(rustc).args(["--print", "sysroot"]))?.trim())
        .join("lib/rustlib/src/rust/library/core/src/lib.rs");
    if !source.exists() {
        return Err(format!(
            "{} is missing: rustup component add --toolchain 1.63 rust-src",
            source.display()
        )
        .into());
    }
    fs::create_dir_all(&lib)?;
    let builtins = sysroot.join("compiler_builtins.rs");
    fs::write(
        &builtins,
        "//! Stands in for compiler_builtins in an rlib-only build: nothing is linked.\n\
         #![no_std]\n#![feature(compiler_builtins)]\n#![compiler_builtins]\n",
    )?;
    for (name, file, extra) in [
        ("core", &source, None),
        ("compiler_builtins", &builtins, Some(sysroot)),
    ] {
        let mut cmd = Command::new(rustc);
        cmd.args([
            "--crate-name",
            name,
            "--edition",
            "2021",
            "--crate-type",
            "lib",
        ])
        .args(["-C", "opt-level=1", "-C", "panic=abort", "--target", TARGET])
        .arg(file)
        .arg("--out-dir")
        .arg(&lib)
        .env("RUSTC_BOOTSTRAP", "1");
        if let Some(sysroot) = extra {
            cmd.arg("--sysroot").arg(sysroot);
        }
        run_checked(&mut cmd)?;
    }
    fs::write(&stamp, version)?;
    Ok(sysroot.to_path_buf())
}
