//! `cargo xtask cross`: the MSRV check on the real target.
//!
//! Builds `mmsecure-sys` and `mmsecure` as plain libraries for `x86_64-pc-windows-gnu` with
//! Debian's rustc 1.63 (and, with the `host` feature, as the sample driver's tests use them) (the only compiler this kind of machine can have for a Windows target, and
//! the crates' `rust-version`) and cargo 1.65, offline, then builds their docs for that target
//! with `RUSTDOCFLAGS="-D warnings"`, the closest this machine gets to docs.rs's Windows build.
//!
//! The Windows-side build graph is the sample driver's own workspace (`samples/driver/`): cargo
//! 1.65 cannot parse the main workspace's dev-dependencies and cannot reach the registry, so
//! rustup's cargo first vendors that small graph (`samples/driver/vendor/`, lockfile version 3)
//! and Debian's cargo builds from the vendor folder. This module also holds what `driver` and
//! `wine` share: the paths, the vendoring, the Debian cargo command and a stopwatch.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::command::run_checked;
use crate::debian;

/// The Windows target, whose `core`, `alloc` and `std` Debian's `libstd-rust-dev-windows` ships.
pub const TARGET: &str = "x86_64-pc-windows-gnu";

/// Debian's rustc 1.63, by full path: rustup's `rustc` comes first on `PATH`.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
/// Debian's rustdoc 1.63 (in the `rustc` package).
const DEBIAN_RUSTDOC: &str = "/usr/bin/rustdoc";
/// Debian's cargo 1.65: rustup's cargo cannot drive rustc 1.63.
const DEBIAN_CARGO: &str = "/usr/bin/cargo";

/// `cargo xtask cross`.
pub fn run(args: &[String]) -> crate::Result {
    match args {
        [] => {}
        // ARM64 (issue #16): rustc 1.63 with a core built from its rust-src.
        [flag, target] if flag == "--target" && target == crate::arm64::TARGET => {
            return crate::arm64::msrv::run();
        }
        [arg, ..] => {
            return Err(format!(
                "`cargo xtask cross` takes no arguments but `--target {}` (got `{arg}`)",
                crate::arm64::TARGET
            )
            .into())
        }
    }
    let root = workspace_root();
    let mut watch = Stopwatch::new("cross");
    let result = check_target(&root, &mut watch);
    watch.print();
    result
}

