//! Bug checks: how the model stops a binary, and how a test asserts that code does.
//!
//! Where the kernel would bug check, the model cannot unwind (its routines are `extern "C"`), so
//! it stops the whole process, as a bug check stops the machine. Its message goes straight to the
//! process's standard error (`std::io::stderr()`, the file descriptor or OS handle itself), not
//! through `eprintln!`, which `cargo test` captures per test and would lose with the abort.
//!
//! To assert that code bug checks, a test runs it in a child process, this same test binary
//! filtered to that one test: [`assert_bug_check`].

use core::fmt::{self, Write as _};
use std::io::Write as _;
use std::process::Command;
use std::string::String;

/// What the model writes before every bug-check message, on a line of its own.
const PREFIX: &str = "mmsecure host model stopped the caller (a bug check): ";

/// The environment variable [`assert_bug_check`] sets in the child process: the name of the test
/// whose deed the child runs.
pub const BUG_CHECK_CHILD_VAR: &str = "MMSECURE_BUG_CHECK_CHILD";

/// The environment variable that names a runner for the child process, for test binaries that
/// run under an emulator which does not follow `exec` by itself: with
/// `MMSECURE_CHILD_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"` the child is started as
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu <this binary> …` (words split at whitespace). Cargo's
/// `target.<triple>.runner` starts only the parent. Unset or empty: the binary is started itself.
pub const CHILD_RUNNER_VAR: &str = "MMSECURE_CHILD_RUNNER";

/// Writes the bug-check `message` to the process's stderr in one write and aborts.
pub(crate) fn write_and_abort(message: fmt::Arguments<'_>) -> ! {
    let mut line = String::new();
    // Formatting into a String fails only if a Display impl does; then the prefix still shows.
    let _ = writeln!(line, "{PREFIX}{message}");
    // Nothing is left to do if stderr is closed: the abort says enough.
    let _ = std::io::stderr().write_all(line.as_bytes());
    std::process::abort()
}

/// Asserts that `deed` stops the process with one of the model's bug checks, and returns the
/// bug check's message (the text after the model's prefix: `IRQL_NOT_LESS_OR_EQUAL (bug check
/// 0xA): MmSecureVirtualMemory called at IRQL 2 …`).
///
/// A bug check aborts the binary, so the deed runs in a child process: this same executable, run
/// with the arguments `test --exact --test-threads=1` (libtest's filter for exactly that test)
/// and [`BUG_CHECK_CHILD_VAR`] set to `test` (under the runner [`CHILD_RUNNER_VAR`] names, if
/// any). In the child, `assert_bug_check` runs `deed`; in
/// the parent (anywhere the variable is not `test`) it starts the child, waits, and reads its
/// stderr. So:
///
/// - `test` must be the test's name as libtest knows it (what `cargo test -- --list` prints:
///   `tests::name` for a test in `mod tests`, the bare name in an integration test's root);
/// - everything the test does before `assert_bug_check` runs in the child too; put the setup
///   inside `deed`;
/// - the test must be a plain libtest test (`harness = true`, the default).
///
/// It panics, failing the test, if the child exits normally, dies without the model's message
/// (a panic, a crash, a bug check of the real kernel...), or cannot be started.
///
/// ```
/// use mmsecure_sys::host::{self, Process, PAGE_READWRITE, PAGE_SIZE};
/// use mmsecure_sys::{MmSecureVirtualMemory, DISPATCH_LEVEL, SIZE_T};
///
/// // In a test file this is the body of `#[test] fn secure_at_dispatch_level_bug_checks()`.
/// let message = host::assert_bug_check("secure_at_dispatch_level_bug_checks", || {
///     let process = Process::new();
///     let _in_process = process.attach();
///     let page = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
///     let _raised = host::raise_irql(DISPATCH_LEVEL);
///     // SAFETY: the model checks every argument; stopping here is the point.
///     unsafe { MmSecureVirtualMemory(page.cast(), PAGE_SIZE as SIZE_T, PAGE_READWRITE) };
/// });
/// assert!(message.starts_with("IRQL_NOT_LESS_OR_EQUAL (bug check 0xA)"), "{message}");
/// ```
#[track_caller]
pub fn assert_bug_check(test: &str, deed: impl FnOnce()) -> String {
    if std::env::var_os(BUG_CHECK_CHILD_VAR).map_or(false, |name| name == test) {
        deed();
        let _ = std::io::stderr()
            .write_all(b"mmsecure assert_bug_check: the deed returned without a bug check\n");
        std::process::exit(0);
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("assert_bug_check: cannot find this test binary to rerun it: {e}"),
    };
    let runner = std::env::var(CHILD_RUNNER_VAR).unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(&exe);
            command
        }
        None => Command::new(&exe),
    };
    let output = match command
        .args([test, "--exact", "--test-threads=1"])
        .env(BUG_CHECK_CHILD_VAR, test)
        .output()
    {
        Ok(output) => output,
        Err(e) => panic!("assert_bug_check: cannot run {}: {e}", exe.display()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = stderr
        .lines()
        .find_map(|line| line.split_once(PREFIX).map(|(_, message)| message));
    match message {
        Some(message) if !output.status.success() => message.into(),
        _ if stdout.contains("running 0 tests") => panic!(
            "assert_bug_check: the child ran no test named `{test}`: pass the test's full name \
             as `cargo test -- --list` prints it"
        ),
        _ => panic!(
            "assert_bug_check: `{test}` did not bug check (child {}).\n--- child stdout:\n\
             {stdout}\n--- child stderr:\n{stderr}",
            output.status
        ),
    }
}
