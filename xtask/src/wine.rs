//! `cargo xtask wine`: loads the sample driver under Wine and checks what it reports.
//!
//! Wine runs a `.sys` driver in `winedevice.exe`, in user mode, when a kernel-driver service is
//! started. This task makes a fresh prefix under `target/wine/` (headless: no display, no Mono or
//! Gecko), copies in the driver `cargo xtask driver` builds, registers it as a kernel-driver
//! service, starts and stops it with `net`, then reads back:
//!
//! - the values the driver wrote under its service key, from the prefix's `system.reg`;
//! - Wine's debug log (`target/wine/driver.log`): the driver's `DbgPrint` lines
//!   (`warn+debugstr`) and, through Wine's relay tracing limited to ntoskrnl.exe, every call the
//!   driver made into the kernel, in order. That trace is what shows that mmsecure refused the
//!   bad ranges without calling any kernel routine, and that the Ex routine was looked up at run
//!   time and not found.
//!
//! Every Wine command has a timeout, and the prefix's wineserver is killed at the end whatever
//! happened. Wine's `MmSecureVirtualMemory` raises when called; the sample's secure paths skip it
//! under Wine (see its docs), and call it exactly once on purpose, under
//! `mmsecure_sys::call_guarded` (issue #9). This task checks that this was the only stub reached,
//! that the exception came back as `EXCEPTION_WINE_STUB`'s code, that a guarded copy from a
//! `PAGE_NOACCESS` page came back as `STATUS_ACCESS_VIOLATION`'s, both caught by mmsecure-sys's
//! handler (its `RtlUnwindEx` call is in the relay trace), and that the driver went on and
//! unloaded. It prints the guarded copy's cost against the unguarded one as the driver timed it;
//! timings are reported, never asserted.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cross::{self, Stopwatch};
use crate::debian;
use crate::driver::{self, SERVICE};

/// Wine 8's 64-bit loader and server, from Debian's `wine64` (and its `libwine` dependency).
const WINE: &str = "/usr/lib/wine/wine64";
const WINESERVER: &str = "/usr/lib/wine/wineserver";

/// The service key, as `reg add` takes it.
const SERVICE_KEY: &str = r"HKLM\System\CurrentControlSet\Services\mmsecure_sample";

/// How long each kind of Wine command may take before it is killed.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const SERVICE_TIMEOUT: Duration = Duration::from_secs(120);

/// `STATUS_ACCESS_VIOLATION`.
const STATUS_ACCESS_VIOLATION: u32 = 0xC000_0005;
/// `EXCEPTION_WINE_STUB`: what Wine's stubs for unimplemented functions raise.
const EXCEPTION_WINE_STUB: u32 = 0x8000_0100;

/// `cargo xtask wine`.
pub fn run(args: &[String]) -> crate::Result {
    if let Some(arg) = args.first() {
        return Err(format!("`cargo xtask wine` takes no arguments (got `{arg}`)").into());
    }
    let root = cross::workspace_root();
    let mut watch = Stopwatch::new("wine");

    debian::ensure("wine", &[debian::WINE])?;
    watch.lap("packages (wine64)");

    let built = match driver::build(&root, &mut watch) {
        Ok(built) => built,
        Err(e) => {
            watch.print();
            return Err(e);
        }
    };

    let dir = root.join("target").join("wine");
    let wine = Wine {
        prefix: dir.join("prefix"),
        dir,
    };
    let result = {
        let _server = ServerGuard(&wine);
        session(&wine, &built.sys, &mut watch)
    };
    watch.lap("wineserver -k");
    watch.print();
    result
}

