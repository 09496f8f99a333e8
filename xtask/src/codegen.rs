//! `cargo xtask codegen [--check] [--wdk DIR]`: makes `mmsecure-sys/src/types.rs` (the C types)
//! and `mmsecure-sys/src/bindings.rs` (the routines and constants, which name the types through
//! `crate::types`) with the bindgen crate from `mmsecure-sys/include/mmsecure_sys.h`, that is from
//! `ntddk.h`.
//!
//! The header comes from mingw-w64 (`ddk/ntddk.h`, Debian `mingw-w64-x86-64-dev`) by default, or
//! from the WDK with `--wdk DIR`. mingw-w64 10 lacks `MmSecureVirtualMemoryEx` and the
//! `MM_SECURE_*` values; `mmsecure-sys/include/mmsecure_ex.h` declares them as the WDK does, and
//! adds nothing when the WDK's header already has them.
//!
//! The output is formatted by rustfmt (run here, not through bindgen, which falls back to
//! unformatted output without saying so when rustfmt fails), so the same inputs always give the
//! same bytes and the files pass `cargo fmt --check`. `--check` writes nothing: it fails, showing
//! a diff, when a file in the tree differs from what would be generated.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{debian, diff};

/// The generated files, from the workspace root. The C types and the declarations that use them
/// are generated apart so that, with the `wdk-sys` feature, `mmsecure-sys` can swap in wdk-sys's
/// types under the very same declarations (`bindings.rs` names them through `crate::types`).
const OUTPUTS: [Output; 2] = [
    Output {
        path: "mmsecure-sys/src/types.rs",
        what: "the C types",
        items: Items::Types,
    },
    Output {
        path: "mmsecure-sys/src/bindings.rs",
        what: "the routines and constants",
        items: Items::Declarations,
    },
];
/// The header bindgen reads, from the workspace root.
const WRAPPER: &str = "mmsecure-sys/include/mmsecure_sys.h";

/// Exactly what `mmsecure-sys` declares: the routines...
const FUNCTIONS: &[&str] = &[
    "MmSecureVirtualMemory",
    "MmSecureVirtualMemoryEx",
    "MmUnsecureVirtualMemory", // lower-case "s": "Unsecure", not "UnSecure"
    "MmGetSystemRoutineAddress",
    "IoGetCurrentProcess",
    // Whether the thread runs in its own process or is attached to another (the id of the
    // current process against the id of the thread's own), for `SecureRegion::scope`.
    "PsGetProcessId",
    "PsGetCurrentProcessId",
    // A reference on the process object for as long as a secure stands (the x64 exports behind
    // the ObReferenceObject / ObDereferenceObject macros).
    "ObfReferenceObject",
    "ObfDereferenceObject",
];
/// ...the constants...
const CONSTANTS: &[&str] = &[
    "PAGE_READONLY",
    "PAGE_READWRITE",
    "PASSIVE_LEVEL",
    "APC_LEVEL",
    "DISPATCH_LEVEL",
    "MM_SECURE_EXCLUSIVE",
    "MM_SECURE_NO_CHANGE",
    "MM_SECURE_USER_MODE_ONLY",
    "MM_SECURE_NO_INHERIT",
];
/// ...and the types other crates name (the routines' own parameter types come with them).
const TYPES: &[&str] = &[
    "HANDLE",
    "PVOID",
    "SIZE_T",
    "ULONG",
    "KIRQL",
    "UCHAR",
    "USHORT",
    "WCHAR",
    "UNICODE_STRING",
    "PUNICODE_STRING",
    "PEPROCESS",
    "ULONG_PTR",
    "NTSTATUS",
    "LONG_PTR",
];

