//! Running the programs the tasks drive: echoed as a person would type them, then either run with
//! their output on the terminal ([`run_checked`]) or with their standard output captured
//! ([`stdout_of`]). A program that cannot start or exits with a failure is an error naming the
//! command.

use std::borrow::Cow;
use std::process::Command;

/// Prints the command, runs it with inherited output, and fails unless it exits with 0.
pub fn run_checked(cmd: &mut Command) -> crate::Result {
    println!("  $ {}", display(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cmd.get_program().to_string_lossy()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed: {status}", display(cmd)).into())
    }
}

/// Runs `cmd` and returns its standard output, which must be UTF-8. Its standard error is
/// captured too, and shown in the error if it fails, unless the caller sent it elsewhere (a
/// `Stdio::inherit()` set on `cmd` stays).
pub fn stdout_of(cmd: &mut Command) -> crate::Result<String> {
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", display(cmd)))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut message = format!("`{}` failed: {}", display(cmd), output.status);
        if !stderr.trim().is_empty() {
            message.push('\n');
            message.push_str(stderr.trim_end());
        }
        return Err(message.into());
    }
    String::from_utf8(output.stdout)
        .map_err(|_| format!("`{}` printed something that is not UTF-8", display(cmd)).into())
}

/// A command as a person would type it in a POSIX shell (program and arguments, not the
/// environment).
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| {
            let word = word.to_string_lossy();
            // A word shlex cannot quote (one holding a NUL byte) cannot reach a program either.
            shlex::try_quote(&word).map_or_else(|_| format!("{word:?}"), Cow::into_owned)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_display_as_words_a_shell_splits_back() {
        let mut cmd = Command::new("/usr/bin/cargo");
        let args = [
            "build",
            "--config",
            r#"a="b c""#,
            "it's",
            "",
            "/plain/path_1.2",
        ];
        cmd.args(args);
        let shown = display(&cmd);
        assert!(
            shown.starts_with("/usr/bin/cargo build --config "),
            "{shown}"
        );
        assert!(shown.ends_with(" /plain/path_1.2"), "{shown}");
        let words = shlex::split(&shown).unwrap();
        assert_eq!(words[0], "/usr/bin/cargo");
        assert_eq!(words[1..], args);
    }

    #[test]
    fn a_failing_command_is_an_error_with_its_stderr() {
        let err = stdout_of(Command::new("sh").args(["-c", "echo out; echo why >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.ends_with("\nwhy"), "{err}");
        assert_eq!(
            stdout_of(Command::new("sh").args(["-c", "echo out"])).unwrap(),
            "out\n"
        );
        assert!(stdout_of(&mut Command::new("/nonexistent/program")).is_err());
    }
}
