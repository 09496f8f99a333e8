//! Debian packages a task needs: [`ensure`] installs them under CI (`CI=true`) and otherwise
//! says exactly what to install.
//!
//! The packages are named here once, in sets, one set per tool; every task asks for each set it
//! uses itself, never counting on another task having installed it (issue #19: any
//! `.ci/run STEP` passes alone on a new machine). `docs/testing.md` lists which task needs which.

use std::process::Command;

/// Debian's rustc 1.63 and cargo 1.65, with the `x86_64-pc-windows-gnu` std: the MSRV build
/// (`cross`) and the sample driver's build (`driver`, `wine`, `bench --disasm-check`).
pub const MSRV_TOOLCHAIN: &[&str] = &["rustc", "cargo", "libstd-rust-dev-windows"];
/// Debian's cargo 1.65 alone: the ARM64 MSRV build drives rustup's rustc 1.63 with it.
pub const DEBIAN_CARGO: &[&str] = &["cargo"];
/// mingw-w64's headers (`ddk/ntddk.h`, for `codegen`) and import libraries (`libntoskrnl.a`
/// for the driver; the CRT and Win32 libraries for Windows programs).
pub const MINGW_HEADERS: &[&str] = &["mingw-w64-x86-64-dev"];
/// mingw-w64's gcc: the linker of every `x86_64-pc-windows-gnu` program (the sample driver's
/// tests in `cross`, the Windows user-mode tests in `test-windows`).
pub const MINGW_GCC: &[&str] = &["gcc-mingw-w64-x86-64"];
/// mingw-w64's binutils: `dlltool`, `nm` and `ar` for the x64 driver's import library.
pub const MINGW_BINUTILS: &[&str] = &["binutils-mingw-w64-x86-64"];
/// Wine 8's `wine64`: loads the driver (`wine`), runs the Windows tests (`test-windows`).
pub const WINE: &[&str] = &["wine64"];
/// LLVM 14's `llvm-dlltool` and `llvm-readobj`: the ARM64 driver's import library and checks.
pub const LLVM: &[&str] = &["llvm"];
/// libclang for bindgen (`codegen`).
pub const LIBCLANG: &[&str] = &["libclang-dev"];
/// The aarch64 Linux cross linker, its libc, and qemu-user to run the tests (`test-aarch64`).
pub const AARCH64_CROSS: &[&str] = &[
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    "qemu-user",
];
/// valgrind, whose callgrind counts the bench's instructions (`bench`).
pub const VALGRIND: &[&str] = &["valgrind"];

/// Makes sure every package of every set in `sets` is installed, and says which `task` needs.
pub fn ensure(task: &str, sets: &[&[&str]]) -> crate::Result {
    let packages: Vec<&str> = sets.iter().flat_map(|set| set.iter().copied()).collect();
    println!("[{task}] Debian packages: {}", packages.join(", "));
    ensure_packages(&packages)
}

/// Makes sure every package in `packages` is installed.
///
/// Missing packages are installed with apt-get when the environment has `CI=true` (CI runs as
/// root on a bare machine); anywhere else the error names them and the command that installs
/// them, and nothing is changed.
fn ensure_packages(packages: &[&str]) -> crate::Result {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if std::env::var("CI").as_deref() != Ok("true") {
        return Err(format!(
            "missing Debian package(s): {list}\n  install with: \
             sudo apt-get install -y --no-install-recommends {list}"
        )
        .into());
    }
    eprintln!("xtask: CI=true, installing Debian package(s): {list}");
    apt_get(&["update"])?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    apt_get(&install)
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|out| out.status.success() && out.stdout.ends_with(b" installed"))
        .unwrap_or(false)
}

fn apt_get(args: &[&str]) -> crate::Result {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot run apt-get (is this Debian?): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`apt-get {}` failed: {status}", args.join(" ")).into())
    }
}
