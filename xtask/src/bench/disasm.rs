//! What a secure + drop compiles to in the sample driver, decoded from its code sections, and the
//! check that it stays that way.
//!
//! A driver built with LTO inlines `SecureRegion::new` and its `Drop` into the caller, so there is
//! no wrapper function to look at: the check starts from every call to the
//! `MmSecureVirtualMemory` import, wherever the compiler put it, and follows every path from there
//! through the function's jumps:
//!
//! - the path on which the returned handle is NULL (a `test` of a register that still holds the
//!   handle, and the branch on its result) is the refused secure, and must reach no
//!   `MmUnsecureVirtualMemory`;
//! - every other path must call `MmUnsecureVirtualMemory` exactly once, and before that call no
//!   routine but those of [`ALLOWED_WHILE_SECURED`]: no second secure, no allocator, no other
//!   call;
//! - and nowhere in the driver may there be a pool allocator import (`ExAllocate*`,
//!   `MmAllocate*`) or a Rust allocator symbol: `mmsecure` allocates nothing.
//!
//! The instructions come from iced-x86 (see [`crate::x86`]), not from a listing's text: the handle
//! is followed by full register (`mov ebx, eax` replaces all of `rbx`), through every register an
//! instruction writes and through `push`/`pop`, and a call through an import slot is named by the
//! slot's decoded address. Losing the handle is always the safe side: a branch that no longer
//! tests it is followed both ways, so a leak shows as a path that leaves without an unsecure.
//!
//! The driver helper's `cargo xtask driver --check` can call [`check_driver`] too.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::fs;
use std::path::Path;

use iced_x86::{
    ConditionCode, FlowControl, Formatter as _, Instruction, InstructionInfoFactory,
    IntelFormatter, Mnemonic, OpAccess, OpKind, Register,
};

use crate::{pe, x86};

const SECURE: &str = "MmSecureVirtualMemory";
const UNSECURE: &str = "MmUnsecureVirtualMemory";

/// A routine a secured path may call before its unsecure, and why it may.
pub struct Allowed {
    /// The routine's name: an import, or a function of the driver named in its link map.
    pub routine: &'static str,
    /// Why a call to it cannot release, re-secure or allocate.
    pub why: &'static str,
}

/// The only routines a path may call between a secure and its unsecure. A new call that
/// mmsecure makes while a region stands (reading the IRQL is no call; taking a reference on the
/// process is) belongs here, with the reason.
pub const ALLOWED_WHILE_SECURED: &[Allowed] = &[
    Allowed {
        routine: "IoGetCurrentProcess",
        why: "the region records its process, and every copy checks that it runs in it",
    },
    Allowed {
        routine: "ObfReferenceObject",
        why: "the region holds a reference on its process from the secure on (issue #12), so \
              that a freed and reused EPROCESS can never pass the process check; it only \
              increments the object's count",
    },
    Allowed {
        routine: "PsGetProcessId",
        why: "SecureRegion::scope reads the id of the process it secured in (issue #21): a \
              field read, which tells with PsGetCurrentProcessId whether the thread is attached",
    },
    Allowed {
        routine: "PsGetCurrentProcessId",
        why: "SecureRegion::scope reads the id of the process that owns the thread (issue #21): \
              a field read; in its own process the scope needs no object reference",
    },
    Allowed {
        routine: "mmsecure_sys_copy_guarded",
        why: "the sample copies its request out before the drop; on Windows that copy is \
              mmsecure-sys's guarded copy (x86_64: one `rep movsb`; ARM64: an ldp/stp loop), an \
              assembly function with an exception handler that cannot be inlined",
    },
];

/// Whether `routine` is one of [`ALLOWED_WHILE_SECURED`].
fn allowed_while_secured(routine: &str) -> bool {
    ALLOWED_WHILE_SECURED.iter().any(|a| a.routine == routine)
}

/// The one function that may end a secured path instead of the unsecure: a region dropped in
/// another process context or above `APC_LEVEL` leaves its secure standing (issue #12) and says
/// so through it, out of line and cold (matched on the demangled name).
pub(crate) const ABANDON: &str = "mmsecure::context::abandon";

/// Functions of the sample that call `MmSecureVirtualMemory` raw, not through `mmsecure`, on
/// purpose, matched against the link map's (demangled) names: `guard::secure_in_guard` secures
/// under `call_guarded` to show the guard catching Wine's raising stub (issue #9), and its caller
/// unsecures. Their call sites are listed and skipped: the check is about the wrapper.
pub(crate) const RAW_CALLERS: &[&str] = &["secure_in_guard"];

/// How many paths from one secure the check follows before it gives up, and fails.
pub(crate) const MAX_PATHS: usize = 4096;

