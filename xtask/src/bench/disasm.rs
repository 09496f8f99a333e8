//! What a secure + drop compiles to in the sample driver, read from its disassembly
//! (`x86_64-w64-mingw32-objdump -d`), and the check that it stays that way.
//!
//! A driver built with LTO inlines `SecureRegion::new` and its `Drop` into the caller, so there is
//! no wrapper function to look at: the check starts from every call to the
//! `MmSecureVirtualMemory` import, wherever the compiler put it, and follows every path from there
//! through the function's jumps:
//!
//! - the path on which the returned handle is NULL (the `test rax, rax` and the branch that
//!   follows it) is the refused secure, and must reach no `MmUnsecureVirtualMemory`;
//! - every other path must call `MmUnsecureVirtualMemory` exactly once, and before that call no
//!   routine but `IoGetCurrentProcess` (the region records its process, and each copy checks
//!   it) and the guarded copy of the sample's read: no second secure, no allocator, no other
//!   call;
//! - and nowhere in the driver may there be a pool allocator import (`ExAllocate*`,
//!   `MmAllocate*`) or a Rust allocator symbol: `mmsecure` allocates nothing.
//!
//! The driver helper's `cargo xtask driver --check` can call [`check_driver`] too.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::pe;

const OBJDUMP: &str = "x86_64-w64-mingw32-objdump";

const SECURE: &str = "MmSecureVirtualMemory";
const UNSECURE: &str = "MmUnsecureVirtualMemory";

/// The only routines a secured path may call before the unsecure: the region records its process
/// and every copy and the drop check it (`IoGetCurrentProcess`); the region holds a reference on
/// that process from the secure on (`ObfReferenceObject`, issue #12: without it, a freed and
/// reused EPROCESS would pass the process check); the sample copies its request out before the
/// drop, and on x86_64 Windows that copy is mmsecure-sys's guarded `rep movsb`, an assembly
/// function with an exception handler that cannot be inlined. The IRQL checks read CR8 inline and
/// call nothing.
const ALLOWED_WHILE_SECURED: &[&str] = &[
    "IoGetCurrentProcess",
    "ObfReferenceObject",
    "mmsecure_sys_copy_guarded",
];

/// The one function that may end a secured path instead of the unsecure: a region dropped in
/// another process context or above `APC_LEVEL` leaves its secure standing (issue #12) and says
/// so through it (demangled name).
const ABANDON: &str = "mmsecure::context::abandon";

/// Functions of the sample that call `MmSecureVirtualMemory` raw, not through `mmsecure`, on
/// purpose, matched against the link map's (mangled) names: `guard::secure_in_guard` secures
/// under `call_guarded` to show the guard catching Wine's raising stub (issue #9), and its caller
/// unsecures. Their call sites are listed and skipped: the check is about the wrapper.
const RAW_CALLERS: &[&str] = &["secure_in_guard"];

/// Import names that allocate kernel memory.
const ALLOCATOR_IMPORTS: &[&str] = &["ExAllocate", "MmAllocate"];

/// Symbols of Rust's global allocator and the C library's.
const ALLOCATOR_SYMBOLS: &[&str] = &[
    "__rust_alloc",
    "__rdl_alloc",
    "__rg_alloc",
    "malloc",
    "calloc",
    "realloc",
];

