//! `cargo xtask bench [--quick] [--no-callgrind] [--disasm-check]`: issue #8's benchmark table.
//!
//! 1. Builds `mmsecure/benches/secure.rs` (a `harness = false` bench) with `cargo bench --no-run`.
//! 2. Runs it once for wall-time figures (`--tsv`): every row there is a ratio of two sides timed
//!    round by round in that one run (see the bench's docs for the method).
//! 3. Unless `--no-callgrind` (or valgrind is missing), runs it under
//!    `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=<function>` once per
//!    measured function (`--op`), each time doing N iterations of that one operation and nothing
//!    else in the toggled function. Callgrind then counts exactly the instructions executed
//!    inside the function and its callees; divided by N, that is the cost of one operation,
//!    repeatable from run to run and blind to the machine's load. The cost of calling an empty
//!    function of the same signature (`mmsecure_bench_empty`) is subtracted from each.
//! 4. Prints one table, with the machine it ran on. Goals are shown as met or MISSED; a missed
//!    goal never fails the task: speed is measured here, not asserted.
//!
//! `--quick` (CI's mode) shortens every measurement; the rows are the same. `--disasm-check` also
//! checks what a secure + drop compiles to in the sample driver (see [`disasm`]), building the
//! driver first if `target/driver/` has none.

pub mod disasm;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::command::{display, stdout_of};
use crate::cross::{self, Stopwatch};
use crate::debian;

/// The bench target in `mmsecure/Cargo.toml`.
const BENCH: &str = "secure";

/// Callgrind iterations per measured function: full and quick.
const CALLGRIND_ITERS: (u64, u64) = (20_000, 2_000);

/// The standing-secure counts of the bench's row 3 (as in `benches/secure.rs`).
const STANDING: [usize; 3] = [10, 1_000, 100_000];

#[derive(Debug, Default)]
struct Options {
    quick: bool,
    no_callgrind: bool,
    disasm_check: bool,
}

fn parse_args(args: &[String]) -> crate::Result<Options> {
    let mut options = Options::default();
    for arg in args {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-callgrind" => options.no_callgrind = true,
            "--disasm-check" => options.disasm_check = true,
            other => {
                return Err(format!(
                    "unknown argument `{other}`: usage: cargo xtask bench [--quick] \
                     [--no-callgrind] [--disasm-check]"
                )
                .into())
            }
        }
    }
    Ok(options)
}

/// `cargo xtask bench`.
pub fn run(args: &[String]) -> crate::Result {
    let options = parse_args(args)?;
    let root = cross::workspace_root();
    let mut watch = Stopwatch::new("bench");
    let result = bench(&root, &options, &mut watch);
    watch.print();
    result
}

fn bench(root: &Path, options: &Options, watch: &mut Stopwatch) -> crate::Result {
    let binary = build_bench(root)?;
    watch.lap("cargo bench --no-run");

    let mut wall = vec!["--tsv".to_owned()];
    if options.quick {
        wall.push("--quick".to_owned());
    }
    println!("[bench] wall time: {} {}", binary.display(), wall.join(" "));
    let tsv = stdout_of(Command::new(&binary).args(&wall).stderr(Stdio::inherit()))?;
    let rows = parse_tsv(&tsv)?;
    watch.lap("wall time");

    let counts = if options.no_callgrind {
        None
    } else if !has_valgrind() && std::env::var("CI").as_deref() != Ok("true") {
        println!("[bench] valgrind not found: no instruction counts (apt-get install valgrind)");
        None
    } else {
        // Under CI the counts are part of the step: install valgrind rather than go without.
        debian::ensure("bench", &[debian::VALGRIND])?;
        let iters = if options.quick {
            CALLGRIND_ITERS.1
        } else {
            CALLGRIND_ITERS.0
        };
        let counts = instruction_counts(root, &binary, iters)?;
        watch.lap("callgrind");
        Some(counts)
    };

    println!();
    print!("{}", table(&machine(), options, &rows, counts.as_ref()));

    if options.disasm_check {
        let built = driver_files(root, watch)?;
        let checked = disasm::check_driver(&built.sys, &built.map);
        watch.lap("disassembly check");
        checked?;
    }
    Ok(())
}