/// One generated file.
struct Output {
    path: &'static str,
    what: &'static str,
    items: Items,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Items {
    /// `TYPES` and every type the routines use.
    Types,
    /// `FUNCTIONS` and `CONSTANTS`, naming their types from `crate::types`.
    Declarations,
}

/// Where the Windows headers come from.
enum Source {
    /// mingw-w64's headers; `include` holds `ddk/ntddk.h`.
    Mingw { include: PathBuf },
    /// The WDK's headers; `include` is `Include/<version>`, which holds `km/ntddk.h`. Meant for
    /// a Windows machine: the WDK's `#include`s do not always match its files' case
    /// (`DriverSpecs.h`, `driverspecs.h`), which only a case-insensitive file system forgives.
    Wdk { include: PathBuf },
}

struct Options {
    check: bool,
    wdk: Option<PathBuf>,
}

/// Runs `cargo xtask codegen`.
pub fn run(args: &[String]) -> crate::Result {
    let options = parse_args(args)?;
    let root = workspace_root();
    // rustfmt reads the workspace's rustfmt.toml (if any) from the current directory, as
    // `cargo fmt` does: run where `cargo fmt` runs.
    std::env::set_current_dir(&root)?;

    let source = match options.wdk {
        Some(dir) => Source::Wdk {
            include: wdk_include_dir(&dir)?,
        },
        None => default_source()?,
    };
    let resource_dir = find_libclang()?;
    // bindgen adds these variables' flags to every run; the file must be the same on every
    // machine, so they are not honoured here.
    let extra: Vec<_> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.to_string_lossy().starts_with("BINDGEN_EXTRA_CLANG_ARGS"))
        .collect();
    for key in extra {
        eprintln!("xtask: ignoring {}", key.to_string_lossy());
        std::env::remove_var(key);
    }

    let mut stale = Vec::new();
    for output in &OUTPUTS {
        let started = Instant::now();
        let generated = generate(&root, &source, resource_dir.as_deref(), output)?;
        let elapsed = started.elapsed();
        let lines = generated.lines().count();
        let path = root.join(output.path);
        let current = fs::read_to_string(&path);
        let unchanged = current.as_ref().is_ok_and(|old| *old == generated);
        let what = output.what;
        if options.check {
            if unchanged {
                println!(
                    "{}: up to date ({what}, {lines} lines, generated in {elapsed:.2?})",
                    output.path
                );
                continue;
            }
            let current = current.unwrap_or_else(|e| {
                eprintln!("cannot read {}: {e}", path.display());
                String::new()
            });
            eprint!(
                "{}",
                diff::unified(
                    &current,
                    &generated,
                    &format!("{} (in the tree)", output.path),
                    &format!("{} (generated)", output.path),
                )
            );
            stale.push(output.path);
            continue;
        }
        if !unchanged {
            fs::write(&path, &generated)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        println!(
            "{} {} ({what}, {lines} lines, generated in {elapsed:.2?})",
            if unchanged { "unchanged:" } else { "wrote" },
            output.path,
        );
    }
    if !stale.is_empty() {
        let verb = if stale.len() == 1 {
            "differs"
        } else {
            "differ"
        };
        return Err(format!(
            "{} {} from what `{}` generates: run it and commit the result (never edit the \
             generated files by hand)",
            stale.join(" and "),
            verb,
            source.command()
        )
        .into());
    }
    if !options.check {
        println!("from {}", source.describe());
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        check: false,
        wdk: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => options.check = true,
            "--wdk" => {
                let dir = args.next().ok_or("--wdk needs a directory")?;
                options.wdk = Some(PathBuf::from(dir));
            }
            other => {
                return Err(format!(
                    "codegen: unknown argument `{other}`\nusage: cargo xtask codegen [--check] [--wdk DIR]"
                ))
            }
        }
    }
    Ok(options)
}

fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

impl Source {
    /// The command that regenerates the file from this source, for the file's header.
    fn command(&self) -> &'static str {
        match self {
            Source::Mingw { .. } => "cargo xtask codegen",
            Source::Wdk { .. } => "cargo xtask codegen --wdk <DIR>",
        }
    }

    /// Where the declarations come from, for the file's header. Names no path of this machine,
    /// so that the file is the same wherever it is generated.
    fn describe(&self) -> String {
        match self {
            Source::Mingw { .. } => "mingw-w64's ddk/ntddk.h (Debian mingw-w64-x86-64-dev) \
                 and mmsecure-sys/include/mmsecure_ex.h"
                .to_owned(),
            Source::Wdk { include } => format!(
                "the WDK's km/ntddk.h (Include/{})",
                include
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            ),
        }
    }

    fn clang_args(&self) -> Vec<String> {
        // -nostdlibinc: only the headers named here and clang's own (stddef.h, …), never the
        // host's or a cross toolchain's that clang happens to find, so that every machine
        // reads the same files.
        let mut args = vec!["-nostdlibinc".to_owned()];
        match self {
            Source::Mingw { include } => {
                // mingw-w64's headers expect the GNU target; with the msvc one they fail in
                // clang's mmintrin.h.
                args.push("--target=x86_64-pc-windows-gnu".to_owned());
                // Harmless in these headers, and noise on every run.
                args.push("-Wno-pragma-pack".to_owned());
                args.push("-Wno-incompatible-library-redeclaration".to_owned());
                args.push(format!("-I{}", include.display()));
                args.push(format!("-I{}", include.join("ddk").display()));
            }
            Source::Wdk { include } => {
                args.extend(
                    [
                        "--target=x86_64-pc-windows-msvc",
                        "-fms-extensions",
                        "-fms-compatibility",
                        "-D_AMD64_",
                        "-DAMD64",
                        "-D_WIN64",
                        "-D_KERNEL_MODE",
                        // The WDK's headers are written for MSVC: clang warns about hundreds
                        // of things in them that do not matter here.
                        "-w",
                    ]
                    .map(str::to_owned),
                );
                for sub in ["km", "km/crt", "shared"] {
                    args.push(format!("-I{}", include.join(sub).display()));
                }
            }
        }
        args
    }
}