/// Checks the sample driver `sys` with its link map `map`, printing what a secure + drop compiles
/// to; fails if a path after a secure does anything but check the process and unsecure once, or
/// if anything in the driver allocates.
pub fn check_driver(sys: &Path, map: &Path) -> crate::Result {
    println!("[disasm] {}", sys.display());
    let map_text =
        fs::read_to_string(map).map_err(|e| format!("cannot read {}: {e}", map.display()))?;
    let symbols = Symbols::from_map(&map_text);
    let file = fs::read(sys).map_err(|e| format!("cannot read {}: {e}", sys.display()))?;
    let image = pe::parse(&file).map_err(|e| format!("{}: {e}", sys.display()))?;
    let listing = objdump(sys)?;
    let code = parse_listing(&listing);
    let report = analyse(&code, &symbols);

    let mut failures = Vec::new();
    for name in image.imports.iter().flat_map(|i| &i.names) {
        if ALLOCATOR_IMPORTS.iter().any(|p| name.starts_with(p)) {
            failures.push(format!("the driver imports the allocator {name}"));
        }
    }
    for name in symbols.by_address.values() {
        if ALLOCATOR_SYMBOLS.iter().any(|a| name.contains(a)) {
            failures.push(format!("the driver contains the allocator symbol {name}"));
        }
    }
    print!("{}", report.text);
    failures.extend(report.failures);
    if failures.is_empty() {
        println!(
            "[disasm] ok: {} secure call site(s) checked ({} raw one(s) of the sample skipped); \
             after each, one {UNSECURE} on every path where the handle is not NULL, nothing \
             called in between but {}; no allocator anywhere",
            report.sites,
            report.skipped,
            ALLOWED_WHILE_SECURED.join(", ")
        );
        Ok(())
    } else {
        Err(format!(
            "the secure + drop disassembly check failed:\n  {}",
            failures.join("\n  ")
        )
        .into())
    }
}

fn objdump(sys: &Path) -> crate::Result<String> {
    let output = Command::new(OBJDUMP)
        .args(["-d", "--no-show-raw-insn", "-M", "intel"])
        .arg(sys)
        .output()
        .map_err(|e| {
            format!("cannot run {OBJDUMP} (Debian package binutils-mingw-w64-x86-64): {e}")
        })?;
    if !output.status.success() {
        return Err(format!("`{OBJDUMP} -d {}` failed: {}", sys.display(), output.status).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The link map's symbols by address (`Rva+Base`), and the functions in `.text`.
#[derive(Debug, Default)]
struct Symbols {
    by_address: BTreeMap<u64, String>,
    /// Start addresses of named code (section 1), sorted: a function ends where the next starts.
    code_starts: Vec<u64>,
}

impl Symbols {
    /// Reads the `Publics by Value` and `Static symbols` lines of an `lld-link /map` file:
    /// `0001:00000830  DriverEntry  0000000140001830  lib:object`. Section names (`.text`) are
    /// skipped; the first name seen at an address wins.
    fn from_map(map: &str) -> Symbols {
        let mut symbols = Symbols::default();
        for line in map.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [place, name, address, ..] = fields.as_slice() else {
                continue;
            };
            let Some((section, _)) = place.split_once(':') else {
                continue;
            };
            let (Ok(section), Ok(address)) = (
                u32::from_str_radix(section, 16),
                u64::from_str_radix(address, 16),
            ) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            symbols
                .by_address
                .entry(address)
                .or_insert_with(|| (*name).to_owned());
            if section == 1 {
                symbols.code_starts.push(address);
            }
        }
        symbols.code_starts.sort_unstable();
        symbols.code_starts.dedup();
        symbols
    }

    /// A call or jump target's name: a thunk (`MmSecureVirtualMemory`), or an import address
    /// slot (`__imp_MmSecureVirtualMemory`), both named for the routine.
    fn routine_at(&self, address: u64) -> Option<&str> {
        let name = self.by_address.get(&address)?;
        Some(name.strip_prefix("__imp_").unwrap_or(name))
    }

    /// The named function holding `address`: its start and end.
    fn function_of(&self, address: u64) -> Option<(u64, u64)> {
        let at = self.code_starts.partition_point(|start| *start <= address);
        let start = *self.code_starts.get(at.checked_sub(1)?)?;
        let end = self.code_starts.get(at).copied().unwrap_or(u64::MAX);
        Some((start, end))
    }
}

/// A Rust legacy-mangled name (`_ZN15mmsecure_sample11secure_copy17h…E`) as a path
/// (`mmsecure_sample::secure_copy`), without the hash; any other name as it is.
fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_owned();
    };
    let mut parts = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let Ok(len) = rest[..digits].parse::<usize>() else {
            return name.to_owned();
        };
        let Some(part) = rest.get(digits..digits + len) else {
            return name.to_owned();
        };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    if parts.last().is_some_and(|last| {
        last.len() == 17
            && last.starts_with('h')
            && last[1..].chars().all(|c| c.is_ascii_hexdigit())
    }) {
        parts.pop();
    }
    parts.join("::")
}