/// The cargo that runs this task (rustup's), else `cargo` from `PATH`.
fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

/// Builds the bench with `cargo bench --no-run` and returns its executable.
fn build_bench(root: &Path) -> crate::Result<PathBuf> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args([
        "bench",
        "-p",
        "mmsecure",
        "--bench",
        BENCH,
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    println!("[bench] $ {}", display(&cmd));
    let stdout = stdout_of(cmd.stderr(Stdio::inherit()))?;
    stdout
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .filter(|line| line.contains(&format!(r#""name":"{BENCH}""#)))
        .find_map(|line| json_string_field(line, "executable"))
        .map(PathBuf::from)
        .ok_or_else(|| format!("cargo built no executable for the `{BENCH}` bench").into())
}

/// The value of string field `name` in one line of cargo's JSON, if it is a string. Enough JSON
/// for cargo's messages: the value's escapes are undone for `\"`, `\\` and `\/`.
fn json_string_field(line: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":\"");
    let start = line.find(&key)? + key.len();
    let mut value = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

/// A row of the bench's `--tsv` output.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: String,
    what: String,
    baseline_name: String,
    baseline: f64,
    measured_name: String,
    measured: f64,
    unit: String,
    ratio: f64,
    ratio_low: f64,
    ratio_high: f64,
    goal: Goal,
}

/// What a row's ratio should be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
    None,
}

impl Goal {
    fn parse(kind: &str, limit: &str) -> Option<Goal> {
        let limit: f64 = limit.parse().ok()?;
        match kind {
            "at_most" => Some(Goal::AtMost(limit)),
            "at_least" => Some(Goal::AtLeast(limit)),
            "none" => Some(Goal::None),
            _ => None,
        }
    }

    fn text(self) -> String {
        match self {
            Goal::AtMost(limit) => format!("<= {limit:.2}x"),
            Goal::AtLeast(limit) => format!(">= {limit:.2}x"),
            Goal::None => String::new(),
        }
    }

    fn verdict(self, ratio: f64) -> &'static str {
        match self {
            Goal::AtMost(limit) if ratio <= limit => "met",
            Goal::AtLeast(limit) if ratio >= limit => "met",
            Goal::None => "",
            _ => "MISSED",
        }
    }
}

fn parse_tsv(text: &str) -> crate::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let number = |i: usize| -> crate::Result<f64> {
            f[i].parse()
                .map_err(|_| format!("bad number `{}` in bench line `{line}`", f[i]).into())
        };
        if f.len() != 12 {
            return Err(format!("bench line with {} fields, not 12: `{line}`", f.len()).into());
        }
        rows.push(Row {
            id: f[0].to_owned(),
            what: f[1].to_owned(),
            baseline_name: f[2].to_owned(),
            baseline: number(3)?,
            measured_name: f[4].to_owned(),
            measured: number(5)?,
            unit: f[6].to_owned(),
            ratio: number(7)?,
            ratio_low: number(8)?,
            ratio_high: number(9)?,
            goal: Goal::parse(f[10], f[11])
                .ok_or_else(|| format!("bad goal in bench line `{line}`"))?,
        });
    }
    if rows.is_empty() {
        return Err("the bench printed no rows".into());
    }
    Ok(rows)
}

