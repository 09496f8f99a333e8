//! `cargo xtask test-windows`, `test-aarch64` and `check-macos`: the host model's test suites
//! where driver authors run them (issue #13).
//!
//! - `test-windows`: the suites of `mmsecure-sys` and `mmsecure` (`driver_logic`'s tests among
//!   them) and the sample driver's own logic tests, built for `x86_64-pc-windows-gnu` with the
//!   `host` feature and run as Windows programs under Wine 8's `wine64`. Then the easy mistake: a
//!   test built *without* the feature must fail with the message that names it.
//!
//!   Toolchain: rustup's 1.77 with its `x86_64-pc-windows-gnu` std, linked by Debian's
//!   `gcc-mingw-w64-x86-64`. From Rust 1.78 on, std imports `ProcessPrng` from
//!   `bcryptprimitives.dll`, which Wine 8 lacks: such a program dies at load (c0000135). Of the
//!   ways around that, 1.77 was chosen because it needs nothing written or vendored: a shim DLL
//!   exporting `ProcessPrng` would be code of ours standing in for Windows in every test run, and
//!   Debian's rustc 1.63 cannot build the tests' dev-dependencies offline without vendoring all
//!   of them. Cargo 1.77 reads the committed lockfiles as they are (version 3, kept by
//!   `rust-version = "1.63"`), with `--locked` so that nothing is rewritten.
//! - `test-aarch64`: the same suites for `aarch64-unknown-linux-gnu` (the portable copy, the
//!   stand-in for Apple silicon), linked by Debian's `gcc-aarch64-linux-gnu` and run under
//!   Debian's `qemu-aarch64 -L /usr/aarch64-linux-gnu`.
//! - `check-macos`: `cargo check` of the libraries and the tests for `aarch64-apple-darwin` and
//!   `x86_64-apple-darwin` (no linker needed).
//!
//! Each installs what it needs: rustup targets and toolchains with rustup, Debian packages with
//! apt-get under `CI=true`. What it cannot get makes it print `SKIPPED: <what> (<why>)` and
//! succeed, never pass quietly. Each prints the tests it ran as `N passed, N failed` and times its
//! steps.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::{display, run_checked};
use crate::cross::{self, Stopwatch};
use crate::debian;

/// The toolchain whose std runs under Wine 8 (see the module docs).
const WINDOWS_TOOLCHAIN: &str = "1.77";
const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";
/// mingw-w64's gcc links the tests; its `libntoskrnl.a` links the kernel-path mistake test.
const WINDOWS_PACKAGES: &[&[&str]] = &[debian::MINGW_GCC, debian::MINGW_HEADERS, debian::WINE];
const WINE: &str = "/usr/lib/wine/wine64";
const WINESERVER: &str = "/usr/lib/wine/wineserver";

const AARCH64_TARGET: &str = "aarch64-unknown-linux-gnu";
const AARCH64_RUNNER: &str = "qemu-aarch64 -L /usr/aarch64-linux-gnu";

const MACOS_TARGETS: &[&str] = &["aarch64-apple-darwin", "x86_64-apple-darwin"];

/// What a test built without the `host` feature must say under Wine (`mmsecure-sys`'s kernel
/// `KeGetCurrentIrql` in user mode).
const MISTAKE_MESSAGE: &str = "built without the `host` feature";

/// `cargo xtask test-windows`.
pub fn test_windows(args: &[String]) -> crate::Result {
    timed("test-windows", args, windows)
}

/// `cargo xtask test-aarch64`.
pub fn test_aarch64(args: &[String]) -> crate::Result {
    timed("test-aarch64", args, aarch64)
}

/// `cargo xtask check-macos`.
pub fn check_macos(args: &[String]) -> crate::Result {
    timed("check-macos", args, macos)
}

/// Runs `steps` for `task`, which takes no arguments, and prints its step times.
fn timed(
    task: &'static str,
    args: &[String],
    steps: fn(&Path, &mut Stopwatch) -> crate::Result,
) -> crate::Result {
    if let Some(arg) = args.first() {
        return Err(format!("`cargo xtask {task}` takes no arguments (got `{arg}`)").into());
    }
    let mut watch = Stopwatch::new(task);
    let result = steps(&cross::workspace_root(), &mut watch);
    watch.print();
    result
}