/// One instruction of the listing.
#[derive(Debug, Clone, PartialEq)]
struct Insn {
    address: u64,
    mnemonic: String,
    operands: String,
    /// The address objdump's `# 0x…` comment names (RIP-relative operands), if any.
    comment_target: Option<u64>,
}

/// Parses `objdump -d --no-show-raw-insn -M intel` output: `   140001f80:\tpush   r15`.
fn parse_listing(listing: &str) -> Vec<Insn> {
    let mut code = Vec::new();
    for line in listing.lines() {
        let Some((address, rest)) = line.split_once(":\t") else {
            continue;
        };
        let Ok(address) = u64::from_str_radix(address.trim(), 16) else {
            continue;
        };
        let (insn, comment) = match rest.split_once('#') {
            Some((insn, comment)) => (insn, Some(comment)),
            None => (rest, None),
        };
        let mut parts = insn.trim().splitn(2, char::is_whitespace);
        let mnemonic = parts.next().unwrap_or("").to_owned();
        let operands = parts.next().unwrap_or("").trim().to_owned();
        let comment_target = comment.and_then(|c| parse_hex(c.split_whitespace().next()?));
        code.push(Insn {
            address,
            mnemonic,
            operands,
            comment_target,
        });
    }
    code
}

fn parse_hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// Where a control transfer goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Direct(u64),
    /// Through a memory slot whose address is known (an import's `__imp_` slot).
    Slot(u64),
    /// Through a register or an unknown slot.
    Unknown,
}

fn target_of(insn: &Insn) -> Target {
    let operands = insn.operands.split_whitespace().next().unwrap_or("");
    if let Some(address) = parse_hex(operands).filter(|_| operands.starts_with("0x")) {
        return Target::Direct(address);
    }
    if insn.operands.contains("[rip") {
        if let Some(slot) = insn.comment_target {
            return Target::Slot(slot);
        }
    }
    Target::Unknown
}

/// How a path after a secure ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    /// At the one `MmUnsecureVirtualMemory` call.
    Unsecured,
    /// At the call to mmsecure's `abandon`: dropped where it must not unsecure.
    Abandoned,
    /// The handle was NULL: nothing to unsecure. Ends where the path leaves the function.
    Refused,
    /// Left the function (return, tail jump, trap) without an unsecure on a non-NULL path.
    Leaked(u64),
    /// A second secure before the unsecure.
    SecondSecure(u64),
    /// A jump or call the check cannot follow.
    Unfollowable(u64),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Unsecured => write!(f, "unsecured"),
            End::Abandoned => write!(f, "abandoned (mmsecure::context::abandon)"),
            End::Refused => write!(f, "NULL handle"),
            End::Leaked(at) => write!(f, "left at {at:#x}"),
            End::SecondSecure(at) => write!(f, "second secure at {at:#x}"),
            End::Unfollowable(at) => write!(f, "unfollowable at {at:#x}"),
        }
    }
}

/// One path from a secure call to where it ends, with the routines called on the way.
#[derive(Debug, Clone)]
struct Path_ {
    calls: Vec<String>,
    end: End,
    /// The instructions on the path, in order.
    trail: Vec<u64>,
}

/// What [`analyse`] found.
struct Report {
    /// Secure call sites checked.
    sites: usize,
    /// Secure call sites of [`RAW_CALLERS`], not checked.
    skipped: usize,
    failures: Vec<String>,
    text: String,
}