/// One run: a fresh prefix, the service, start and stop, and the checks.
fn session(wine: &Wine, driver_file: &Path, watch: &mut Stopwatch) -> crate::Result {
    if wine.prefix.exists() {
        fs::remove_dir_all(&wine.prefix)?;
    }
    fs::create_dir_all(&wine.dir)?;
    for log in ["wineboot.log", "setup.log", "driver.log"] {
        File::create(wine.dir.join(log))?;
    }

    println!("[wine] fresh prefix {}", wine.prefix.display());
    wine.run_ok(wine.wine(&["wineboot", "-i"]), "wineboot.log", BOOT_TIMEOUT)?;
    watch.lap("wineboot -i");

    let drivers = wine.prefix.join("drive_c/windows/system32/drivers");
    fs::create_dir_all(&drivers)?;
    fs::copy(driver_file, drivers.join(format!("{SERVICE}.sys")))?;
    let image_path = format!(r"C:\windows\system32\drivers\{SERVICE}.sys");
    println!("[wine] register {SERVICE} as a kernel-driver service (Type 1, Start 3)");
    for (name, kind, data) in [
        ("Type", "REG_DWORD", "1"),
        ("Start", "REG_DWORD", "3"),
        ("ErrorControl", "REG_DWORD", "1"),
        // Absolute: a relative ImagePath fails to load with c0000142.
        ("ImagePath", "REG_EXPAND_SZ", image_path.as_str()),
    ] {
        let cmd = wine.wine(&[
            "reg",
            "add",
            SERVICE_KEY,
            "/v",
            name,
            "/t",
            kind,
            "/d",
            data,
            "/f",
        ]);
        wine.run_ok(cmd, "setup.log", COMMAND_TIMEOUT)?;
    }
    // Relay tracing of ntoskrnl.exe's exports: every call the driver makes into the kernel.
    let cmd = wine.wine(&[
        "reg",
        "add",
        r"HKCU\Software\Wine\Debug",
        "/v",
        "RelayInclude",
        "/t",
        "REG_SZ",
        "/d",
        "ntoskrnl.exe.*",
        "/f",
    ]);
    wine.run_ok(cmd, "setup.log", COMMAND_TIMEOUT)?;
    // services.exe reads its service list when it starts: let this session end so the next
    // one starts it afresh. Then keep the next server up from `net start` to `net stop`, or it
    // would end (taking the driver with it) as soon as `net start` exits.
    wine.run_ok(wine.server(&["-w"]), "setup.log", COMMAND_TIMEOUT)?;
    wine.run_ok(wine.server(&["-p"]), "setup.log", COMMAND_TIMEOUT)?;
    watch.lap("register service");

    println!("[wine] net start {SERVICE}");
    let mut start = wine.wine(&["net", "start", SERVICE]);
    start.env("WINEDEBUG", "-all,warn+debugstr,+relay");
    let started = wine.run(start, "driver.log", SERVICE_TIMEOUT)?;
    watch.lap("net start");

    println!("[wine] net stop {SERVICE}");
    let mut stop = wine.wine(&["net", "stop", SERVICE]);
    stop.env("WINEDEBUG", "-all,warn+debugstr,+relay");
    let stopped = wine.run(stop, "driver.log", SERVICE_TIMEOUT)?;
    watch.lap("net stop");

    // Ending the server writes the registry out to system.reg.
    wine.run_ok(wine.server(&["-k"]), "setup.log", COMMAND_TIMEOUT)?;
    wait_for_server_exit(wine);
    watch.lap("wineserver -k (save registry)");

    let log = fs::read_to_string(wine.dir.join("driver.log"))?;
    println!("[wine] what the driver printed (DbgPrint):");
    for line in log.lines().filter(|l| l.contains("debugstr")) {
        if let Some(at) = line.find("mmsecure_sample: ") {
            println!("    {}", &line[at..]);
        }
    }
    let system_reg = fs::read_to_string(wine.prefix.join("system.reg"))?;
    let values = service_values(&system_reg, SERVICE);
    let result = check(&values, &log, started, stopped);
    watch.lap("checks");
    println!(
        "[wine] logs in {}: wineboot.log, setup.log, driver.log",
        wine.dir.display()
    );
    result
}

/// A Wine prefix and the folder of its logs.
struct Wine {
    prefix: PathBuf,
    dir: PathBuf,
}

impl Wine {
    /// `wine64 <args>` in the prefix, headless, quiet unless a caller sets `WINEDEBUG`.
    fn wine(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(WINE);
        cmd.args(args);
        self.environment(&mut cmd);
        cmd
    }

    /// `wineserver <args>` for the prefix.
    fn server(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(WINESERVER);
        cmd.args(args);
        self.environment(&mut cmd);
        cmd
    }

    fn environment(&self, cmd: &mut Command) {
        cmd.env("WINEPREFIX", &self.prefix)
            // No Mono and no Gecko: nothing to download, no dialog to answer.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env("WINEDEBUG", "-all")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
    }