fn windows(root: &Path, watch: &mut Stopwatch) -> crate::Result {
    if !rustup(&[
        "toolchain",
        "install",
        WINDOWS_TOOLCHAIN,
        "--profile",
        "minimal",
        "--target",
        WINDOWS_TARGET,
    ]) {
        skipped(
            "the Windows user-mode tests under Wine",
            &format!(
                "rustup could not install toolchain {WINDOWS_TOOLCHAIN} with {WINDOWS_TARGET}"
            ),
        );
        return Ok(());
    }
    watch.lap("rustup (1.77, windows-gnu)");
    if let Err(e) = debian::ensure("test-windows", WINDOWS_PACKAGES) {
        skipped("the Windows user-mode tests under Wine", &e.to_string());
        return Ok(());
    }
    watch.lap("packages (mingw-w64 gcc, wine64)");

    let out = root.join("target").join("wine-tests");
    let prefix = out.join("prefix");
    fs::create_dir_all(&prefix)?;
    // By full path, cargo and rustc both: with `rustup run`, a rustc earlier on PATH (`.ci/run`
    // puts stable's first) would build the tests, and their std would import ProcessPrng.
    let (Some(cargo_1_77), Some(rustc_1_77), Some(rustdoc_1_77)) = (
        toolchain_tool("cargo"),
        toolchain_tool("rustc"),
        toolchain_tool("rustdoc"),
    ) else {
        return Err(format!("rustup cannot find toolchain {WINDOWS_TOOLCHAIN}'s tools").into());
    };
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new(&cargo_1_77);
        cmd.args(args);
        clean_environment(&mut cmd);
        cmd.env("RUSTC", &rustc_1_77)
            .env("RUSTDOC", &rustdoc_1_77)
            .env("CARGO_TARGET_DIR", out.join("cargo"))
            .env(
                "CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER",
                "x86_64-w64-mingw32-gcc",
            )
            .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER", WINE)
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        cmd
    };
    let sample = cross::sample_dir(root).join("Cargo.toml");
    let sample = sample.to_string_lossy().into_owned();
    let mut total = Counts::default();
    let result = (|| -> crate::Result {
        for (name, args) in [
            (
                "mmsecure-sys --features host",
                vec!["-p", "mmsecure-sys", "--features", "host"],
            ),
            (
                "mmsecure --features host (with driver_logic)",
                vec!["-p", "mmsecure", "--features", "host"],
            ),
            (
                "samples/driver (host through its dev-dependency)",
                vec!["--manifest-path", sample.as_str()],
            ),
        ] {
            let mut cmd = cargo(&["test", "--locked", "--target", WINDOWS_TARGET, "--tests"]);
            cmd.args(&args).current_dir(root);
            total += run_suite(name, &mut cmd)?;
            watch.lap(&format!("test {name}"));
        }
        mistake_is_loud(root, &out, &cargo)?;
        watch.lap("a test without the host feature fails loudly");
        Ok(())
    })();
    // Wine leaves its server running for a few seconds after the last program: stop it now.
    let _ = Command::new(WINESERVER)
        .arg("-k")
        .env("WINEPREFIX", &prefix)
        .status();
    result?;
    println!("[test-windows] x86_64-pc-windows-gnu under Wine: {total}");
    Ok(())
}

/// Builds a one-test crate on `mmsecure-sys` without the `host` feature and checks that its test
/// fails under Wine with the message naming the feature (not a crash on CR8).
fn mistake_is_loud(root: &Path, out: &Path, cargo: &dyn Fn(&[&str]) -> Command) -> crate::Result {
    let dir = out.join("no-host-feature");
    fs::create_dir_all(dir.join("src"))?;
    let sys = root.join("mmsecure-sys");
    fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[workspace]\n\n[package]\nname = \"no-host-feature\"\nversion = \"0.0.0\"\n\
             edition = \"2021\"\npublish = false\n\n[dependencies]\n\
             mmsecure-sys = {{ path = {} }}\n",
            toml_string(&sys.to_string_lossy())
        ),
    )?;
    fs::write(
        dir.join("src").join("lib.rs"),
        "//! The easy mistake: a Windows user-mode test on the kernel path.\n\
         #[test]\nfn reads_the_irql() {\n    \
         // SAFETY: none in user mode: the point is that this is refused with a message.\n    \
         let _ = unsafe { mmsecure_sys::KeGetCurrentIrql() };\n}\n",
    )?;
    let manifest = dir.join("Cargo.toml");
    let mut cmd = cargo(&["test", "--target", WINDOWS_TARGET, "--manifest-path"]);
    cmd.arg(&manifest);
    println!("[test-windows] a test without the host feature must fail, naming it");
    println!("  $ {}", display(&cmd));
    let output = cmd.output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let said = text.lines().find(|line| line.contains(MISTAKE_MESSAGE));
    match said {
        Some(line) if !output.status.success() => {
            println!("  ok: it failed with: {}", line.trim());
            Ok(())
        }
        _ => Err(format!(
            "a Windows test without the host feature did not fail with \"{MISTAKE_MESSAGE}\" \
             ({}):\n{text}",
            output.status
        )
        .into()),
    }
}