fn analyse(code: &[Insn], symbols: &Symbols) -> Report {
    let index: BTreeMap<u64, usize> = code
        .iter()
        .enumerate()
        .map(|(i, insn)| (insn.address, i))
        .collect();
    let name_of = |insn: &Insn| -> String {
        match target_of(insn) {
            Target::Direct(a) | Target::Slot(a) => symbols
                .routine_at(a)
                .map_or_else(|| format!("{a:#x}"), str::to_owned),
            Target::Unknown => format!("[{}]", insn.operands),
        }
    };
    let mut report = Report {
        sites: 0,
        skipped: 0,
        failures: Vec::new(),
        text: String::new(),
    };
    let sites: Vec<usize> = code
        .iter()
        .enumerate()
        .filter(|(_, insn)| is_call(insn) && name_of(insn) == SECURE)
        .map(|(i, _)| i)
        .collect();
    if sites.is_empty() {
        report.failures.push(format!(
            "no call to {SECURE} in the driver: nothing to check"
        ));
        return report;
    }
    for &site in &sites {
        let call = &code[site];
        let Some((start, end)) = symbols.function_of(call.address) else {
            report.failures.push(format!(
                "the {SECURE} call at {:#x} is in no function of the map",
                call.address
            ));
            continue;
        };
        let function = symbols
            .by_address
            .get(&start)
            .map_or_else(|| "?".to_owned(), |name| demangle(name));
        if RAW_CALLERS.iter().any(|raw| function.contains(raw)) {
            report.skipped += 1;
            let _ = writeln!(
                report.text,
                "[disasm] {SECURE} called at {:#x} in {function}: the sample's own raw call, \
                 skipped",
                call.address
            );
            continue;
        }
        report.sites += 1;
        let paths = follow(code, &index, site + 1, (start, end), &name_of);
        let mut unsecured = 0;
        for path in &paths {
            let stray: Vec<&String> = path
                .calls
                .iter()
                .filter(|c| !ALLOWED_WHILE_SECURED.contains(&c.as_str()))
                .collect();
            if !stray.is_empty() && path.end != End::Refused {
                report.failures.push(format!(
                    "after the {SECURE} call at {:#x} ({function}), {stray:?} called before \
                     {UNSECURE}",
                    call.address
                ));
            }
            match path.end {
                End::Unsecured => unsecured += 1,
                End::Refused | End::Abandoned => {}
                End::Leaked(at) => report.failures.push(format!(
                    "after the {SECURE} call at {:#x} ({function}), a path with a non-NULL \
                     handle leaves the function at {at:#x} without {UNSECURE}",
                    call.address
                )),
                End::SecondSecure(at) => report.failures.push(format!(
                    "after the {SECURE} call at {:#x} ({function}), a second {SECURE} at {at:#x} \
                     before {UNSECURE}",
                    call.address
                )),
                End::Unfollowable(at) => report.failures.push(format!(
                    "after the {SECURE} call at {:#x} ({function}), an indirect jump or call at \
                     {at:#x} the check cannot follow",
                    call.address
                )),
            }
        }
        if unsecured == 0 {
            report.failures.push(format!(
                "after the {SECURE} call at {:#x} ({function}), no path reaches {UNSECURE}",
                call.address
            ));
        }
        describe(
            &mut report.text,
            code,
            &index,
            site,
            &function,
            &paths,
            &name_of,
        );
    }
    if report.sites == 0 && !sites.is_empty() {
        report.failures.push(format!(
            "every {SECURE} call is one of the sample's raw calls: no secure through mmsecure \
             to check"
        ));
    }
    report
}

fn is_call(insn: &Insn) -> bool {
    insn.mnemonic == "call"
}

fn is_jump(insn: &Insn) -> bool {
    insn.mnemonic.starts_with('j')
}

fn ends_path(insn: &Insn) -> bool {
    matches!(insn.mnemonic.as_str(), "ret" | "int3" | "ud2" | "hlt")
}