    /// Runs `cmd` with its output appended to `log`, killing it after `timeout`.
    ///
    /// Output goes to a file, not a pipe: the Wine processes a command starts (services.exe,
    /// winedevice.exe) inherit it and write to it after the command has exited.
    fn run(&self, mut cmd: Command, log: &str, timeout: Duration) -> crate::Result<ExitStatus> {
        let log_path = self.dir.join(log);
        let out = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)?;
        let shown = crate::command::display(&cmd);
        println!("  $ {shown}");
        let mut child = cmd
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("cannot run {shown}: {e}"))?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > timeout {
                // The command is stuck; killing it is the point, so a failure to kill (it just
                // exited) changes nothing.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{shown}` did not finish in {} s (see {})",
                    timeout.as_secs(),
                    log_path.display()
                )
                .into());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// As [`Wine::run`], and the command must exit with 0.
    fn run_ok(&self, cmd: Command, log: &str, timeout: Duration) -> crate::Result {
        let shown = crate::command::display(&cmd);
        let status = self.run(cmd, log, timeout)?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{shown}` failed: {status} (see {})",
                self.dir.join(log).display()
            )
            .into())
        }
    }
}

/// Kills the prefix's wineserver (and with it every Wine process of the prefix) when dropped,
/// whatever the session returned.
struct ServerGuard<'a>(&'a Wine);

impl Drop for ServerGuard<'_> {
    fn drop(&mut self) {
        if !self.0.prefix.exists() {
            return;
        }
        // Usually already gone, in which case `wineserver -k` fails, harmlessly.
        let _ = self
            .0
            .run(self.0.server(&["-k"]), "setup.log", COMMAND_TIMEOUT);
        wait_for_server_exit(self.0);
    }
}

/// Waits (boundedly) until the prefix's wineserver has exited, so that system.reg is complete.
fn wait_for_server_exit(wine: &Wine) {
    // `wineserver -w` returns at once when no server runs.
    let _ = wine.run(wine.server(&["-w"]), "setup.log", COMMAND_TIMEOUT);
}

/// A registry value as Wine writes it in a `.reg` file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Dword(u32),
    Text(String),
    Other(String),
}

/// The values under `...\Services\<service>` in Wine's `system.reg`.
fn service_values(system_reg: &str, service: &str) -> BTreeMap<String, Value> {
    let header_end = format!("\\\\services\\\\{}]", service.to_ascii_lowercase());
    let mut values = BTreeMap::new();
    let mut inside = false;
    for line in system_reg.lines() {
        if line.starts_with('[') {
            inside = line.to_ascii_lowercase().contains(&header_end);
            continue;
        }
        if !inside {
            continue;
        }
        let Some((name, rest)) = line.strip_prefix('"').and_then(split_quoted) else {
            continue;
        };
        let Some(raw) = rest.strip_prefix('=') else {
            continue;
        };
        let value = if let Some(hex) = raw.strip_prefix("dword:") {
            u32::from_str_radix(hex.trim(), 16)
                .map(Value::Dword)
                .unwrap_or_else(|_| Value::Other(raw.to_owned()))
        } else if let Some((text, _)) = raw
            .strip_prefix("str(2):\"")
            .or_else(|| raw.strip_prefix('"'))
            .and_then(split_quoted)
        {
            Value::Text(text)
        } else {
            Value::Other(raw.to_owned())
        };
        values.insert(name, value);
    }
    values
}

/// Splits `text` (just after an opening quote) at its closing quote: the unescaped contents and
/// what follows the quote.
fn split_quoted(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

/// One thing the driver did during DriverEntry, as Wine's log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A `DbgPrint` report: `mmsecure_sample: NAME: VALUE`.
    Report(String, String),
    /// A call into ntoskrnl.exe (relay trace), by routine name.
    Call(String),
    /// A return from ntoskrnl.exe: routine name and `retval`.
    Return(String, String),
}

/// What the driver did between Wine's `Call driver init` and `Ret  driver init` for `service`,
/// on that thread, or `None` when DriverEntry never ran (or never returned).
fn driver_entry_events(log: &str, service: &str) -> Option<Vec<Event>> {
    let mut lines = log.lines();
    let thread = lines.find_map(|line| {
        let (thread, rest) = line.split_once(':')?;
        (rest.starts_with("Call driver init") && rest.contains(service)).then_some(thread)
    })?;
    let mut events = Vec::new();
    for line in lines {
        let Some(rest) = line
            .strip_prefix(thread)
            .and_then(|rest| rest.strip_prefix(':'))
        else {
            continue;
        };
        if rest.starts_with("Ret  driver init") {
            return Some(events);
        }
        if let Some(call) = rest.strip_prefix("Call ntoskrnl.exe.") {
            let name = call.split('(').next().unwrap_or(call);
            events.push(Event::Call(name.to_owned()));
        } else if let Some(ret) = rest.strip_prefix("Ret  ntoskrnl.exe.") {
            let name = ret.split('(').next().unwrap_or(ret);
            let retval = ret
                .split_once("retval=")
                .map(|(_, v)| v.split_whitespace().next().unwrap_or(""))
                .unwrap_or("");
            events.push(Event::Return(name.to_owned(), retval.to_owned()));
        } else if let Some(at) = rest.find("mmsecure_sample: ") {
            let report = &rest[at + "mmsecure_sample: ".len()..];
            if let Some((name, value)) = report.split_once(": ") {
                events.push(Event::Report(name.to_owned(), value.trim().to_owned()));
            }
        }
    }
    None
}

/// The events strictly between the reports named `from` and `to`.
fn between<'a>(events: &'a [Event], from: &str, to: &str) -> Option<&'a [Event]> {
    let position = |name: &str| {
        events
            .iter()
            .position(|e| matches!(e, Event::Report(n, _) if n == name))
    };
    let (start, end) = (position(from)?, position(to)?);
    (start < end).then(|| &events[start + 1..end])
}

/// The routines called in `events`, other than the two the driver reports with.
fn kernel_calls(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Call(name) if name != "DbgPrint" && name != "RtlWriteRegistryValue" => {
                Some(name.as_str())
            }
            _ => None,
        })
        .collect()
}

/// Every check on what the driver reported and what Wine logged; each printed pass or FAIL.
fn check(
    values: &BTreeMap<String, Value>,
    log: &str,
    started: ExitStatus,
    stopped: ExitStatus,
) -> crate::Result {
    println!("[wine] checks:");
    let mut failed = 0;
    let mut total = 0;
    let mut record = |ok: bool, what: &str, detail: String| {
        total += 1;
        if !ok {
            failed += 1;
        }
        println!("  {}  {what} ({detail})", if ok { "pass" } else { "FAIL" });
    };
    let dword = |name: &str, want: u32| {
        let got = values.get(name);
        (
            got == Some(&Value::Dword(want)),
            format!("{name} = {got:?}"),
        )
    };
    let text = |name: &str, want: &str| {
        let got = values.get(name);
        (
            got == Some(&Value::Text(want.to_owned())),
            format!("{name} = {got:?}"),
        )
    };

    record(
        started.success(),
        "net start succeeded (DriverEntry returned STATUS_SUCCESS)",
        started.to_string(),
    );
    let (ok, detail) = dword("DriverEntry", 1);
    record(ok, "DriverEntry ran", detail);
    let (ok, detail) = dword("DriverEntryDone", 1);
    record(ok, "DriverEntry ran to its end", detail);
    let (ok, detail) = dword("UnderWine", 1);
    record(
        ok,
        "the driver knew it ran under Wine (found wine_ntoskrnl_main_loop)",
        detail,
    );
    for (name, want, what) in [
        ("BadNullAddress", "Err(NullAddress)", "null address"),
        ("BadZeroLength", "Err(ZeroLength)", "zero length"),
        ("BadKernelAddress", "Err(NotUserRange)", "kernel address"),
        (
            "BadOverflow",
            "Err(Overflow)",
            "range past the end of the address space",
        ),
    ] {
        let (ok, detail) = text(name, want);
        record(ok, &format!("mmsecure refused a {what}"), detail);
    }
    let (ok, detail) = dword("SecureExAvailable", 0);
    record(ok, "MmSecureVirtualMemoryEx not found at run time", detail);
    let (ok, detail) = text("HighestUserAddress", "0x00007FFFFFFEFFFF");
    record(
        ok,
        "the highest user address is the 64-bit value (Wine's MmHighestUserAddress export is a \
         code stub, whose bytes mmsecure does not take for an address)",
        detail,
    );
    let (ok, detail) = text("ProcessReference", "Ok");
    record(
        ok,
        "ObfReferenceObject and ObfDereferenceObject on the current process returned",
        detail,
    );
    let (ok, detail) = text("UserBuffer", "Ok");
    record(ok, "user buffer allocated", detail);
    let (ok, detail) = text("FlagsSecureCopy", "Err(Unavailable)");
    record(
        ok,
        "SecureRegion::with_flags returned Unavailable instead of crashing",
        detail,
    );
    let (ok, detail) = text("SecureCopy", "Skipped(Wine)");
    record(
        ok,
        "the no-flags secure was skipped under Wine (its stub raises)",
        detail,
    );
    let (ok, detail) = text("ScopedCopy", "Skipped(Wine)");
    record(
        ok,
        "the scoped secure was skipped under Wine (the same stub)",
        detail,
    );
    let (ok, detail) = text("Pairs", "Skipped(Wine)");
    record(
        ok,
        "the measured secure pairs were skipped under Wine (the same stub)",
        detail,
    );

    let (ok, detail) = text("SliceCopy", "Ok");
    record(
        ok,
        "a UserSlice reader copied the request with no secure (probe, process reference, \
         guarded copies)",
        detail,
    );

    let (ok, detail) = dword("GuardedCopyNoAccess", STATUS_ACCESS_VIOLATION);
    record(
        ok,
        "a guarded copy from a PAGE_NOACCESS page returned STATUS_ACCESS_VIOLATION",
        detail,
    );
    let (ok, detail) = dword("GuardedCopyRestored", 0);
    record(
        ok,
        "the same guarded copy succeeded once the page was readable again",
        detail,
    );
    // The partial-copy contract (issue #23) on this CPU: 24 bytes before the faulting page,
    // exactly, and nothing after them.
    for (side, page) in [("Read", "PAGE_NOACCESS"), ("Write", "PAGE_READONLY")] {
        let (ok, detail) = dword(&format!("Partial{side}Status"), STATUS_ACCESS_VIOLATION);
        record(
            ok,
            &format!("a guarded copy running into a {page} page returned STATUS_ACCESS_VIOLATION"),
            detail,
        );
        let (ok, detail) = dword(&format!("Partial{side}Prefix"), 24);
        record(
            ok,
            &format!("it copied exactly the 24 bytes before the {page} page"),
            detail,
        );
        let (ok, detail) = dword(&format!("Partial{side}RestUntouched"), 1);
        record(ok, "and changed nothing after them", detail);
    }
    let (ok, detail) = dword("GuardedSecureCall", EXCEPTION_WINE_STUB);
    record(
        ok,
        "call_guarded into Wine's raising MmSecureVirtualMemory returned EXCEPTION_WINE_STUB",
        detail,
    );

    let stub_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("unimplemented function"))
        .collect();
    let only_the_guarded_stub = match stub_lines.as_slice() {
        [line] => {
            let at = log.find(*line);
            let after = log.find("mmsecure_sample: GuardedCopyRestored:");
            let before = log.find("mmsecure_sample: GuardedSecureCall:");
            line.contains("ntoskrnl.exe.MmSecureVirtualMemory")
                && matches!((after, at, before), (Some(a), Some(s), Some(b)) if a < s && s < b)
        }
        _ => false,
    };
    record(
        only_the_guarded_stub,
        "the only raising Wine stub reached was MmSecureVirtualMemory, once, in the guarded call",
        if stub_lines.is_empty() {
            "no `unimplemented function` in the log".to_owned()
        } else {
            stub_lines.join(" | ")
        },
    );
    record(
        log.contains("mmsecure_sample: DriverEntryDone: yes"),
        "DbgPrint output reached Wine's debug log",
        "warn+debugstr".to_owned(),
    );

    match driver_entry_events(log, SERVICE) {
        None => record(
            false,
            "relay trace of DriverEntry",
            "no `Call driver init` ... `Ret  driver init` for the service in the log".to_owned(),
        ),
        Some(events) => {
            let all: Vec<&str> = kernel_calls(&events);
            match between(&events, "UnderWine", "BadOverflow") {
                Some(window) => {
                    let calls = kernel_calls(window);
                    record(
                        calls.is_empty(),
                        "the bad ranges reached no kernel routine (relay trace)",
                        format!("kernel calls between the reports: {calls:?}"),
                    );
                }
                None => record(
                    false,
                    "the bad ranges reached no kernel routine (relay trace)",
                    "reports UnderWine .. BadOverflow not in order in the trace".to_owned(),
                ),
            }
            let lookup_found_nothing = |window: Option<&[Event]>| {
                window.is_some_and(|w| {
                    w.iter().any(|e| {
                        matches!(e, Event::Return(n, r)
                            if n == "MmGetSystemRoutineAddress" && r.trim_start_matches('0').is_empty())
                    })
                })
            };
            let ex_window = between(&events, "BadOverflow", "SecureExAvailable");
            record(
                lookup_found_nothing(ex_window),
                "MmGetSystemRoutineAddress was asked at run time and returned NULL",
                format!(
                    "kernel calls: {:?}",
                    ex_window.map(kernel_calls).unwrap_or_default()
                ),
            );
            let reference_calls = between(&events, "HighestUserAddress", "ProcessReference")
                .map(kernel_calls)
                .unwrap_or_default();
            record(
                reference_calls
                    == [
                        "IoGetCurrentProcess",
                        "ObfReferenceObject",
                        "ObfDereferenceObject",
                    ],
                "the process reference was taken and dropped (relay trace)",
                format!("kernel calls: {reference_calls:?}"),
            );
            let flags_window = between(&events, "UserBuffer", "FlagsSecureCopy");
            let flags_calls = flags_window.map(kernel_calls).unwrap_or_default();
            record(
                lookup_found_nothing(flags_window)
                    && flags_calls
                        .iter()
                        .all(|c| *c == "MmGetSystemRoutineAddress"),
                "the flags path only looked the routine up (relay trace)",
                format!("kernel calls: {flags_calls:?}"),
            );
            let secure_calls: Vec<&&str> = all
                .iter()
                .filter(|c| c.starts_with("MmSecure") || c.starts_with("MmUnsecure"))
                .collect();
            record(
                secure_calls.is_empty(),
                "no secure routine was called through the relay (only the guarded stub, above)",
                format!("all kernel calls: {all:?}"),
            );
            for (from, to, what) in [
                ("SecureCopy", "GuardedCopyNoAccess", "the access violation"),
                (
                    "GuardedCopyRestored",
                    "GuardedSecureCall",
                    "the stub's exception",
                ),
            ] {
                let calls = between(&events, from, to)
                    .map(kernel_calls)
                    .unwrap_or_default();
                record(
                    calls.contains(&"RtlUnwindEx"),
                    &format!(
                        "mmsecure-sys's handler caught {what} (RtlUnwindEx in the relay trace)"
                    ),
                    format!("kernel calls between {from} and {to}: {calls:?}"),
                );
            }
        }
    }

    let ticks: Vec<Option<u32>> = [
        "Ticks4KGuarded",
        "Ticks4KUnguarded",
        "Ticks64KGuarded",
        "Ticks64KUnguarded",
    ]
    .iter()
    .map(|name| match values.get(*name) {
        Some(Value::Dword(n)) if *n > 0 => Some(*n),
        _ => None,
    })
    .collect();
    record(
        ticks.iter().all(Option::is_some),
        "the driver timed guarded and unguarded copies",
        format!("ticks per copy: {ticks:?}"),
    );
    if let [Some(g4), Some(u4), Some(g64), Some(u64)] = ticks[..] {
        println!(
            "  cost  guarded / unguarded copy, time stamp counter ticks per copy (fastest of 9 \
             runs): 4 KiB {g4} / {u4} = {:.3}, 64 KiB {g64} / {u64} = {:.3}",
            f64::from(g4) / f64::from(u4),
            f64::from(g64) / f64::from(u64)
        );
    }

    record(stopped.success(), "net stop succeeded", stopped.to_string());
    let (ok, detail) = dword("Unloaded", 1);
    record(ok, "the unload routine ran", detail);

    if failed == 0 {
        println!("[wine] all {total} checks passed");
        Ok(())
    } else {
        Err(format!("{failed} of {total} Wine checks failed").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM_REG: &str = r#"WINE REGISTRY Version 2
[System\\CurrentControlSet\\Services\\Other] 1
"DriverEntry"=dword:00000007

[System\\CurrentControlSet\\Services\\mmsecure_sample] 1795305211
#time=1dd7a13832ed890
"BadNullAddress"="Err(NullAddress)"
"DriverEntry"=dword:00000001
"ImagePath"=str(2):"C:\\windows\\system32\\drivers\\mmsecure_sample.sys"
"Quoted \"name\""="a \"b\""

[System\\CurrentControlSet\\Services\\MountMgr] 1
"Unloaded"=dword:00000001
"#;

    #[test]
    fn reads_only_the_services_own_values() {
        let values = service_values(SYSTEM_REG, "mmsecure_sample");
        assert_eq!(values.get("DriverEntry"), Some(&Value::Dword(1)));
        assert_eq!(
            values.get("BadNullAddress"),
            Some(&Value::Text("Err(NullAddress)".into()))
        );
        assert_eq!(
            values.get("ImagePath"),
            Some(&Value::Text(
                r"C:\windows\system32\drivers\mmsecure_sample.sys".into()
            ))
        );
        assert_eq!(
            values.get(r#"Quoted "name""#),
            Some(&Value::Text(r#"a "b""#.into()))
        );
        assert_eq!(values.get("Unloaded"), None);
        assert_eq!(values.len(), 4);
    }

    const LOG: &str = "\
0050:Call PE DLL (proc=1,module=2 L\"ntoskrnl.exe\",reason=PROCESS_ATTACH,res=3)
011c:Call driver init 00000000021A1830 (obj=1,str=L\"\\\\Registry\\\\Machine\\\\System\\\\CurrentControlSet\\\\Services\\\\mmsecure_sample\")
011c:Call ntoskrnl.exe.DbgPrint(0) ret=1
011c:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: mmsecure_sample: UnderWine: yes
011c:Ret  ntoskrnl.exe.DbgPrint() retval=0 ret=1
0120:Call ntoskrnl.exe.MmSecureVirtualMemory(0) ret=1
011c:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: mmsecure_sample: BadOverflow: Err(Overflow)
011c:Call ntoskrnl.exe.MmGetSystemRoutineAddress(01a9fab0) ret=021a1a0b
011c:Ret  ntoskrnl.exe.MmGetSystemRoutineAddress() retval=00000000 ret=021a1a0b
011c:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: mmsecure_sample: SecureExAvailable: no
011c:Ret  driver init 00000000021A1830 (obj=1,str=L\"mmsecure_sample\") retval=00000000
011c:Call ntoskrnl.exe.MmSecureVirtualMemory(0) ret=1
";

    #[test]
    fn driver_entry_events_follow_its_thread_until_it_returns() {
        let events = driver_entry_events(LOG, "mmsecure_sample").unwrap();
        assert_eq!(
            events,
            [
                Event::Call("DbgPrint".into()),
                Event::Report("UnderWine".into(), "yes".into()),
                Event::Return("DbgPrint".into(), "0".into()),
                Event::Report("BadOverflow".into(), "Err(Overflow)".into()),
                Event::Call("MmGetSystemRoutineAddress".into()),
                Event::Return("MmGetSystemRoutineAddress".into(), "00000000".into()),
                Event::Report("SecureExAvailable".into(), "no".into()),
            ]
        );
        let window = between(&events, "UnderWine", "BadOverflow").unwrap();
        assert!(kernel_calls(window).is_empty());
        let window = between(&events, "BadOverflow", "SecureExAvailable").unwrap();
        assert_eq!(kernel_calls(window), ["MmGetSystemRoutineAddress"]);
        assert!(between(&events, "SecureExAvailable", "UnderWine").is_none());
    }

    #[test]
    fn no_events_when_driver_entry_never_returned() {
        let cut = LOG.split("011c:Ret  driver init").next().unwrap();
        assert_eq!(driver_entry_events(cut, "mmsecure_sample"), None);
        assert_eq!(driver_entry_events(LOG, "other_service"), None);
    }
}