/// mingw-w64's headers when they are here (installing them under CI), else, on a Windows host,
/// an installed WDK.
fn default_source() -> Result<Source, String> {
    if let Some(include) = find_mingw_include() {
        return Ok(Source::Mingw { include });
    }
    if cfg!(windows) {
        if let Some(include) = installed_wdk() {
            return Ok(Source::Wdk { include });
        }
    }
    debian::ensure("codegen", &[debian::MINGW_HEADERS]).map_err(|e| {
        format!("mingw-w64's ddk/ntddk.h not found (or give the WDK with --wdk DIR): {e}")
    })?;
    find_mingw_include()
        .map(|include| Source::Mingw { include })
        .ok_or_else(|| {
            "mingw-w64-x86-64-dev is installed but ddk/ntddk.h is not in \
         /usr/share/mingw-w64/include"
                .to_owned()
        })
}

fn find_mingw_include() -> Option<PathBuf> {
    // Debian's mingw-w64-x86-64-dev, then the layout most other distributions use.
    [
        "/usr/share/mingw-w64/include",
        "/usr/x86_64-w64-mingw32/include",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|dir| dir.join("ddk/ntddk.h").is_file())
}

/// The WDK of a Windows machine: `%WDKContentRoot%` (set by the EWDK and the WDK's build
/// environment), else the default install folder.
fn installed_wdk() -> Option<PathBuf> {
    let roots = std::env::var_os("WDKContentRoot")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(r"C:\Program Files (x86)\Windows Kits\10")]);
    roots
        .into_iter()
        .find_map(|root| wdk_include_dir(&root).ok())
}

/// `DIR` may be the kit's root (`Windows Kits/10`, whose `Include/` holds one folder per
/// version: the newest with `km/ntddk.h` wins) or one version's include folder itself.
fn wdk_include_dir(dir: &Path) -> Result<PathBuf, String> {
    if dir.join("km/ntddk.h").is_file() {
        return Ok(dir.to_path_buf());
    }
    let include = dir.join("Include");
    let mut versions: Vec<PathBuf> = fs::read_dir(&include)
        .map_err(|e| {
            format!(
                "--wdk {}: no km/ntddk.h there, and cannot list {}: {e}",
                dir.display(),
                include.display()
            )
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.join("km/ntddk.h").is_file())
        .collect();
    versions.sort_by_key(|p| version_key(p));
    versions.pop().ok_or_else(|| {
        format!(
            "--wdk {}: neither km/ntddk.h nor Include/<version>/km/ntddk.h found",
            dir.display()
        )
    })
}

/// `10.0.22621.0` sorts before `10.0.26100.0`, numerically.
fn version_key(path: &Path) -> Vec<u64> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// Points bindgen at a libclang: `LIBCLANG_PATH` when set, else the newest
/// `/usr/lib/llvm-*/lib` that has one (Debian's layout), installing `libclang-dev` under CI.
///
/// Returns the clang resource folder beside it (`clang/<version>`, which holds `stddef.h` and
/// the other compiler headers), when there is one. libclang looks for it beside the library's
/// real path, which on Debian is `/usr/lib/x86_64-linux-gnu/`, where it is not; bindgen's usual
/// fix, asking a `clang` binary for its search paths, would make the output depend on which
/// clang is installed.
fn find_libclang() -> crate::Result<Option<PathBuf>> {
    let dir = if let Some(dir) = std::env::var_os("LIBCLANG_PATH") {
        let dir = PathBuf::from(dir);
        if cfg!(target_os = "linux") && !has_libclang(&dir) {
            return Err(format!(
                "LIBCLANG_PATH={} holds no libclang*.so (Debian: libclang-dev puts it in \
                 /usr/lib/llvm-<version>/lib; unset LIBCLANG_PATH to have it found there)",
                dir.display()
            )
            .into());
        }
        dir
    } else if cfg!(not(target_os = "linux")) {
        // clang-sys searches the usual places of other systems itself.
        return Ok(None);
    } else {
        let dir = match newest_llvm_libdir() {
            Some(dir) => dir,
            None => {
                debian::ensure("codegen", &[debian::LIBCLANG])
                    .map_err(|e| format!("libclang not found in /usr/lib/llvm-*/lib: {e}"))?;
                newest_llvm_libdir().ok_or(
                    "libclang-dev is installed but no /usr/lib/llvm-*/lib/libclang*.so was \
                     found; set LIBCLANG_PATH to the folder that holds libclang.so",
                )?
            }
        };
        std::env::set_var("LIBCLANG_PATH", &dir);
        dir
    };
    Ok(resource_dir(&dir))
}

/// The newest `clang/<version>` under `libdir` that has `include/stddef.h`.
fn resource_dir(libdir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(libdir.join("clang"))
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.join("include/stddef.h").is_file())
        .collect();
    found.sort_by_key(|p| version_key(p));
    found.pop()
}