/// Walks every path from instruction `from` (just after a secure call) inside the function
/// `range`, tracking which registers hold the handle so that the branch on a NULL handle is
/// known, until each path unsecures, leaves the function or meets something it cannot follow.
fn follow(
    code: &[Insn],
    index: &BTreeMap<u64, usize>,
    from: usize,
    range: (u64, u64),
    name_of: &dyn Fn(&Insn) -> String,
) -> Vec<Path_> {
    /// A path being walked: where it is, what it has seen.
    struct State {
        at: usize,
        calls: Vec<String>,
        trail: Vec<u64>,
        visited: HashSet<u64>,
        /// Registers holding the handle (64-bit names); emptied once a call may clobber them.
        handle_in: Vec<String>,
        /// Set by `test r, r` on a handle register: the next conditional jump tests NULL.
        null_test: bool,
    }
    const MAX_PATHS: usize = 4096;
    let mut done = Vec::new();
    let mut stack = vec![State {
        at: from,
        calls: Vec::new(),
        trail: Vec::new(),
        visited: HashSet::new(),
        handle_in: vec!["rax".to_owned()],
        null_test: false,
    }];
    while let Some(mut state) = stack.pop() {
        if done.len() >= MAX_PATHS {
            break;
        }
        loop {
            let Some(insn) = code.get(state.at) else {
                done.push(Path_ {
                    calls: state.calls,
                    end: End::Unfollowable(0),
                    trail: state.trail,
                });
                break;
            };
            if !state.visited.insert(insn.address) {
                // A loop back to an instruction this path has run: its calls are counted once.
                break;
            }
            state.trail.push(insn.address);
            let leave = |state: State, end: End, done: &mut Vec<Path_>| {
                done.push(Path_ {
                    calls: state.calls,
                    end,
                    trail: state.trail,
                });
            };
            if ends_path(insn) {
                leave(state, End::Leaked(insn.address), &mut done);
                break;
            }
            if is_call(insn) {
                let name = name_of(insn);
                if name == UNSECURE {
                    leave(state, End::Unsecured, &mut done);
                    break;
                }
                if demangle(&name).contains(ABANDON) {
                    leave(state, End::Abandoned, &mut done);
                    break;
                }
                if name == SECURE {
                    leave(state, End::SecondSecure(insn.address), &mut done);
                    break;
                }
                if target_of(insn) == Target::Unknown {
                    leave(state, End::Unfollowable(insn.address), &mut done);
                    break;
                }
                state.calls.push(name);
                // Calls clobber the volatile registers; the handle survives only in
                // callee-saved ones.
                state.handle_in.retain(|r| is_callee_saved(r));
                state.null_test = false;
                state.at += 1;
                continue;
            }
            if is_jump(insn) {
                let conditional = insn.mnemonic != "jmp";
                let Target::Direct(target) = target_of(insn) else {
                    leave(state, End::Unfollowable(insn.address), &mut done);
                    break;
                };
                let null_test = std::mem::take(&mut state.null_test);
                // Where the jump goes: an instruction of this function, or out of it (a tail
                // jump, which leaves the handle secured unless it jumps to the unsecure).
                let destination = if target >= range.0 && target < range.1 {
                    match index.get(&target) {
                        Some(&at) => Ok(at),
                        None => Err(End::Unfollowable(insn.address)),
                    }
                } else if name_of(insn) == UNSECURE {
                    Err(End::Unsecured)
                } else {
                    Err(End::Leaked(insn.address))
                };
                let (taken_is_null, fallthrough_is_null) = match insn.mnemonic.as_str() {
                    "je" if null_test => (true, false),
                    "jne" if null_test => (false, true),
                    _ => (false, false),
                };
                if !conditional {
                    match destination {
                        Ok(at) => state.at = at,
                        Err(end) => {
                            leave(state, end, &mut done);
                            break;
                        }
                    }
                    continue;
                }
                if taken_is_null || fallthrough_is_null {
                    // The branch on a NULL handle: the refused secure, nothing to unsecure.
                    done.push(Path_ {
                        calls: state.calls.clone(),
                        end: End::Refused,
                        trail: state.trail.clone(),
                    });
                }
                if !taken_is_null {
                    match destination {
                        Ok(at) if fallthrough_is_null => {
                            state.at = at;
                            continue;
                        }
                        Ok(at) => stack.push(State {
                            at,
                            calls: state.calls.clone(),
                            trail: state.trail.clone(),
                            visited: state.visited.clone(),
                            handle_in: state.handle_in.clone(),
                            null_test: false,
                        }),
                        Err(end) => done.push(Path_ {
                            calls: state.calls.clone(),
                            end,
                            trail: state.trail.clone(),
                        }),
                    }
                    if fallthrough_is_null {
                        break;
                    }
                }
                state.at += 1;
                continue;
            }
            track_handle(insn, &mut state.handle_in, &mut state.null_test);
            state.at += 1;
        }
    }
    done
}