/// Import names that allocate kernel memory.
pub(crate) const ALLOCATOR_IMPORTS: &[&str] = &["ExAllocate", "MmAllocate"];

/// Symbols of Rust's global allocator and the C library's.
pub(crate) const ALLOCATOR_SYMBOLS: &[&str] = &[
    "__rust_alloc",
    "__rdl_alloc",
    "__rg_alloc",
    "malloc",
    "calloc",
    "realloc",
];

/// Checks the sample driver `sys` with its link map `map`, printing what a secure + drop compiles
/// to; fails if a path after a secure does anything but what [`ALLOWED_WHILE_SECURED`] allows
/// and unsecure once, or if anything in the driver allocates.
pub fn check_driver(sys: &Path, map: &Path) -> crate::Result {
    println!("[disasm] {}", sys.display());
    let map_text =
        fs::read_to_string(map).map_err(|e| format!("cannot read {}: {e}", map.display()))?;
    let symbols = Symbols::from_map(&map_text);
    let file = fs::read(sys).map_err(|e| format!("cannot read {}: {e}", sys.display()))?;
    let image = pe::parse(&file).map_err(|e| format!("{}: {e}", sys.display()))?;
    let code = x86::decode(&image.code(&file));
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
    for allowed in ALLOWED_WHILE_SECURED {
        println!(
            "[disasm] allowed while secured: {} ({})",
            allowed.routine, allowed.why
        );
    }
    print!("{}", report.text);
    failures.extend(report.failures);
    if failures.is_empty() {
        let allowed: Vec<&str> = ALLOWED_WHILE_SECURED.iter().map(|a| a.routine).collect();
        println!(
            "[disasm] ok: {} secure call site(s) checked ({} raw one(s) of the sample skipped); \
             after each, one {UNSECURE} (or {ABANDON}, for a drop in the wrong context) on \
             every path where the handle is not NULL, and one at least; nothing called in \
             between but {}; no allocator anywhere",
            report.sites,
            report.skipped,
            allowed.join(", ")
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

/// A link-map name as a Rust path without its hash (legacy or v0 mangling); any other name as it
/// is.
fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// Where a control transfer goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Direct(u64),
    /// Through a memory slot whose address is known (an import's `__imp_` slot, RIP-relative).
    Slot(u64),
    /// Through a register or a slot whose address depends on one.
    Unknown,
}

fn target_of(insn: &Instruction) -> Target {
    match insn.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            Target::Direct(insn.near_branch_target())
        }
        OpKind::Memory if insn.is_ip_rel_memory_operand() => {
            Target::Slot(insn.ip_rel_memory_address())
        }
        _ => Target::Unknown,
    }
}

/// The instruction in Intel syntax, numbers as objdump writes them (`0x140001000`).
fn text_of(insn: &Instruction) -> String {
    let mut formatter = IntelFormatter::new();
    let options = formatter.options_mut();
    options.set_hex_prefix("0x");
    options.set_hex_suffix("");
    options.set_uppercase_hex(false);
    options.set_leading_zeros(false);
    options.set_branch_leading_zeros(false);
    options.set_show_branch_size(false);
    options.set_space_after_operand_separator(true);
    let mut text = String::new();
    formatter.format(insn, &mut text);
    text
}

/// How a path after a secure ended (x64 here, ARM64 in `arm64::disasm`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum End {
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
    /// A jump or call the check cannot follow, or bytes that are no instruction.
    Unfollowable(u64),
    /// Where the walk stopped at [`MAX_PATHS`], with paths left to follow.
    TooManyPaths,
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
            End::TooManyPaths => write!(f, "not followed"),
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

/// The decoded code with an index by address, and the map's names for call targets.
struct Code<'a> {
    insns: &'a [Instruction],
    index: BTreeMap<u64, usize>,
    symbols: &'a Symbols,
}

impl Code<'_> {
    /// The routine a call or jump goes to: its map name, else its address, else its operand.
    fn name_of(&self, insn: &Instruction) -> String {
        match target_of(insn) {
            Target::Direct(a) | Target::Slot(a) => self
                .symbols
                .routine_at(a)
                .map_or_else(|| format!("{a:#x}"), str::to_owned),
            Target::Unknown => format!("[{}]", text_of(insn)),
        }
    }
}

fn is_call(insn: &Instruction) -> bool {
    matches!(
        insn.flow_control(),
        FlowControl::Call | FlowControl::IndirectCall
    )
}

