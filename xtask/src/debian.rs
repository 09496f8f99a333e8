//! Debian packages a task needs: `ensure_packages` installs them under CI (`CI=true`) and
//! otherwise says exactly what to install.

use std::process::Command;

/// Makes sure every package in `packages` is installed.
///
/// Missing packages are installed with apt-get when the environment has `CI=true` (CI runs as
/// root on a bare machine); anywhere else the error names them and the command that installs
/// them, and nothing is changed.
pub fn ensure_packages(packages: &[&str]) -> crate::Result {
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