fn has_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Instructions per operation, from callgrind, with the empty call's cost subtracted.
#[derive(Debug)]
struct Counts {
    iters: u64,
    /// Instructions of one call to the empty function (subtracted from the others).
    empty: f64,
    raw: f64,
    wrapper: f64,
    /// Issue #21: the raw pair and `SecureRegion::scope`, both on a thread of the process.
    raw_own_thread: f64,
    scoped: f64,
    /// `SecureRegion::read::<Header>(0)` and a reader's `read::<Header>()`, 16 bytes (issue #14).
    region_read: f64,
    reader: f64,
    /// The raw pair with 10, 1 000 and 100 000 secures standing.
    standing: Vec<(usize, f64)>,
    /// Issue #20: the C idiom (range check + raw guarded copy) and `read_user` of 64 bytes, the
    /// secure-based path it replaced, and a 64-character `capture_unicode_string`.
    c_idiom: f64,
    read_user: f64,
    read_user_secure: f64,
    capture: f64,
}

fn instruction_counts(root: &Path, binary: &Path, iters: u64) -> crate::Result<Counts> {
    let out_dir = target_dir(root).join("bench");
    fs::create_dir_all(&out_dir)?;
    let per_op = |op: &str, function: &str| -> crate::Result<f64> {
        let total = callgrind(binary, &out_dir, op, function, iters)?;
        Ok(total as f64 / iters as f64)
    };
    let empty = per_op("empty", "mmsecure_bench_empty")?;
    let raw = per_op("raw", "mmsecure_bench_raw")? - empty;
    let wrapper = per_op("wrapper", "mmsecure_bench_wrapper")? - empty;
    let raw_own_thread = per_op("raw-own-thread", "mmsecure_bench_raw")? - empty;
    let scoped = per_op("scoped", "mmsecure_bench_scoped")? - empty;
    let region_read = per_op("region-read", "mmsecure_bench_region_read")? - empty;
    let reader = per_op("reader", "mmsecure_bench_reader")? - empty;
    let c_idiom = per_op("c-idiom", "mmsecure_bench_c_idiom")? - empty;
    let read_user = per_op("read-user", "mmsecure_bench_read_user")? - empty;
    let read_user_secure = per_op("read-user-secure", "mmsecure_bench_read_user_secure")? - empty;
    let capture = per_op("capture", "mmsecure_bench_capture")? - empty;
    let mut standing = Vec::new();
    for count in STANDING {
        let op = format!("standing-{count}");
        standing.push((count, per_op(&op, "mmsecure_bench_raw")? - empty));
    }
    Ok(Counts {
        iters,
        empty,
        raw,
        wrapper,
        raw_own_thread,
        scoped,
        region_read,
        reader,
        standing,
        c_idiom,
        read_user,
        read_user_secure,
        capture,
    })
}

/// `CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                root.join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| root.join("target"))
}

/// Runs `binary --op op --iters iters` under callgrind, collecting only inside `function`, and
/// returns the instructions collected.
fn callgrind(
    binary: &Path,
    out_dir: &Path,
    op: &str,
    function: &str,
    iters: u64,
) -> crate::Result<u64> {
    let out = out_dir.join(format!("callgrind.{op}.out"));
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--tool=callgrind",
        "--collect-atstart=no",
        &format!("--toggle-collect={function}"),
    ])
    .arg(format!("--callgrind-out-file={}", out.display()))
    .arg(binary)
    .args(["--op", op, "--iters", &iters.to_string()]);
    println!("[bench] $ {}", display(&cmd));
    stdout_of(&mut cmd)?;
    let profile =
        fs::read_to_string(&out).map_err(|e| format!("cannot read {}: {e}", out.display()))?;
    callgrind_total(&profile)
        .ok_or_else(|| format!("no `totals:` or `summary:` line in {}", out.display()).into())
}

