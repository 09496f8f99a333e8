//! `cargo xtask package [--no-verify]`: what crates.io would get, listed and checked.
//!
//! For `mmsecure-sys` and `mmsecure`, in that order:
//!
//! 1. `cargo package --list` prints the files the crate would hold. Each must match the crate's
//!    allow-list below, which repeats the `include` key of its manifest, and the files a build or
//!    a reader needs must be there: for the sys crate the generated `src/bindings.rs` and
//!    `src/types.rs` (no build may need libclang or the WDK), the build script, the README and
//!    both license texts.
//! 2. `cargo package -p mmsecure-sys -p mmsecure` makes both `.crate` files in one run. Packaged
//!    together, cargo resolves `mmsecure`'s dependency on `mmsecure-sys` (path and version) from
//!    a temporary local registry holding the freshly packaged sys crate, so this works before
//!    anything is published. Unless `--no-verify` is given, cargo then builds each crate from its
//!    unpacked `.crate`, which proves the allow-list holds everything a build needs.
//! 3. Each `.crate` is opened with `tar`: its file list must be the one `--list` printed, and its
//!    `LICENSE-MIT` and `LICENSE-APACHE` must be the repository's own texts, byte for byte (the
//!    crates link to the root's files; a checkout without symlinks would package the link's
//!    target path instead of the text).
//!
//! `--allow-dirty` is always passed: the contents are checked here, and a working tree with
//! uncommitted edits is normal while preparing a release. Cargo warns that each crate's tests are
//! left out of the package; that is the allow-list's decision (they need this repository's
//! dev-dependencies and tools), not a problem.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::{run_checked, stdout_of};
use crate::cross::workspace_root;

/// The published crates, in packaging order (the sys crate first: `mmsecure` depends on it).
const CRATES: [Crate; 2] = [
    Crate {
        name: "mmsecure-sys",
        allowed: &[
            Allowed::File("build.rs"),
            Allowed::File("README.md"),
            Allowed::File("LICENSE-MIT"),
            Allowed::File("LICENSE-APACHE"),
            Allowed::RustUnder("src/"),
        ],
        required: &[
            "src/lib.rs",
            "src/bindings.rs",
            "src/types.rs",
            "build.rs",
            "README.md",
            "LICENSE-MIT",
            "LICENSE-APACHE",
        ],
    },
    Crate {
        name: "mmsecure",
        allowed: &[
            Allowed::File("README.md"),
            Allowed::File("LICENSE-MIT"),
            Allowed::File("LICENSE-APACHE"),
            Allowed::RustUnder("src/"),
            Allowed::RustIn("examples/"),
        ],
        required: &[
            "src/lib.rs",
            "examples/tour.rs",
            "examples/driver_logic.rs",
            "README.md",
            "LICENSE-MIT",
            "LICENSE-APACHE",
        ],
    },
];

/// What cargo adds to every package by itself: the normalized manifest, the original one, the
/// lockfile and the commit it was made from.
const CARGO_FILES: [&str; 4] = [
    "Cargo.toml",
    "Cargo.toml.orig",
    "Cargo.lock",
    ".cargo_vcs_info.json",
];

/// The license texts, at the repository root, which each crate must carry verbatim.
const LICENSES: [&str; 2] = ["LICENSE-MIT", "LICENSE-APACHE"];

/// One published crate: the files it may hold and those it must.
struct Crate {
    name: &'static str,
    allowed: &'static [Allowed],
    required: &'static [&'static str],
}

/// One entry of an allow-list, as a path relative to the crate's root.
enum Allowed {
    /// Exactly this file.
    File(&'static str),
    /// Any `.rs` file in this folder or below it.
    RustUnder(&'static str),
    /// Any `.rs` file directly in this folder.
    RustIn(&'static str),
}

impl Allowed {
    fn matches(&self, path: &str) -> bool {
        match *self {
            Allowed::File(file) => path == file,
            Allowed::RustUnder(dir) => path.starts_with(dir) && path.ends_with(".rs"),
            Allowed::RustIn(dir) => path
                .strip_prefix(dir)
                .is_some_and(|rest| !rest.contains('/') && rest.ends_with(".rs")),
        }
    }
}

/// `cargo xtask package`.
pub fn run(args: &[String]) -> crate::Result {
    let mut verify = true;
    for arg in args {
        match arg.as_str() {
            "--no-verify" => verify = false,
            other => {
                return Err(
                    format!("`cargo xtask package` takes only --no-verify (got `{other}`)").into(),
                )
            }
        }
    }
    let root = workspace_root();

    let mut lists = Vec::new();
    for krate in &CRATES {
        let files = list(&root, krate.name)?;
        println!("[package] {} holds {} files:", krate.name, files.len());
        for file in &files {
            println!("  {file}");
        }
        check_list(krate, &files)?;
        lists.push(files);
    }

    println!("[package] packaging both crates together");
    let mut cmd = cargo(&root);
    cmd.arg("package").arg("--allow-dirty");
    for krate in &CRATES {
        cmd.args(["-p", krate.name]);
    }
    if !verify {
        cmd.arg("--no-verify");
    }
    run_checked(&mut cmd)?;

    let version = workspace_version(&root)?;
    let package_dir = target_dir(&root).join("package");
    for (krate, listed) in CRATES.iter().zip(&lists) {
        let stem = format!("{}-{version}", krate.name);
        let archive = package_dir.join(format!("{stem}.crate"));
        check_archive(&root, &archive, &stem, listed)?;
        println!("[package] ok: {}", archive.display());
    }
    Ok(())
}

/// The cargo that runs this task (rustup's, when called as `cargo xtask`).
fn cargo(root: &Path) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(root);
    cmd
}

/// `cargo package --list` for one crate: its files, relative to the crate's root.
fn list(root: &Path, name: &str) -> crate::Result<Vec<String>> {
    let mut cmd = cargo(root);
    cmd.args(["package", "--list", "--allow-dirty", "-p", name]);
    println!("  $ {}", crate::command::display(&cmd));
    let stdout = stdout_of(&mut cmd)?;
    Ok(stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect())
}

/// Every listed file is allowed, and every required one is listed.
fn check_list(krate: &Crate, files: &[String]) -> crate::Result {
    let unexpected: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|file| {
            !CARGO_FILES.contains(file) && !krate.allowed.iter().any(|a| a.matches(file))
        })
        .collect();
    if !unexpected.is_empty() {
        return Err(format!(
            "{} would publish files outside its allow-list: {}. Narrow `include` in \
             {0}/Cargo.toml, or widen the list in xtask/src/package.rs if the crate needs them",
            krate.name,
            unexpected.join(", ")
        )
        .into());
    }
    let missing: Vec<&str> = krate
        .required
        .iter()
        .copied()
        .filter(|required| !files.iter().any(|file| file == required))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} would be published without {}: check `include` in {0}/Cargo.toml",
            krate.name,
            missing.join(", ")
        )
        .into());
    }
    Ok(())
}