fn aarch64(root: &Path, watch: &mut Stopwatch) -> crate::Result {
    if !rustup(&["target", "add", AARCH64_TARGET]) {
        skipped(
            "the aarch64 tests under qemu",
            &format!("rustup could not add {AARCH64_TARGET}"),
        );
        return Ok(());
    }
    watch.lap("rustup (aarch64 std)");
    if let Err(e) = debian::ensure("test-aarch64", &[debian::AARCH64_CROSS]) {
        skipped("the aarch64 tests under qemu", &e.to_string());
        return Ok(());
    }
    watch.lap("packages (aarch64 gcc and libc, qemu-user)");

    let sample = cross::sample_dir(root).join("Cargo.toml");
    let sample = sample.to_string_lossy().into_owned();
    let mut total = Counts::default();
    for (name, args) in [
        ("mmsecure-sys", vec!["-p", "mmsecure-sys"]),
        ("mmsecure (with driver_logic)", vec!["-p", "mmsecure"]),
        ("samples/driver", vec!["--manifest-path", sample.as_str()]),
    ] {
        let mut cmd = Command::new(rustup_cargo());
        clean_environment(&mut cmd);
        cmd.args(["test", "--locked", "--target", AARCH64_TARGET, "--tests"])
            .args(&args)
            .current_dir(root)
            .env(
                "CARGO_TARGET_DIR",
                root.join("target").join("aarch64-tests"),
            )
            .env(
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                "aarch64-linux-gnu-gcc",
            )
            .env(
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
                AARCH64_RUNNER,
            )
            // The bug-check tests rerun their own binary: through qemu as well.
            .env("MMSECURE_CHILD_RUNNER", AARCH64_RUNNER);
        total += run_suite(name, &mut cmd)?;
        watch.lap(&format!("test {name}"));
    }
    println!("[test-aarch64] aarch64-unknown-linux-gnu under qemu-aarch64: {total}");
    Ok(())
}

fn macos(root: &Path, watch: &mut Stopwatch) -> crate::Result {
    for target in MACOS_TARGETS {
        if !rustup(&["target", "add", target]) {
            skipped(
                &format!("cargo check for {target}"),
                &format!("rustup could not add {target}"),
            );
            continue;
        }
        let mut cmd = Command::new(rustup_cargo());
        clean_environment(&mut cmd);
        cmd.args(["check", "--locked", "--target", target])
            .args(["-p", "mmsecure-sys", "-p", "mmsecure", "--lib", "--tests"])
            .current_dir(root)
            .env("CARGO_TARGET_DIR", root.join("target").join("macos-check"))
            .env("RUSTFLAGS", "-D warnings");
        run_checked(&mut cmd)?;
        println!("[check-macos] {target}: libraries and tests check");
        watch.lap(&format!("check {target}"));
    }
    Ok(())
}

/// Runs a `cargo test` command, prints its output, and returns its counts; fails if it failed.
fn run_suite(name: &str, cmd: &mut Command) -> crate::Result<Counts> {
    println!("[tests] {name}");
    println!("  $ {}", display(cmd));
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", display(cmd)))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    let counts = Counts::from_output(&stdout);
    println!("[tests] {name}: {counts}");
    if !output.status.success() {
        return Err(format!("{name}: `{}` failed: {}", display(cmd), output.status).into());
    }
    if counts.passed == 0 {
        return Err(format!("{name}: no test ran").into());
    }
    Ok(counts)
}

/// Test counts summed over libtest's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
    fn from_output(output: &str) -> Counts {
        let mut counts = Counts::default();
        for line in output.lines() {
            let Some(rest) = line.trim().strip_prefix("test result: ") else {
                continue;
            };
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(kind), Some(number)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(number) = number.parse::<u64>() else {
                    continue;
                };
                match kind {
                    "passed" => counts.passed += number,
                    "failed" => counts.failed += number,
                    "ignored" => counts.ignored += number,
                    _ => {}
                }
            }
        }
        counts
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} ignored",
            self.passed, self.failed, self.ignored
        )
    }
}

/// The path of `tool` in the Windows tests' toolchain.
fn toolchain_tool(tool: &str) -> Option<PathBuf> {
    let output = Command::new("rustup")
        .args(["which", "--toolchain", WINDOWS_TOOLCHAIN, tool])
        .output()
        .ok()?;
    let path = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !path.trim().is_empty()).then(|| PathBuf::from(path.trim()))
}

/// Runs `rustup ARGS`; false if rustup is missing or fails.
fn rustup(args: &[&str]) -> bool {
    let mut cmd = Command::new("rustup");
    cmd.args(args);
    println!("  $ {}", display(&cmd));
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

fn skipped(what: &str, why: &str) {
    println!("SKIPPED: {what} ({why})");
}

/// The cargo that runs `cargo xtask` (rustup's stable).
fn rustup_cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Removes what `cargo xtask`'s own cargo set that would leak into another cargo's build.
fn clean_environment(cmd: &mut Command) {
    for var in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "RUSTUP_TOOLCHAIN",
    ] {
        cmd.env_remove(var);
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_every_test_result_line() {
        let output = "running 3 tests\n\
            test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
            test result: FAILED. 7 passed; 2 failed; 0 ignored; 0 measured; 4 filtered out\n\
            test a ... ok\n";
        assert_eq!(
            Counts::from_output(output),
            Counts {
                passed: 10,
                failed: 2,
                ignored: 1
            }
        );
        assert_eq!(Counts::from_output("running 0 tests\n"), Counts::default());
    }

    #[test]
    fn counts_print_as_the_plain_closing_line() {
        let counts = Counts {
            passed: 5,
            failed: 0,
            ignored: 2,
        };
        assert_eq!(counts.to_string(), "5 passed, 0 failed, 2 ignored");
    }
}
