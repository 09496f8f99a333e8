//! `cargo xtask <task> [args…]`: mmsecure's own chores, one module per task.
//!
//! Each task is a module with `pub fn run(args: &[String]) -> xtask::Result`; this file only
//! dispatches on the first argument.

mod arm64;
mod bench;
mod cet;
mod codegen;
mod command;
mod cross;
mod debian;
mod diff;
mod driver;
mod hosts;
mod package;
mod pe;
mod walk;
mod wdk_stand_in;
mod wine;
mod x86;

use std::process::ExitCode;

/// What every task returns: `Err` carries a message for a person, printed as `error: …`.
pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "\
usage: cargo xtask <task> [args…]

tasks:
  bench [--quick] [--no-callgrind] [--disasm-check]
                                  issue #8's benchmark table on the host backend: wall time and
                                  callgrind instruction counts (--disasm-check: what a secure +
                                  drop compiles to in the sample driver, checked)
  codegen [--check] [--wdk DIR]   regenerate mmsecure-sys/src/{types,bindings}.rs from ntddk.h
                                  (--check: fail with a diff if the committed file is stale)
  check-macos                     cargo check of the libraries and tests for aarch64-apple-darwin
                                  and x86_64-apple-darwin
  cross [--target aarch64-pc-windows-msvc]
                                  build mmsecure-sys and mmsecure and their docs for
                                  x86_64-pc-windows-gnu with Debian's rustc 1.63 (MSRV check;
                                  --target: for ARM64 with rustup's 1.63, and the docs.rs page)
  driver [--check] [--target aarch64-pc-windows-msvc]
                                  build the sample driver, target/driver/mmsecure_sample.sys
                                  (--check: verify it as a PE kernel driver; --target: the
                                  ARM64 one, target/driver/aarch64/, with its unwind data and
                                  secure + drop paths checked)
  package [--no-verify]           cargo package both crates, list what each would publish and
                                  check it against their allow-lists
  test-aarch64                    the test suites for aarch64-unknown-linux-gnu under qemu-aarch64
  test-windows                    the test suites for x86_64-pc-windows-gnu with the host feature
                                  under Wine (rustup's 1.77), and a test without it failing loudly
  wdk-stand-in                    check, lint and document mmsecure-sys's wdk-sys feature for
                                  x86_64 Windows against a stand-in shaped like wdk-sys
  wine                            load the sample driver under Wine and check its reports";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match task.as_str() {
        "bench" => bench::run(rest),
        "codegen" => codegen::run(rest),
        "check-macos" => hosts::check_macos(rest),
        "cross" => cross::run(rest),
        "driver" => driver::run(rest),
        "package" => package::run(rest),
        "wdk-stand-in" => wdk_stand_in::run(rest),
        "test-aarch64" => hosts::test_aarch64(rest),
        "test-windows" => hosts::test_windows(rest),
        "wine" => wine::run(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("unknown task `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