/// The `.crate` holds exactly the listed files, under `stem/`, and the license texts verbatim.
fn check_archive(root: &Path, archive: &Path, stem: &str, listed: &[String]) -> crate::Result {
    let mut cmd = Command::new("tar");
    cmd.arg("-tzf").arg(archive);
    let names = stdout_of(&mut cmd)?;
    let prefix = format!("{stem}/");
    let mut packed: Vec<&str> = names
        .lines()
        .filter(|line| !line.ends_with('/'))
        .map(|line| line.strip_prefix(&prefix).unwrap_or(line))
        .collect();
    packed.sort_unstable();
    let mut expected: Vec<&str> = listed.iter().map(String::as_str).collect();
    expected.sort_unstable();
    if packed != expected {
        return Err(format!(
            "{} holds [{}], but `cargo package --list` printed [{}]",
            archive.display(),
            packed.join(", "),
            expected.join(", ")
        )
        .into());
    }

    for license in LICENSES {
        let original = root.join(license);
        let text =
            fs::read(&original).map_err(|e| format!("cannot read {}: {e}", original.display()))?;
        let mut cmd = Command::new("tar");
        cmd.arg("-xzOf")
            .arg(archive)
            .arg(format!("{prefix}{license}"));
        let packed = stdout_of(&mut cmd)?;
        if packed.as_bytes() != text.as_slice() {
            return Err(format!(
                "{}'s {license} is not the text of {} ({} bytes instead of {}): is the \
                 crate's file still a link to the root's?",
                archive.display(),
                original.display(),
                packed.len(),
                text.len()
            )
            .into());
        }
    }
    Ok(())
}

/// `version` under `[workspace.package]` in the root manifest, which both crates inherit.
fn workspace_version(root: &Path) -> crate::Result<String> {
    let manifest = root.join("Cargo.toml");
    let text = fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let mut in_section = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
        } else if in_section {
            if let Some(value) = line.strip_prefix("version") {
                let value = value.trim_start().trim_start_matches('=').trim();
                return Ok(value.trim_matches('"').to_string());
            }
        }
    }
    Err(format!(
        "no `version` under [workspace.package] in {}",
        manifest.display()
    )
    .into())
}

/// Where cargo puts `package/`: `CARGO_TARGET_DIR` if set, else `target/` at the root.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_entries_match_only_their_files() {
        assert!(Allowed::File("build.rs").matches("build.rs"));
        assert!(!Allowed::File("build.rs").matches("src/build.rs"));
        assert!(Allowed::RustUnder("src/").matches("src/host/mod.rs"));
        assert!(!Allowed::RustUnder("src/").matches("src/notes.md"));
        assert!(!Allowed::RustUnder("src/").matches("tests/host.rs"));
        assert!(Allowed::RustIn("examples/").matches("examples/tour.rs"));
        assert!(!Allowed::RustIn("examples/").matches("examples/data/big.rs"));
    }

    #[test]
    fn a_test_file_or_header_in_the_sys_package_is_refused() {
        let sys = &CRATES[0];
        let mut files: Vec<String> = sys.required.iter().map(|f| f.to_string()).collect();
        assert!(check_list(sys, &files).is_ok());
        files.push("include/mmsecure_sys.h".into());
        assert!(check_list(sys, &files).is_err());
        files.pop();
        files.push("tests/host_refusals.rs".into());
        assert!(check_list(sys, &files).is_err());
    }

    #[test]
    fn a_sys_package_without_its_bindings_is_refused() {
        let sys = &CRATES[0];
        let files: Vec<String> = sys
            .required
            .iter()
            .filter(|f| **f != "src/bindings.rs")
            .map(|f| f.to_string())
            .collect();
        let err = check_list(sys, &files).unwrap_err().to_string();
        assert!(err.contains("src/bindings.rs"), "{err}");
    }
}