fn newest_llvm_libdir() -> Option<PathBuf> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("llvm-")?.parse().ok()?;
            let lib = entry.path().join("lib");
            has_libclang(&lib).then_some((version, lib))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, lib)| lib)
}

fn has_libclang(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| is_libclang(&e.file_name().to_string_lossy()))
    })
}

/// Whether `name` is a file bindgen loads as libclang: `libclang.so`, `libclang.so.14`,
/// `libclang-14.so.1` (clang-sys's patterns), but not `libclang-cpp.so.14`, the C++ library that
/// Debian's `llvm` package brings without libclang itself (issue #19: a new machine has it).
fn is_libclang(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("libclang") else {
        return false;
    };
    let is_so = |suffix: &str| suffix == ".so" || suffix.starts_with(".so.");
    if is_so(rest) {
        return true;
    }
    let Some(versioned) = rest.strip_prefix('-') else {
        return false;
    };
    versioned.find(".so").is_some_and(|at| {
        at > 0
            && versioned[..at]
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.')
            && is_so(&versioned[at..])
    })
}

/// Gives the IRQL macros (`PASSIVE_LEVEL`, `APC_LEVEL`, `DISPATCH_LEVEL`) the type that
/// `KeGetCurrentIrql` returns, `KIRQL`, where the header leaves them untyped `#define`s (which
/// bindgen would make `u32`): a level then compares with an IRQL, and goes where one goes, without
/// a cast.
#[derive(Debug)]
struct IrqlLevels;

impl bindgen::callbacks::ParseCallbacks for IrqlLevels {
    fn int_macro(&self, name: &str, _value: i64) -> Option<bindgen::callbacks::IntKind> {
        name.ends_with("_LEVEL")
            .then_some(bindgen::callbacks::IntKind::Custom {
                name: "KIRQL",
                is_signed: false,
            })
    }
}

