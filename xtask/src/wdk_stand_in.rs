//! `cargo xtask wdk-stand-in`: mmsecure-sys's `wdk-sys` feature compiled, linted and documented
//! for x86_64 Windows against a stand-in for wdk-sys.
//!
//! The real wdk-sys builds only on a Windows host with the WDK, so nothing here can build it. The
//! stand-in (`xtask/wdk-stand-in/wdk-sys/`) declares what mmsecure-sys's feature names, shaped as
//! wdk-sys's generated root is: the types at the crate root, with the same alias chains, and the
//! routines in `ntddk`. The check crate beside it (`xtask/wdk-stand-in/check/`) turns the feature
//! on, patches wdk-sys to the stand-in, builds mmsecure next to it, uses the conversions and names
//! the items the feature must leave alone. Run with rustup's toolchain (the feature needs a newer
//! Rust than the crates' 1.63) and its `x86_64-pc-windows-gnu` standard library:
//!
//! 1. `cargo check` of that graph with clippy as the compiler and warnings denied, so that the
//!    feature's code is held to the workspace's lints (`SAFETY` comments and all);
//! 2. `cargo doc` of mmsecure-sys and mmsecure with `RUSTDOCFLAGS="-D warnings"`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::{run_checked, stdout_of};
use crate::cross::{self, Stopwatch};

/// The Windows target of the check: rustup ships its `core` for Linux hosts.
const TARGET: &str = "x86_64-pc-windows-gnu";

/// `cargo xtask wdk-stand-in`.
pub fn run(args: &[String]) -> crate::Result {
    if let Some(arg) = args.first() {
        return Err(format!("`cargo xtask wdk-stand-in` takes no arguments (got `{arg}`)").into());
    }
    let root = cross::workspace_root();
    let mut watch = Stopwatch::new("wdk-stand-in");
    let result = check(&root, &mut watch);
    watch.print();
    result
}

fn check(root: &Path, watch: &mut Stopwatch) -> crate::Result {
    let toolchain = Toolchain::of_this_cargo();
    let libdir = stdout_of(Command::new(&toolchain.rustc).args([
        "--print",
        "target-libdir",
        "--target",
        TARGET,
    ]))?;
    if !Path::new(libdir.trim()).is_dir() {
        return Err(format!(
            "no standard library for {TARGET} in {}: `rustup target add {TARGET}`",
            libdir.trim()
        )
        .into());
    }

    println!("[wdk-stand-in] check the feature against the stand-in, with clippy, for {TARGET}");
    let mut check = toolchain.cargo(root, "check");
    check
        .env("RUSTC_WRAPPER", &toolchain.clippy_driver)
        .env("RUSTFLAGS", "-D warnings");
    run_checked(&mut check)?;
    watch.lap("check with clippy");

    println!("[wdk-stand-in] docs of mmsecure-sys and mmsecure with the feature");
    let mut doc = toolchain.cargo(root, "doc");
    doc.args(["--no-deps", "-p", "mmsecure-sys", "-p", "mmsecure"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run_checked(&mut doc)?;
    watch.lap("doc");
    println!(
        "[wdk-stand-in] ok: the wdk-sys feature builds, lints and documents against the stand-in"
    );
    Ok(())
}

/// rustup's programs, from the folder of the cargo that runs this task.
struct Toolchain {
    cargo: PathBuf,
    rustc: PathBuf,
    clippy_driver: PathBuf,
}

impl Toolchain {
    fn of_this_cargo() -> Toolchain {
        let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
        let sibling = |name: &str| {
            cargo
                .parent()
                .map(|bin| bin.join(name))
                .filter(|path| path.exists())
                .unwrap_or_else(|| PathBuf::from(name))
        };
        Toolchain {
            rustc: sibling("rustc"),
            clippy_driver: sibling("clippy-driver"),
            cargo,
        }
    }

    /// `cargo <subcommand>` on the check crate, for the Windows target, with its committed
    /// lockfile, in a target folder of its own.
    fn cargo(&self, root: &Path, subcommand: &str) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.arg(subcommand)
            .arg("--manifest-path")
            .arg(root.join("xtask/wdk-stand-in/check/Cargo.toml"))
            .args(["--target", TARGET, "--locked"])
            .env("RUSTC", &self.rustc)
            .env("CARGO_TARGET_DIR", root.join("target").join("wdk-stand-in"));
        cross::clear_cargo_settings(&mut cmd);
        cmd
    }
}