fn analyse(insns: &[Instruction], symbols: &Symbols) -> Report {
    let code = Code {
        insns,
        index: insns
            .iter()
            .enumerate()
            .map(|(i, insn)| (insn.ip(), i))
            .collect(),
        symbols,
    };
    let mut report = Report {
        sites: 0,
        skipped: 0,
        failures: Vec::new(),
        text: String::new(),
    };
    let sites: Vec<usize> = insns
        .iter()
        .enumerate()
        .filter(|(_, insn)| is_call(insn) && code.name_of(insn) == SECURE)
        .map(|(i, _)| i)
        .collect();
    if sites.is_empty() {
        report.failures.push(format!(
            "no call to {SECURE} in the driver: nothing to check"
        ));
        return report;
    }
    for &site in &sites {
        let call = insns[site].ip();
        let Some((start, end)) = symbols.function_of(call) else {
            report.failures.push(format!(
                "the {SECURE} call at {call:#x} is in no function of the map"
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
                "[disasm] {SECURE} called at {call:#x} in {function}: the sample's own raw call, \
                 skipped"
            );
            continue;
        }
        report.sites += 1;
        let paths = follow(&code, site + 1, (start, end));
        let mut unsecured = 0;
        let at = format!("after the {SECURE} call at {call:#x} ({function})");
        for path in &paths {
            let stray: Vec<&String> = path
                .calls
                .iter()
                .filter(|c| !allowed_while_secured(c))
                .collect();
            if !stray.is_empty() && path.end != End::Refused {
                report
                    .failures
                    .push(format!("{at}, {stray:?} called before {UNSECURE}"));
            }
            match path.end {
                End::Unsecured => unsecured += 1,
                End::Refused | End::Abandoned => {}
                End::Leaked(left) => report.failures.push(format!(
                    "{at}, a path with a non-NULL handle leaves the function at {left:#x} \
                     without {UNSECURE}"
                )),
                End::SecondSecure(second) => report.failures.push(format!(
                    "{at}, a second {SECURE} at {second:#x} before {UNSECURE}"
                )),
                End::Unfollowable(there) => report.failures.push(format!(
                    "{at}, a jump or call at {there:#x} the check cannot follow"
                )),
                End::TooManyPaths => report.failures.push(format!(
                    "{at}, more than {MAX_PATHS} paths: the rest were not followed"
                )),
            }
        }
        if unsecured == 0 {
            report
                .failures
                .push(format!("{at}, no path reaches {UNSECURE}"));
        }
        describe(&mut report.text, &code, site, &function, &paths);
    }
    if report.sites == 0 {
        report.failures.push(format!(
            "every {SECURE} call is one of the sample's raw calls: no secure through mmsecure \
             to check"
        ));
    }
    report.text.push_str(&pair_costs(&code, symbols));
    report
}

/// The sample's measured pairs (`samples/driver/src/pairs.rs`): the raw routines, then the two
/// wrappers with their goals in added kernel calls (issue #21).
pub(crate) const PAIRS: [(&str, &str, Option<usize>); 3] = [
    ("sample_raw_pair", "raw pair", None),
    ("sample_region_pair", "SecureRegion::new + drop", Some(2)),
    ("sample_scoped_pair", "SecureRegion::scope", Some(0)),
];

/// Calls that read the current thread's or a process's state and do nothing else: no lock, no
/// interlocked operation (on Windows x64 a few loads each).
pub(crate) const ACCESSORS: &[&str] = &[
    "IoGetCurrentProcess",
    "PsGetProcessId",
    "PsGetCurrentProcessId",
];

/// A function's success path, from its entry to its return: the one with the fewest
/// instructions among those that call the unsecure and not the abandon. Its instruction count
/// (the `ret` included, the callees not) and the routines it calls, in order.
fn success_path(code: &Code<'_>, start: u64, end: u64) -> Option<(usize, Vec<String>)> {
    let first = *code.index.get(&start)?;
    let mut best: Option<(usize, Vec<String>)> = None;
    let mut stack = vec![(first, 0usize, Vec::<String>::new())];
    let mut walked = 0;
    while let Some((mut at, mut count, mut calls)) = stack.pop() {
        walked += 1;
        if walked > MAX_PATHS {
            return None;
        }
        loop {
            let insn = code.insns.get(at)?;
            count += 1;
            if count > 4096 {
                break; // a loop: not a success path of a pair
            }
            let leaves = |calls: &[String]| {
                calls.iter().any(|c| c == UNSECURE)
                    && !calls.iter().any(|c| demangle(c).contains(ABANDON))
            };
            match insn.flow_control() {
                FlowControl::Next => at += 1,
                FlowControl::Call | FlowControl::IndirectCall => {
                    calls.push(code.name_of(insn));
                    at += 1;
                }
                FlowControl::Return => {
                    if leaves(&calls) && best.as_ref().is_none_or(|b| count < b.0) {
                        best = Some((count, calls));
                    }
                    break;
                }
                FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                    let inside = match target_of(insn) {
                        Target::Direct(t) if t >= start && t < end => code.index.get(&t).copied(),
                        _ => None,
                    };
                    if insn.flow_control() == FlowControl::ConditionalBranch {
                        if let Some(taken) = inside {
                            stack.push((taken, count, calls.clone()));
                        }
                        at += 1;
                    } else if let Some(taken) = inside {
                        at = taken;
                    } else {
                        // A tail jump: the call it makes, then the return.
                        calls.push(code.name_of(insn));
                        if leaves(&calls) && best.as_ref().is_none_or(|b| count < b.0) {
                            best = Some((count, calls));
                        }
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    best
}

/// `calls` less one of each of `raw`'s (a multiset difference), in order.
fn added_calls(calls: &[String], raw: &[String]) -> Vec<String> {
    let mut raw = raw.to_vec();
    calls
        .iter()
        .filter(|call| match raw.iter().position(|r| r == *call) {
            Some(at) => {
                raw.remove(at);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

/// The table of what `SecureRegion::new` + drop and `SecureRegion::scope` add to the raw pair on
/// their success path in the driver: instructions, and kernel calls against their goals.
fn pair_costs(code: &Code<'_>, symbols: &Symbols) -> String {
    let mut out = String::from(
        "[disasm] success paths of the sample's pairs (entry to return, the fewest instructions \
         that unsecure; callees not counted):\n",
    );
    let mut raw: Option<(usize, Vec<String>)> = None;
    for (symbol, what, goal) in PAIRS {
        let found = symbols
            .by_address
            .iter()
            .find(|(_, name)| name.as_str() == symbol)
            .and_then(|(address, _)| symbols.function_of(*address))
            .and_then(|(start, end)| success_path(code, start, end));
        let Some((count, calls)) = found else {
            let _ = writeln!(out, "  {what:<26} ({symbol}): no success path found");
            continue;
        };
        match (&raw, goal) {
            (Some((raw_count, raw_calls)), Some(goal)) => {
                let added = added_calls(&calls, raw_calls);
                let working = added
                    .iter()
                    .filter(|c| !ACCESSORS.contains(&c.as_str()))
                    .count();
                let verdict = if added.len() <= goal { "met" } else { "MISSED" };
                let _ = writeln!(
                    out,
                    "  {what:<26} {count:>4} instructions, {:+} over the raw pair; {} kernel \
                     call(s) added (goal <= {goal}: {verdict}), {working} of them beyond the \
                     accessors ({}): {}",
                    count as i64 - *raw_count as i64,
                    added.len(),
                    ACCESSORS.join(", "),
                    added.join(", ")
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  {what:<26} {count:>4} instructions, calling {}",
                    calls.join(", ")
                );
                raw = Some((count, calls));
            }
        }
    }
    out
}

/// Where the handle is on a path: the full registers holding it, and for each value the path
/// pushed (innermost last) whether it was the handle.
#[derive(Debug, Clone, Default)]
struct Handle {
    registers: Vec<Register>,
    pushed: Vec<bool>,
    /// Set by `test r64, r64` on a handle register, until the flags change: a `je`/`jne` now
    /// branches on a NULL handle.
    null_test: bool,
}

impl Handle {
    fn in_rax() -> Handle {
        Handle {
            registers: vec![Register::RAX],
            ..Handle::default()
        }
    }

    fn holds(&self, register: Register) -> bool {
        register.is_gpr64() && self.registers.contains(&register)
    }

    fn set(&mut self, register: Register, holds: bool) {
        let full = register.full_register();
        self.registers.retain(|r| *r != full);
        if holds {
            self.registers.push(full);
        }
    }

    /// What a call leaves: the handle only in registers a Windows x64 callee must preserve, the
    /// flags unknown.
    fn after_call(&mut self) {
        self.registers.retain(|r| is_callee_saved(*r));
        self.null_test = false;
    }

    /// Follows the handle through one instruction that is no call or jump.
    fn step(&mut self, insn: &Instruction, info: &mut InstructionInfoFactory) {
        let register = |operand: u32| {
            (operand < insn.op_count() && insn.op_kind(operand) == OpKind::Register)
                .then(|| insn.op_register(operand))
        };
        let (dst, src) = (register(0), register(1));
        if insn.mnemonic() == Mnemonic::Test && dst == src && dst.is_some_and(|r| self.holds(r)) {
            self.null_test = true;
            return;
        }
        // What the instruction leaves in the registers it names, decided before they are
        // overwritten: a 64-bit copy of the handle, or what a pop takes off the stack.
        let copies = insn.mnemonic() == Mnemonic::Mov
            && dst.is_some_and(Register::is_gpr64)
            && src.is_some_and(|r| self.holds(r));
        let popped = match insn.mnemonic() {
            Mnemonic::Push => {
                let pushed = dst.is_some_and(|r| self.holds(r));
                self.pushed.push(pushed);
                None
            }
            // A pop past what this path pushed restores a caller's value, not the handle.
            Mnemonic::Pop => Some(self.pushed.pop().unwrap_or(false)),
            _ => None,
        };
        // Any write to a register, of any width, replaces the handle there.
        for used in info.info(insn).used_registers() {
            let writes = matches!(
                used.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            );
            if writes {
                self.set(used.register(), false);
            }
        }
        if let Some(dst) = dst {
            if copies {
                self.set(dst, true);
            }
            if let Some(popped) = popped {
                self.set(dst, popped && dst.is_gpr64());
            }
        }
        if insn.rflags_modified() != 0 {
            self.null_test = false;
        }
    }
}

/// Registers a Windows x64 callee must preserve.
fn is_callee_saved(register: Register) -> bool {
    matches!(
        register,
        Register::RBX
            | Register::RBP
            | Register::RDI
            | Register::RSI
            | Register::R12
            | Register::R13
            | Register::R14
            | Register::R15
    )
}

/// Walks every path from instruction `from` (just after a secure call) inside the function
/// `range`, tracking where the handle is so that the branch on a NULL handle is known, until each
/// path unsecures, leaves the function or meets something it cannot follow.
fn follow(code: &Code<'_>, from: usize, range: (u64, u64)) -> Vec<Path_> {
    /// A path being walked: where it is, what it has seen.
    #[derive(Clone)]
    struct State {
        at: usize,
        calls: Vec<String>,
        trail: Vec<u64>,
        visited: HashSet<u64>,
        handle: Handle,
    }
    impl State {
        fn end(self, end: End) -> Path_ {
            Path_ {
                calls: self.calls,
                end,
                trail: self.trail,
            }
        }
    }
    let mut info = InstructionInfoFactory::new();
    let mut done = Vec::new();
    let mut stack = vec![State {
        at: from,
        calls: Vec::new(),
        trail: Vec::new(),
        visited: HashSet::new(),
        handle: Handle::in_rax(),
    }];
    while let Some(mut state) = stack.pop() {
        if done.len() >= MAX_PATHS {
            // The paths not followed could leak: say so rather than pass on what was seen.
            done.push(state.end(End::TooManyPaths));
            break;
        }
        loop {
            let Some(insn) = code.insns.get(state.at) else {
                done.push(state.end(End::Unfollowable(0)));
                break;
            };
            let ip = insn.ip();
            if !state.visited.insert(ip) {
                // A loop back to an instruction this path has run: its calls are counted once.
                break;
            }
            state.trail.push(ip);
            if insn.is_invalid() {
                done.push(state.end(End::Unfollowable(ip)));
                break;
            }
            match insn.flow_control() {
                FlowControl::Next => {
                    if insn.mnemonic() == Mnemonic::Hlt {
                        done.push(state.end(End::Leaked(ip)));
                        break;
                    }
                    state.handle.step(insn, &mut info);
                    state.at += 1;
                }
                FlowControl::Return | FlowControl::Interrupt | FlowControl::Exception => {
                    done.push(state.end(End::Leaked(ip)));
                    break;
                }
                FlowControl::XbeginXabortXend => {
                    done.push(state.end(End::Unfollowable(ip)));
                    break;
                }
                FlowControl::Call | FlowControl::IndirectCall => {
                    let name = code.name_of(insn);
                    let end = if name == UNSECURE {
                        Some(End::Unsecured)
                    } else if demangle(&name).contains(ABANDON) {
                        Some(End::Abandoned)
                    } else if name == SECURE {
                        Some(End::SecondSecure(ip))
                    } else if target_of(insn) == Target::Unknown {
                        Some(End::Unfollowable(ip))
                    } else {
                        None
                    };
                    if let Some(end) = end {
                        done.push(state.end(end));
                        break;
                    }
                    state.calls.push(name);
                    state.handle.after_call();
                    state.at += 1;
                }
                FlowControl::UnconditionalBranch
                | FlowControl::IndirectBranch
                | FlowControl::ConditionalBranch => {
                    // Where the jump goes: an instruction of this function, or out of it (a tail
                    // jump, which leaves the handle secured unless it jumps to the unsecure).
                    let destination = match target_of(insn) {
                        Target::Direct(t) if t >= range.0 && t < range.1 => {
                            code.index.get(&t).copied().ok_or(End::Unfollowable(ip))
                        }
                        Target::Unknown => Err(End::Unfollowable(ip)),
                        _ if code.name_of(insn) == UNSECURE => Err(End::Unsecured),
                        _ => Err(End::Leaked(ip)),
                    };
                    if insn.flow_control() != FlowControl::ConditionalBranch {
                        match destination {
                            Ok(at) => state.at = at,
                            Err(end) => {
                                done.push(state.end(end));
                                break;
                            }
                        }
                        continue;
                    }
                    let null_test = std::mem::take(&mut state.handle.null_test);
                    let (taken_is_null, fallthrough_is_null) = match insn.condition_code() {
                        ConditionCode::e if null_test => (true, false),
                        ConditionCode::ne if null_test => (false, true),
                        _ => (false, false),
                    };
                    if taken_is_null || fallthrough_is_null {
                        // The branch on a NULL handle: the refused secure, nothing to unsecure.
                        done.push(state.clone().end(End::Refused));
                    }
                    if taken_is_null {
                        state.at += 1;
                        continue;
                    }
                    match destination {
                        Ok(at) if fallthrough_is_null => {
                            state.at = at;
                            continue;
                        }
                        Ok(at) => stack.push(State {
                            at,
                            ..state.clone()
                        }),
                        Err(end) if fallthrough_is_null => {
                            done.push(state.end(end));
                            break;
                        }
                        Err(end) => done.push(state.clone().end(end)),
                    }
                    state.at += 1;
                }
            }
        }
    }
    done
}

/// Prints each secure call site: its function, its paths, and the instructions of the path that
/// unsecures.
fn describe(out: &mut String, code: &Code<'_>, site: usize, function: &str, paths: &[Path_]) {
    let call = &code.insns[site];
    let _ = writeln!(
        out,
        "[disasm] {SECURE} called at {:#x} in {function}; {} path(s) from there:",
        call.ip(),
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
    let listing = std::iter::once(call.ip()).chain(longest.trail.iter().copied());
    for address in listing {
        if let Some(insn) = code.index.get(&address).map(|&i| &code.insns[i]) {
            let note = if is_call(insn) {
                format!("  ; {}", code.name_of(insn))
            } else {
                String::new()
            };
            let _ = writeln!(out, "    {address:x}:  {}{note}", text_of(insn));
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

    /// Where `caller` starts, and the map's thunks and import slot.
    const CALLER: u64 = 0x1_4000_1000;
    const UNSECURE_THUNK: u64 = 0x1_4000_1200;
    const SECURE_THUNK: u64 = 0x1_4000_1208;
    const PROCESS_THUNK: u64 = 0x1_4000_1210;
    const ALLOCATE_THUNK: u64 = 0x1_4000_1218;
    const UNSECURE_SLOT: u64 = 0x1_4000_3010;
    /// Where the tests' functions return 0 from (a refused secure, or a bad argument).
    const EXIT: u64 = 0xc0;

    // Instructions without a displacement, as a compiler encodes them.
    const TEST_RDX_RDX: &[u8] = &[0x48, 0x85, 0xd2];
    const TEST_RAX_RAX: &[u8] = &[0x48, 0x85, 0xc0];
    const TEST_RBX_RBX: &[u8] = &[0x48, 0x85, 0xdb];
    const MOV_RBX_RAX: &[u8] = &[0x48, 0x89, 0xc3];
    const MOV_RCX_RBX: &[u8] = &[0x48, 0x89, 0xd9];
    const MOV_EBX_EAX: &[u8] = &[0x89, 0xc3];
    const MOV_R8D_2: &[u8] = &[0x41, 0xb8, 0x02, 0x00, 0x00, 0x00];
    const XOR_EAX_EAX: &[u8] = &[0x31, 0xc0];
    const PUSH_RAX: &[u8] = &[0x50];
    const PUSH_RCX: &[u8] = &[0x51];
    const POP_RBX: &[u8] = &[0x5b];
    const RET: &[u8] = &[0xc3];

    /// Machine code for `caller`, assembled by hand: raw bytes, and the branches whose rel32 it
    /// works out from absolute targets.
    struct Asm(Vec<u8>);

    impl Asm {
        fn new() -> Asm {
            Asm(Vec::new())
        }

        fn here(&self) -> u64 {
            CALLER + self.0.len() as u64
        }

        fn raw(mut self, bytes: &[u8]) -> Asm {
            self.0.extend_from_slice(bytes);
            self
        }

        /// An instruction of `opcode` bytes and a rel32 to `target` (relative to its end).
        fn rel32(self, opcode: &[u8], target: u64) -> Asm {
            let end = self.here() + opcode.len() as u64 + 4;
            let rel = i32::try_from(target.wrapping_sub(end) as i64).unwrap();
            self.raw(opcode).raw(&rel.to_le_bytes())
        }

        fn call(self, target: u64) -> Asm {
            self.rel32(&[0xe8], target)
        }

        /// `call qword ptr [rip+disp32]`: a call through an import slot.
        fn call_slot(self, slot: u64) -> Asm {
            self.rel32(&[0xff, 0x15], slot)
        }

        fn jmp(self, offset: u64) -> Asm {
            self.rel32(&[0xe9], CALLER + offset)
        }

        fn je(self, offset: u64) -> Asm {
            self.rel32(&[0x0f, 0x84], CALLER + offset)
        }

        /// `int3` up to `offset` into `caller`.
        fn org(mut self, offset: u64) -> Asm {
            assert!(self.here() <= CALLER + offset, "code overlaps {offset:#x}");
            self.0.resize(offset as usize, 0xcc);
            self
        }

        /// Ends the secured part: the unsecure through its slot, then the exit at `EXIT`.
        fn unsecure_and_exit(self) -> Asm {
            self.raw(MOV_RCX_RBX)
                .call_slot(UNSECURE_SLOT)
                .raw(RET)
                .org(EXIT)
                .raw(XOR_EAX_EAX)
                .raw(RET)
        }
    }

    /// A secure + drop shaped like the sample driver's: the argument check, the secure, the NULL
    /// test, the handle kept in `rbx`, then `body`, then the unsecure.
    fn secured(body: impl FnOnce(Asm) -> Asm) -> Asm {
        let head = Asm::new()
            .raw(TEST_RDX_RDX)
            .je(EXIT)
            .raw(MOV_R8D_2)
            .call(SECURE_THUNK)
            .raw(TEST_RAX_RAX)
            .je(EXIT)
            .raw(MOV_RBX_RAX);
        body(head).unsecure_and_exit()
    }

    fn run(code: &Asm) -> Report {
        let insns = x86::decode(&[(CALLER, &code.0)]);
        analyse(&insns, &Symbols::from_map(MAP))
    }

    fn fails_with(report: &Report, what: &str) -> bool {
        report.failures.iter().any(|f| f.contains(what))
    }

    #[test]
    fn the_success_path_is_the_shortest_that_unsecures_and_counts_what_it_calls() {
        let code = secured(|asm| asm.call(PROCESS_THUNK));
        let insns = x86::decode(&[(CALLER, &code.0)]);
        let symbols = Symbols::from_map(MAP);
        let code = Code {
            insns: &insns,
            index: insns.iter().enumerate().map(|(i, n)| (n.ip(), i)).collect(),
            symbols: &symbols,
        };
        let (count, calls) = success_path(&code, CALLER, CALLER + 0x100).unwrap();
        // test, je, mov, call, test, je, mov, call, mov, call, ret; the exit path has no unsecure.
        assert_eq!(count, 11);
        assert_eq!(calls, [SECURE, "IoGetCurrentProcess", UNSECURE]);
        let raw = [SECURE.to_owned(), UNSECURE.to_owned()];
        assert_eq!(added_calls(&calls, &raw), ["IoGetCurrentProcess"]);
        let twice = ["a", "b", "a"].map(str::to_owned);
        assert_eq!(added_calls(&twice, &["a".to_owned()]), ["b", "a"]);
    }

    #[test]
    fn rust_names_demangle_without_their_hash() {
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
        assert_eq!(symbols.routine_at(UNSECURE_SLOT), Some(UNSECURE));
        assert_eq!(symbols.routine_at(ALLOCATE_THUNK), Some("ExAllocatePool2"));
        assert_eq!(
            symbols.function_of(0x1_4000_1020),
            Some((CALLER, 0x1_4000_1100))
        );
        assert_eq!(symbols.function_of(0x1_3000_0000), None);
    }

    #[test]
    fn calls_are_named_by_their_decoded_target_or_slot() {
        let code = Asm::new().call(PROCESS_THUNK).call_slot(UNSECURE_SLOT);
        let insns = x86::decode(&[(CALLER, &code.0)]);
        assert_eq!(target_of(&insns[0]), Target::Direct(PROCESS_THUNK));
        assert_eq!(target_of(&insns[1]), Target::Slot(UNSECURE_SLOT));
        let symbols = Symbols::from_map(MAP);
        let code = Code {
            insns: &insns,
            index: BTreeMap::new(),
            symbols: &symbols,
        };
        assert_eq!(code.name_of(&insns[1]), UNSECURE);
    }

    #[test]
    fn a_secure_then_process_check_then_unsecure_passes() {
        let report = run(&secured(|a| a.call(PROCESS_THUNK)));
        assert_eq!(report.sites, 1);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert!(report.text.contains("NULL handle"), "{}", report.text);
    }

    #[test]
    fn a_second_secure_before_the_unsecure_fails() {
        let report = run(&secured(|a| a.call(SECURE_THUNK)));
        assert!(fails_with(&report, "second MmSecureVirtualMemory"));
    }

    #[test]
    fn an_allocation_while_secured_fails() {
        let report = run(&secured(|a| a.call(ALLOCATE_THUNK)));
        assert!(fails_with(&report, "ExAllocatePool2"));
    }

    #[test]
    fn a_path_that_returns_without_unsecuring_fails() {
        let report = run(&secured(|a| a.call(PROCESS_THUNK).jmp(EXIT)));
        assert!(fails_with(&report, "without"), "{:?}", report.failures);
    }

    #[test]
    fn a_driver_that_never_secures_fails() {
        let report = run(&Asm::new().raw(RET));
        assert!(fails_with(&report, "nothing to check"));
    }

    /// A secure whose handle goes to `rbx`, then `between`, then the NULL test on `rbx` and a
    /// `je` to the exit, then the unsecure: a leak unless `rbx` still holds the handle there.
    fn tested_in_rbx_after(between: impl FnOnce(Asm) -> Asm) -> Report {
        let code = between(Asm::new().call(SECURE_THUNK).raw(MOV_RBX_RAX))
            .raw(TEST_RBX_RBX)
            .je(EXIT)
            .unsecure_and_exit();
        run(&code)
    }

    /// Issue #15's false negative: `mov ebx, eax` replaces all of `rbx` (the handle) with the
    /// call's result, so `test rbx, rbx` no longer tests the handle and the `je` to a return
    /// leaks it. The text-based check took `ebx` for another register than `rbx` and called
    /// that path a NULL handle.
    #[test]
    fn a_32_bit_write_over_the_handle_register_leaks_the_secure() {
        let report = tested_in_rbx_after(|a| a.call(PROCESS_THUNK).raw(MOV_EBX_EAX));
        assert!(
            fails_with(&report, "leaves the function"),
            "{:?}\n{}",
            report.failures,
            report.text
        );
    }

    /// The same function without the overwrite passes: what fails above is the overwrite.
    #[test]
    fn a_handle_kept_in_rbx_across_a_call_is_still_tested() {
        let report = tested_in_rbx_after(|a| a.call(PROCESS_THUNK));
        assert!(report.failures.is_empty(), "{:?}", report.failures);
    }

    /// `pop rbx` writes `rbx`: after `push rcx; pop rbx` it holds `rcx`'s value, not the handle.
    #[test]
    fn a_pop_over_the_handle_register_leaks_the_secure() {
        let report = tested_in_rbx_after(|a| a.raw(PUSH_RCX).raw(POP_RBX));
        assert!(
            fails_with(&report, "leaves the function"),
            "{:?}",
            report.failures
        );
    }

    /// A handle saved with `push rax` across a call and restored with `pop rbx` is the handle.
    #[test]
    fn a_handle_pushed_and_popped_around_a_call_is_still_tested() {
        let report = tested_in_rbx_after(|a| a.raw(PUSH_RAX).call(PROCESS_THUNK).raw(POP_RBX));
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert!(report.text.contains("NULL handle"), "{}", report.text);
    }

    #[test]
    fn a_tail_jump_to_the_unsecure_thunk_unsecures() {
        let code = Asm::new()
            .call(SECURE_THUNK)
            .raw(TEST_RAX_RAX)
            .je(EXIT)
            .raw(&[0x48, 0x89, 0xc1]) // mov rcx, rax
            .rel32(&[0xe9], UNSECURE_THUNK)
            .org(EXIT)
            .raw(XOR_EAX_EAX)
            .raw(RET);
        let report = run(&code);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert!(report.text.contains("unsecured"), "{}", report.text);
    }

    /// Thirteen branches in a row, each to the next instruction, make 8192 paths: more than the
    /// check follows, which must fail it rather than pass on the paths it saw.
    #[test]
    fn a_secure_with_more_paths_than_the_limit_fails() {
        let mut code = Asm::new().call(SECURE_THUNK).raw(MOV_RBX_RAX);
        for _ in 0..13 {
            code = code.raw(TEST_RDX_RDX).raw(&[0x0f, 0x85, 0, 0, 0, 0]); // jne to the next
        }
        let report = run(&code.unsecure_and_exit());
        assert!(
            fails_with(&report, "more than 4096 paths"),
            "{:?}",
            report.failures
        );
    }

    #[test]
    fn instructions_print_as_in_a_listing() {
        let code = Asm::new().call(PROCESS_THUNK).raw(MOV_EBX_EAX);
        let insns = x86::decode(&[(CALLER, &code.0)]);
        assert_eq!(text_of(&insns[0]), "call 0x140001210");
        assert_eq!(text_of(&insns[1]), "mov ebx, eax");
    }

    #[test]
    fn every_allowed_routine_says_why() {
        assert!(allowed_while_secured("IoGetCurrentProcess"));
        assert!(!allowed_while_secured(SECURE));
        for allowed in ALLOWED_WHILE_SECURED {
            assert!(!allowed.why.trim().is_empty(), "{}", allowed.routine);
        }
    }
}