/// Runs bindgen and rustfmt for one output; returns the file's full text.
fn generate(
    root: &Path,
    source: &Source,
    resource_dir: Option<&Path>,
    output: &Output,
) -> crate::Result<String> {
    let exact = |names: &[&str]| names.join("|");
    let mut clang_args = source.clang_args();
    if let Some(dir) = resource_dir {
        clang_args.push(format!("-resource-dir={}", dir.display()));
    }
    let mut builder = bindgen::Builder::default()
        .header(root.join(WRAPPER).to_string_lossy())
        .clang_args(clang_args)
        .detect_include_paths(false)
        // Rust 1.63 is the MSRV: no `unsafe extern` blocks, no `offset_of!` in layout tests.
        .rust_target(bindgen::RustTarget::stable(63, 0).map_err(|e| format!("{e:?}"))?)
        .use_core()
        // Windows' C types at Windows' (LLP64) widths on every target: `ULONG` stays 32 bits
        // when the host backend compiles these declarations on a 64-bit Linux.
        .ctypes_prefix("crate::ctypes")
        // Both runs allowlist everything, so that the types run also emits every type the
        // routines use; the codegen config then picks what each file holds.
        .allowlist_function(exact(FUNCTIONS))
        .allowlist_var(exact(CONSTANTS))
        .allowlist_type(exact(TYPES))
        .generate_comments(false)
        .parse_callbacks(Box::new(IrqlLevels))
        .merge_extern_blocks(true)
        .layout_tests(true)
        .formatter(bindgen::Formatter::None);
    builder = match output.items {
        Items::Types => builder.with_codegen_config(bindgen::CodegenConfig::TYPES),
        Items::Declarations => builder
            .with_codegen_config(bindgen::CodegenConfig::FUNCTIONS | bindgen::CodegenConfig::VARS)
            .raw_line("use crate::types::*;"),
    };
    let bindings = builder
        .generate()
        .map_err(|e| format!("bindgen failed on {WRAPPER}: {e}"))?;
    let code = bindings.to_string();
    check_complete(&code, output.items)?;
    let code = rustfmt(&code)?;
    Ok(format!("{}{code}", header(source, output)))
}

/// An allowlist entry that matches nothing is dropped without a word by bindgen: refuse the
/// output instead, naming what the headers did not declare.
fn check_complete(code: &str, items: Items) -> crate::Result {
    let tokens: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .collect();
    let declared = |keyword: &str, name: &str| tokens.windows(2).any(|w| w == [keyword, name]);
    let missing: Vec<&str> = match items {
        Items::Types => TYPES
            .iter()
            .copied()
            .filter(|n| !declared("type", n))
            .collect(),
        Items::Declarations => FUNCTIONS
            .iter()
            .copied()
            .filter(|n| !declared("fn", n))
            .chain(CONSTANTS.iter().copied().filter(|n| !declared("const", n)))
            .collect(),
    };
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the headers did not declare: {}", missing.join(", ")).into())
    }
}

fn header(source: &Source, output: &Output) -> String {
    let text = format!(
        "@generated by `{command}` (xtask/src/codegen.rs) with the bindgen crate: {what} of \
         mmsecure-sys/include/mmsecure_sys.h, that is of {from}.\n\
         Never edit this file by hand: change the headers or the xtask and run the command \
         again. `cargo xtask codegen --check` (run by CI) fails when this file differs from \
         what the command makes.",
        command = source.command(),
        what = output.what,
        from = source.describe(),
    );
    let mut out = String::new();
    for paragraph in text.lines() {
        let mut line = String::from("//");
        for word in unbreakable_words(paragraph) {
            if line.len() + 1 + word.len() > 100 {
                out.push_str(&line);
                out.push('\n');
                line = String::from("//");
            }
            line.push(' ');
            line.push_str(&word);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The words of `text`, a `code span` counting as one word.
fn unbreakable_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut in_code = false;
    for word in text.split(' ') {
        match words.last_mut() {
            Some(last) if in_code => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_owned()),
        }
        if word.matches('`').count() % 2 == 1 {
            in_code = !in_code;
        }
    }
    words
}

/// Formats with rustfmt from the current toolchain (`$RUSTFMT` if set), as `cargo fmt` does.
fn rustfmt(code: &str) -> crate::Result<String> {
    let program = std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into());
    let mut child = Command::new(&program)
        .args(["--edition", "2021", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run rustfmt ({e}); install it with `rustup component add rustfmt`")
        })?;
    // A thread feeds stdin so that a large output cannot deadlock against a full stdout pipe.
    let mut stdin = child.stdin.take().ok_or("rustfmt: no stdin")?;
    let input = code.to_owned();
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output()?;
    feeder
        .join()
        .map_err(|_| "rustfmt: writer thread panicked")??;
    if !output.status.success() {
        return Err(format!(
            "rustfmt failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

#[cfg(test)]
mod tests {
    use super::is_libclang;

    #[test]
    fn libclang_is_told_from_libclang_cpp() {
        for name in [
            "libclang.so",
            "libclang.so.14",
            "libclang-14.so",
            "libclang-14.so.1",
        ] {
            assert!(is_libclang(name), "{name}");
        }
        for name in [
            "libclang-cpp.so.14",
            "libclang-cpp.so",
            "libclangBasic.a",
            "libclang.a",
        ] {
            assert!(!is_libclang(name), "{name}");
        }
    }
}