/// The first event count (instructions) of a callgrind profile's `totals:` line (or, from older
/// callgrinds, `summary:`).
fn callgrind_total(profile: &str) -> Option<u64> {
    let line = profile
        .lines()
        .find(|line| line.starts_with("totals:"))
        .or_else(|| profile.lines().find(|line| line.starts_with("summary:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The machine the figures come from: CPU model, cores, rustc, load when the run started.
fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split(':').nth(1))
            .map(|value| value.trim().to_owned())
    };
    let cpu = field("model name").unwrap_or_else(|| "unknown CPU".to_owned());
    let family_model = match (field("cpu family"), field("model\t")) {
        (Some(family), Some(model)) => format!(" (family {family}, model {model})"),
        _ => String::new(),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = Command::new(
        cargo()
            .parent()
            .map(|bin| bin.join("rustc"))
            .filter(|rustc| rustc.exists())
            .unwrap_or_else(|| PathBuf::from("rustc")),
    )
    .arg("--version")
    .output()
    .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    .unwrap_or_else(|_| "rustc (unknown version)".to_owned());
    let load = fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{cpu}{family_model}, {cores} cores; {rustc}; load average {load}")
}

/// The table: wall-time rows from the bench, instruction rows from callgrind.
fn table(machine: &str, options: &Options, rows: &[Row], counts: Option<&Counts>) -> String {
    let mut lines: Vec<[String; 7]> = Vec::new();
    let ratio_text = |ratio: f64| format!("{ratio:.3}x");
    let mut push =
        |what: &str, how: &str, baseline: String, measured: String, ratio, goal: Goal| {
            lines.push([
                what.to_owned(),
                how.to_owned(),
                baseline,
                measured,
                ratio_text(ratio),
                goal.text(),
                goal.verdict(ratio).to_owned(),
            ]);
        };
    let wall = |row: &Row| {
        (
            format!("{} {:.2} {}", row.baseline_name, row.baseline, row.unit),
            format!("{} {:.2} {}", row.measured_name, row.measured, row.unit),
        )
    };
    let iqr = |row: &Row| format!("time (IQR {:.3}-{:.3})", row.ratio_low, row.ratio_high);

    // Secure + drop, the copies, the reader, in that order; the rows that have an instruction
    // count get it first, named for its baseline and its measured side.
    let counted = |id: &str, c: &Counts| match id {
        "secure_drop" => Some((("raw pair", c.raw), ("SecureRegion", c.wrapper))),
        "secure_scoped" => Some((
            ("raw pair", c.raw_own_thread),
            ("SecureRegion::scope", c.scoped),
        )),
        "reader_header" => Some((
            ("SecureRegion::read", c.region_read),
            ("Reader::read", c.reader),
        )),
        "user_read_64" => Some((("C idiom", c.c_idiom), ("read_user", c.read_user))),
        "user_read_secure_64" => Some((
            ("secure path", c.read_user_secure),
            ("read_user", c.read_user),
        )),
        "user_capture_64" => Some((("C idiom 64 B", c.c_idiom), ("capture", c.capture))),
        _ => None,
    };
    let in_order = rows
        .iter()
        .filter(|row| row.id == "secure_drop" || row.id == "secure_scoped")
        .chain(
            rows.iter()
                .filter(|row| row.id.starts_with("read_") || row.id.starts_with("write_")),
        )
        .chain(rows.iter().filter(|row| row.id == "reader_header"))
        .chain(rows.iter().filter(|row| row.id.starts_with("user_")));
    for row in in_order {
        if let Some(((base_name, base), (meas_name, meas))) =
            counts.and_then(|c| counted(&row.id, c))
        {
            push(
                &row.what,
                "instructions",
                format!("{base_name} {base:.1}"),
                format!("{meas_name} {meas:.1}"),
                meas / base,
                row.goal,
            );
        }
        let (baseline, measured) = wall(row);
        push(
            &row.what,
            &iqr(row),
            baseline,
            measured,
            row.ratio,
            row.goal,
        );
    }
    for row in rows.iter().filter(|row| row.id.starts_with("standing_")) {
        let standing: Option<usize> = row.id["standing_".len()..].parse().ok();
        if let Some(c) = counts {
            let first = c.standing.first().map_or(f64::NAN, |s| s.1);
            if let Some((_, ir)) = c.standing.iter().find(|s| Some(s.0) == standing) {
                push(
                    &row.what,
                    "instructions",
                    format!("10 standing {first:.1}"),
                    format!("this many {ir:.1}"),
                    ir / first,
                    row.goal,
                );
            }
        }
        let (baseline, measured) = wall(row);
        push(&row.what, "time", baseline, measured, row.ratio, row.goal);
    }

    let header = [
        "row",
        "measured by",
        "baseline",
        "measured",
        "ratio",
        "goal",
        "",
    ]
    .map(str::to_owned);
    let mut widths = [0usize; 7];
    for line in std::iter::once(&header).chain(&lines) {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mode = if options.quick { "quick" } else { "full" };
    let _ = writeln!(out, "mmsecure benchmarks, host backend ({mode} mode)");
    let _ = writeln!(out, "machine: {machine}");
    for line in std::iter::once(&header).chain(&lines) {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i == 0 || i == 1 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    let _ = writeln!(
        out,
        "ratios: secure + drop = SecureRegion (or SecureRegion::scope) / raw pair (instructions or \
         ns); copies = \
         throughput / copy_nonoverlapping's (GB = 1e9 bytes); standing = cost / cost with 10 \
         standing; header = Reader::read / SecureRegion::read"
    );
    if let Some(c) = counts {
        let _ = writeln!(
            out,
            "instructions: callgrind, {} iterations per function, per operation, less {:.1} for \
             an empty call; wall time: median of per-round ratios, interleaved in one run",
            c.iters, c.empty
        );
    } else {
        let _ = writeln!(out, "no instruction counts in this run (valgrind not used)");
    }
    out
}

/// The sample driver's files, built with `cargo xtask driver` first if there are none.
fn driver_files(root: &Path, watch: &mut Stopwatch) -> crate::Result<crate::driver::Built> {
    let out = cross::driver_out_dir(root);
    let built = crate::driver::Built {
        sys: out.join(format!("{}.sys", crate::driver::SERVICE)),
        map: out.join(format!("{}.map", crate::driver::SERVICE)),
        staticlib: crate::driver::staticlib_path(root),
    };
    if built.sys.exists() && built.map.exists() {
        println!(
            "[bench] checking the driver built earlier: {} (rebuild with `cargo xtask driver`)",
            built.sys.display()
        );
        return Ok(built);
    }
    println!("[bench] no driver in {}: building it", out.display());
    crate::driver::build(root, watch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_fields_are_found_and_unescaped() {
        let line = r#"{"reason":"compiler-artifact","executable":"/t/a\"b\\c","x":1}"#;
        assert_eq!(
            json_string_field(line, "executable").as_deref(),
            Some(r#"/t/a"b\c"#)
        );
        assert_eq!(
            json_string_field(r#"{"executable":null}"#, "executable"),
            None
        );
    }

    #[test]
    fn tsv_rows_parse_and_bad_lines_are_errors() {
        let line = "secure_drop\tsecure + drop, 1 page\traw pair\t260.5\tSecureRegion\t270.25\tns\
                    \t1.037\t1.01\t1.06\tat_most\t1.05\n";
        let rows = parse_tsv(line).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].measured, 270.25);
        assert_eq!(rows[0].goal, Goal::AtMost(1.05));
        assert!(parse_tsv("a\tb\n").is_err());
        assert!(parse_tsv("").is_err());
    }

    #[test]
    fn goals_say_met_or_missed() {
        assert_eq!(Goal::AtMost(1.05).verdict(1.05), "met");
        assert_eq!(Goal::AtMost(1.05).verdict(1.06), "MISSED");
        assert_eq!(Goal::AtLeast(0.95).verdict(0.94), "MISSED");
        assert_eq!(Goal::None.verdict(0.1), "");
    }

    #[test]
    fn callgrind_totals_are_read() {
        let profile =
            "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 7\ntotals: 15810760\n";
        assert_eq!(callgrind_total(profile), Some(15_810_760));
        assert_eq!(callgrind_total("summary: 12\n"), Some(12));
        assert_eq!(callgrind_total("events: Ir\n"), None);
    }
}