/// Follows the handle through `mov reg, reg` and notes `test reg, reg` on it.
fn track_handle(insn: &Insn, handle_in: &mut Vec<String>, null_test: &mut bool) {
    let operands: Vec<&str> = insn.operands.split(',').map(str::trim).collect();
    let [dst, src] = operands.as_slice() else {
        *null_test = false;
        return;
    };
    match insn.mnemonic.as_str() {
        "test" if dst == src && handle_in.iter().any(|r| r == dst) => {
            *null_test = true;
            return;
        }
        "mov" if handle_in.iter().any(|r| r == src) && is_register(dst) => {
            if !handle_in.iter().any(|r| r == dst) {
                handle_in.push((*dst).to_owned());
            }
        }
        _ => {
            // Anything else written to a handle register replaces the handle there.
            handle_in.retain(|r| r != dst);
        }
    }
    *null_test = false;
}

fn is_register(operand: &str) -> bool {
    const REGISTERS: &[&str] = &[
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
        "r14", "r15",
    ];
    REGISTERS.contains(&operand)
}

/// Registers a Windows x64 callee must preserve.
fn is_callee_saved(register: &str) -> bool {
    matches!(
        register,
        "rbx" | "rbp" | "rdi" | "rsi" | "r12" | "r13" | "r14" | "r15"
    )
}