/// The steps of `cross`, each timed on `watch`.
fn check_target(root: &Path, watch: &mut Stopwatch) -> crate::Result {
    // The toolchain behind the three paths above; mingw-w64's gcc and libraries link the
    // sample driver's test programs.
    debian::ensure(
        "cross",
        &[
            debian::MSRV_TOOLCHAIN,
            debian::MINGW_GCC,
            debian::MINGW_HEADERS,
        ],
    )?;
    watch.lap("packages (toolchain)");

    vendor(root)?;
    watch.lap("vendor");

    // Warnings are errors on the oldest compiler too: a lint that only 1.63 raises is a
    // portability problem worth seeing. Cargo caps lints of vendored crates, so only the two
    // path crates are held to this.
    println!("[cross] build mmsecure-sys and mmsecure for {TARGET} with rustc 1.63");
    run_checked(
        debian_cargo(root, "build")
            .args(["-p", "mmsecure-sys", "-p", "mmsecure"])
            .env("RUSTFLAGS", "-D warnings"),
    )?;
    watch.lap("build");

    // The `host` feature at the MSRV on Windows: the sample driver's tests, which get mmsecure
    // with `host` through their dev-dependency, std and all (issue #13).
    println!("[cross] build the sample driver's tests (mmsecure with `host`) with rustc 1.63");
    run_checked(
        debian_cargo(root, "test")
            .arg("--no-run")
            .env("RUSTFLAGS", "-D warnings"),
    )?;
    watch.lap("build tests with host");

    println!("[cross] docs for {TARGET} with RUSTDOCFLAGS=\"-D warnings\"");
    run_checked(
        debian_cargo(root, "doc")
            .args(["--no-deps", "-p", "mmsecure-sys", "-p", "mmsecure"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    watch.lap("doc");

    let docs = cargo_target_dir(root).join(TARGET).join("doc");
    println!("[cross] ok: docs in {}", docs.display());
    Ok(())
}

/// The main workspace's root (this crate is `xtask/` in it).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// The sample driver's workspace: the Windows-side build graph.
pub fn sample_dir(root: &Path) -> PathBuf {
    root.join("samples").join("driver")
}

/// Where everything this module and `driver`/`wine` make goes: `target/driver/`.
pub fn driver_out_dir(root: &Path) -> PathBuf {
    root.join("target").join("driver")
}

/// Debian cargo's target folder, kept apart from rustup cargo's (their fingerprints differ).
pub fn cargo_target_dir(root: &Path) -> PathBuf {
    driver_out_dir(root).join("cargo")
}

/// A Debian cargo 1.65 command for the sample workspace: rustc and rustdoc 1.63, the Windows
/// target, offline, from the vendor folder, with the committed lockfile.
pub fn debian_cargo(root: &Path, subcommand: &str) -> Command {
    sample_cargo(
        root,
        subcommand,
        TARGET,
        Path::new(DEBIAN_RUSTC),
        Path::new(DEBIAN_RUSTDOC),
        &cargo_target_dir(root),
    )
}

/// Debian's cargo 1.65 for the sample workspace with the given compilers, `target` and target
/// folder: offline, from the vendor folder, with the committed lockfile.
pub fn sample_cargo(
    root: &Path,
    subcommand: &str,
    target: &str,
    rustc: &Path,
    rustdoc: &Path,
    target_dir: &Path,
) -> Command {
    let sample = sample_dir(root);
    let vendor = sample.join("vendor");
    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.arg(subcommand)
        .arg("--manifest-path")
        .arg(sample.join("Cargo.toml"))
        .args(["--target", target, "--offline", "--locked"])
        // Source replacement on the command line rather than in a config file: rustup's cargo
        // also runs in that folder (to vendor) and must keep using the registry.
        .args([
            "--config",
            r#"source.crates-io.replace-with="vendored-sources""#,
        ])
        .arg("--config")
        .arg(format!(
            "source.vendored-sources.directory={}",
            toml_string(&vendor.to_string_lossy())
        ))
        .env("RUSTC", rustc)
        .env("RUSTDOC", rustdoc)
        .env("CARGO_TARGET_DIR", target_dir);
    // `cargo xtask` runs under rustup's cargo, whose settings must not leak into cargo 1.65.
    clear_cargo_settings(&mut cmd);
    cmd
}

/// Removes from `cmd`'s environment what the cargo running this task set for its own build
/// (flags, wrappers, target, jobserver), so that a cargo started by the task builds as if run
/// from a shell.
pub fn clear_cargo_settings(cmd: &mut Command) {
    for var in [
        "CARGO",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
}

/// Vendors the sample workspace's dependencies with rustup's cargo into `samples/driver/vendor/`,
/// unless the vendor folder already matches the lockfile and the lockfile matches the manifests.
pub fn vendor(root: &Path) -> crate::Result {
    let sample = sample_dir(root);
    let manifest = sample.join("Cargo.toml");
    let lockfile = sample.join("Cargo.lock");
    let vendor_dir = sample.join("vendor");
    let stamp = vendor_dir.join(".xtask-lockfile");

    let lock_now = fs::read_to_string(&lockfile).ok();
    let stamped = fs::read_to_string(&stamp).ok();
    if lock_now.is_some() && lock_now == stamped && lockfile_is_current(&manifest) {
        println!("[vendor] {} matches Cargo.lock", vendor_dir.display());
        return Ok(());
    }

    println!(
        "[vendor] rustup's cargo vendors {} into {}",
        manifest.display(),
        vendor_dir.display()
    );
    let mut cmd = Command::new(rustup_cargo());
    cmd.arg("vendor")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg(&vendor_dir)
        // Resolve to versions whose `rust-version` allows the sample's 1.63 where there is one.
        .env("CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS", "fallback")
        // It prints the config snippet (and a line saying to add it) that this module passes
        // on the command line instead.
        .stdout(Stdio::null());
    run_checked(&mut cmd)?;

    let lock = fs::read_to_string(&lockfile)
        .map_err(|e| format!("cannot read {}: {e}", lockfile.display()))?;
    if !lock.lines().any(|line| line.trim() == "version = 3") {
        return Err(format!(
            "{} is not lockfile version 3, the only one cargo 1.65 reads: keep \
             `rust-version` below 1.78 in samples/driver/Cargo.toml",
            lockfile.display()
        )
        .into());
    }
    if lock_now.as_deref() != Some(lock.as_str()) {
        println!(
            "[vendor] {} changed (the manifests asked for it): commit it with them",
            lockfile.display()
        );
    }
    fs::write(&stamp, &lock).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(())
}

/// Whether rustup's cargo accepts the lockfile as it is, without the network.
fn lockfile_is_current(manifest: &Path) -> bool {
    Command::new(rustup_cargo())
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .arg("--manifest-path")
        .arg(manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The cargo that runs `cargo xtask` (rustup's), which can reach the registry.
fn rustup_cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// A TOML basic string.
pub(crate) fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Times the steps of a task and prints them at the end.
pub struct Stopwatch {
    task: &'static str,
    start: Instant,
    last: Instant,
    laps: Vec<(String, Duration)>,
}

impl Stopwatch {
    /// Starts timing `task`.
    pub fn new(task: &'static str) -> Stopwatch {
        let now = Instant::now();
        Stopwatch {
            task,
            start: now,
            last: now,
            laps: Vec::new(),
        }
    }

    /// Ends the step called `name`.
    pub fn lap(&mut self, name: &str) {
        let now = Instant::now();
        self.laps.push((name.to_owned(), now - self.last));
        self.last = now;
    }

    /// Prints every step's time and the total.
    pub fn print(&self) {
        println!("[{}] timings:", self.task);
        for (name, took) in &self.laps {
            println!("  {:>7.1} s  {name}", took.as_secs_f64());
        }
        println!(
            "  {:>7.1} s  total",
            (Instant::now() - self.start).as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_escape_quotes_and_backslashes() {
        assert_eq!(toml_string("/a b/c"), r#""/a b/c""#);
        assert_eq!(toml_string(r#"C:\x"y"#), r#""C:\\x\"y""#);
    }
}
