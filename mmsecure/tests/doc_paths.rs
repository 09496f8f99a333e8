//! The examples a driver author pastes name `mmsecure` only: a driver depends on `mmsecure`, not on
//! `mmsecure-sys`, so `use mmsecure_sys::…` in a doctest or a guide's code block is `error[E0433]`
//! in the author's crate (it builds here only because this crate's tests depend on both).
//! `mmsecure::sys` and `mmsecure::host` are the paths to use.
//!
//! It reads the sources, which are the same on every target, through the build machine's paths:
//! not on Windows, where a test binary built elsewhere (and run under Wine) may not find them.
#![cfg(not(windows))]

use std::fs;
use std::path::{Path, PathBuf};

/// The lines of doc comments and Markdown code blocks under `dir` that import from
/// `mmsecure_sys`, as `file:line: text`.
fn sys_imports(dir: &Path, extension: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().map_or(false, |ext| ext == extension))
        .collect();
    entries.sort();
    for path in entries {
        let text = fs::read_to_string(&path).expect("a UTF-8 file");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            let code = code
                .strip_prefix("///")
                .or_else(|| code.strip_prefix("//!"))
                .map_or(code, str::trim_start);
            let code = code.strip_prefix("# ").unwrap_or(code);
            let is_doc = extension == "md" || line.trim_start().starts_with("//");
            if is_doc && code.starts_with("use mmsecure_sys") {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_example_imports_from_mmsecure_sys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = sys_imports(&root.join("src"), "rs");
    found.extend(sys_imports(&root.join("../docs"), "md"));
    found.extend(sys_imports(root, "md"));
    assert!(
        found.is_empty(),
        "examples that a driver's crate cannot build (use mmsecure::sys or mmsecure::host):\n{}",
        found.join("\n")
    );
}