/// Prints each secure call site: its function, its paths, and the instructions of the path that
/// unsecures.
fn describe(
    out: &mut String,
    code: &[Insn],
    index: &BTreeMap<u64, usize>,
    site: usize,
    function: &str,
    paths: &[Path_],
    name_of: &dyn Fn(&Insn) -> String,
) {
    let call = &code[site];
    let _ = writeln!(
        out,
        "[disasm] {SECURE} called at {:#x} in {function}; {} path(s) from there:",
        call.address,
        paths.len()
    );
    for path in paths {
        let calls = if path.calls.is_empty() {
            "nothing".to_owned()
        } else {
            path.calls.join(", ")
        };
        let _ = writeln!(
            out,
            "  {:<14} after {:>2} instruction(s), having called {calls}",
            path.end.to_string(),
            path.trail.len(),
        );
    }
    // The path that does the most (the sample's copy) is the one worth reading.
    let Some(longest) = paths
        .iter()
        .filter(|p| p.end == End::Unsecured)
        .max_by_key(|p| (p.calls.len(), p.trail.len()))
    else {
        return;
    };
    let _ = writeln!(
        out,
        "  the secured path that does the most, from secure to unsecure:"
    );
    let listing = std::iter::once(call.address).chain(longest.trail.iter().copied());
    for address in listing {
        if let Some(insn) = index.get(&address).map(|&i| &code[i]) {
            let note = if is_call(insn) {
                format!("  ; {}", name_of(insn))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "    {:x}:  {:<6} {}{note}",
                insn.address, insn.mnemonic, insn.operands
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = " Preferred load address is 0000000140000000
 0001:00000000       caller                     0000000140001000     lib:a.o
 0001:00000100       other                      0000000140001100     lib:a.o
 0001:00000200       MmUnsecureVirtualMemory    0000000140001200     libntoskrnl:x.o
 0001:00000208       MmSecureVirtualMemory      0000000140001208     libntoskrnl:x.o
 0001:00000210       IoGetCurrentProcess        0000000140001210     libntoskrnl:x.o
 0001:00000218       ExAllocatePool2            0000000140001218     libntoskrnl:x.o
 0001:00000218       .text                      0000000140001218     libntoskrnl:x.o
 0002:00000010       __imp_MmUnsecureVirtualMemory 0000000140003010  libntoskrnl:x.o
";

    /// A listing in objdump's form, from `(offset, instruction)` pairs inside `caller`.
    fn listing(lines: &[(u64, &str)]) -> String {
        lines
            .iter()
            .map(|(offset, insn)| format!("   {:x}:\t{insn}\n", 0x1_4000_1000 + offset))
            .collect()
    }

    /// What the sample driver's secure + drop looks like: checks, secure, NULL test, process,
    /// unsecure.
    const GOOD: &[(u64, &str)] = &[
        (0x00, "test   rdx,rdx"),
        (0x03, "je     0x140001040"),
        (0x05, "mov    r8d,0x2"),
        (0x0b, "call   0x140001208"),
        (0x10, "test   rax,rax"),
        (0x13, "je     0x140001040"),
        (0x15, "mov    rbx,rax"),
        (0x18, "call   0x140001210"),
        (0x1d, "mov    rcx,rbx"),
        (0x20, "call   QWORD PTR [rip+0x1fe9]        # 0x140003010"),
        (0x26, "ret"),
        (0x40, "xor    eax,eax"),
        (0x42, "ret"),
    ];

    fn run(lines: &[(u64, &str)]) -> Report {
        let symbols = Symbols::from_map(MAP);
        analyse(&parse_listing(&listing(lines)), &symbols)
    }

    #[test]
    fn legacy_rust_names_demangle_without_their_hash() {
        assert_eq!(
            demangle("_ZN15mmsecure_sample11secure_copy17hc5f4b9e9c814a6d0E"),
            "mmsecure_sample::secure_copy"
        );
        assert_eq!(demangle("DriverEntry"), "DriverEntry");
        assert_eq!(demangle("_ZN99tooshortE"), "_ZN99tooshortE");
    }

    #[test]
    fn map_symbols_and_functions_are_read() {
        let symbols = Symbols::from_map(MAP);
        assert_eq!(symbols.routine_at(0x1_4000_3010), Some(UNSECURE));
        assert_eq!(symbols.routine_at(0x1_4000_1218), Some("ExAllocatePool2"));
        assert_eq!(
            symbols.function_of(0x1_4000_1020),
            Some((0x1_4000_1000, 0x1_4000_1100))
        );
        assert_eq!(symbols.function_of(0x1_3000_0000), None);
    }

    #[test]
    fn objdump_lines_parse_with_their_rip_targets() {
        let code = parse_listing(
            "   140001020:\tcall   QWORD PTR [rip+0x1fe9]        # 0x140003010\n\
             \n140001000 <.text>:\n   140001026:\tret\n",
        );
        assert_eq!(code.len(), 2);
        assert_eq!(code[0].mnemonic, "call");
        assert_eq!(target_of(&code[0]), Target::Slot(0x1_4000_3010));
        assert_eq!(code[1].mnemonic, "ret");
    }

    #[test]
    fn a_secure_then_process_check_then_unsecure_passes() {
        let report = run(GOOD);
        assert_eq!(report.sites, 1);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
    }

    #[test]
    fn a_second_secure_before_the_unsecure_fails() {
        let mut lines = GOOD.to_vec();
        lines[7] = (0x18, "call   0x140001208");
        let report = run(&lines);
        assert!(report
            .failures
            .iter()
            .any(|f| f.contains("second MmSecureVirtualMemory")));
    }

    #[test]
    fn an_allocation_while_secured_fails() {
        let mut lines = GOOD.to_vec();
        lines[7] = (0x18, "call   0x140001218");
        let report = run(&lines);
        assert!(report
            .failures
            .iter()
            .any(|f| f.contains("ExAllocatePool2")));
    }

    #[test]
    fn a_path_that_returns_without_unsecuring_fails() {
        let mut lines = GOOD.to_vec();
        lines[8] = (0x1d, "jmp    0x140001040");
        let report = run(&lines);
        assert!(report.failures.iter().any(|f| f.contains("without")));
    }

    #[test]
    fn a_driver_that_never_secures_fails() {
        let report = run(&[(0x00, "ret")]);
        assert!(report
            .failures
            .iter()
            .any(|f| f.contains("nothing to check")));
    }
}
