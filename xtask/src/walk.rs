//! The walk from every `MmSecureVirtualMemory` call of a driver, written once for x64
//! (`bench::disasm`) and ARM64 (`arm64::disasm`), each of which implements [`Isa`]: how an
//! instruction moves control, and what it does to the registers the walk tracks.
//!
//! From each secure call outside the sample's raw callers, every path through the function is
//! followed until it calls `MmUnsecureVirtualMemory` (or `mmsecure::context::abandon`), leaves
//! the function, or meets what the walk cannot follow. The branch on a NULL handle (as the
//! architecture tracks it) is the refused secure; every other path must unsecure exactly once,
//! calling nothing but [`ALLOWED_WHILE_SECURED`] (and the architecture's additions) before. Losing
//! the handle is the safe side: a branch that no longer tests it is followed both ways, so a leak
//! shows as a path that leaves without an unsecure. And nowhere in the driver may there be a pool
//! allocator import or a Rust allocator symbol: `mmsecure` allocates nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::{self, Write as _};
use std::fs;
use std::path::Path;

use crate::pe;

pub(crate) const SECURE: &str = "MmSecureVirtualMemory";
pub(crate) const UNSECURE: &str = "MmUnsecureVirtualMemory";

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

/// A link-map name as a Rust path without its hash (legacy or v0 mangling); any other name as it
/// is.
pub(crate) fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// The link map's symbols by address (`Rva+Base`), and the functions in `.text`.
#[derive(Debug, Default)]
pub(crate) struct Symbols {
    pub(crate) by_address: BTreeMap<u64, String>,
    /// Start addresses of named code (section 1), sorted: a function ends where the next starts.
    code_starts: Vec<u64>,
}

impl Symbols {
    /// Reads the `Publics by Value` and `Static symbols` lines of an `lld-link /map` file:
    /// `0001:00000830  DriverEntry  0000000140001830  lib:object`. Section names (`.text`) are
    /// skipped; the first name seen at an address wins.
    pub(crate) fn from_map(map: &str) -> Symbols {
        let mut symbols = Symbols::default();
        for line in map.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [place, name, address, ..] = fields.as_slice() else {
                continue;
            };
            let Some((section, _)) = place.split_once(':') else {
                continue;
            };
            let Ok(address) = u64::from_str_radix(address, 16) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            symbols
                .by_address
                .entry(address)
                .or_insert_with(|| (*name).to_owned());
            if u32::from_str_radix(section, 16) == Ok(1) {
                symbols.code_starts.push(address);
            }
        }
        symbols.code_starts.sort_unstable();
        symbols.code_starts.dedup();
        symbols
    }

    /// A call or jump target's name: a thunk (`MmSecureVirtualMemory`), or an import address
    /// slot (`__imp_MmSecureVirtualMemory`), both named for the routine.
    pub(crate) fn routine_at(&self, address: u64) -> Option<&str> {
        let name = self.by_address.get(&address)?;
        Some(name.strip_prefix("__imp_").unwrap_or(name))
    }

    /// The named functions of `.text`, each from its start to the next one's.
    pub(crate) fn functions(&self) -> Vec<(u64, u64)> {
        let ends = self.code_starts.iter().skip(1).copied().chain([u64::MAX]);
        self.code_starts.iter().copied().zip(ends).collect()
    }
}

/// Where a call or jump goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    /// A code address.
    Direct(u64),
    /// Through a memory slot whose address is known (an import's `__imp_` slot, RIP-relative).
    Slot(u64),
    /// Through a register the path loaded with this address, or from this slot: named only if
    /// the map names it.
    Held(u64),
    /// Through a register or a slot whose address the walk does not know.
    Unknown,
}

/// What an instruction does to control flow, as the walk needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Flow {
    /// Falls through to the next instruction.
    Next,
    Call(Target),
    Jump(Target),
    /// To the address or the next instruction; `Some(true)` if taken exactly when the handle is
    /// NULL, `Some(false)` if it falls through exactly then, `None` if it tests no handle.
    Branch(u64, Option<bool>),
    Return,
    /// Never the next instruction in the ordinary way (`int3`, `ud2`, `hlt`, `brk`, `udf`...).
    Trap,
    /// Bytes that are no instruction, or one the walk cannot follow.
    Unfollowable,
}

/// One architecture's part of the walk.
pub(crate) trait Isa: Default {
    /// The prefix of the check's lines.
    const TAG: &'static str;
    /// What the architecture adds to [`ALLOWED_WHILE_SECURED`].
    const ALLOWED: &'static [Allowed] = &[];
    /// Whether what registers hold at a secure is first found by walking from the function's
    /// entry to it (ARM64: slots LLVM loads into x19-x28 before the secure).
    const SEEDED: bool = false;
    /// One decoded instruction.
    type Insn;
    /// What a path knows of the registers: where the handle is, flags, known addresses.
    type Regs: Clone + Default;
    /// The control flow of `insn` at `at`, updating `regs` for what it does (a call leaves only
    /// what a callee preserves).
    fn flow(&mut self, insn: &Self::Insn, at: u64, regs: &mut Self::Regs) -> Flow;
    /// The instruction's length in bytes.
    fn len(insn: &Self::Insn) -> u64;
    /// The instruction as a listing shows it, if the architecture can.
    fn text(insn: &Self::Insn) -> Option<String>;
    /// `regs` just after the secure returns: the handle in the result register.
    fn secured(regs: Self::Regs) -> Self::Regs;
    /// Keeps in `into` only what `other` agrees with (for [`Isa::SEEDED`]).
    fn meet(_into: &mut Self::Regs, _other: &Self::Regs) {}
    /// More lines for the report (x64: the pairs' success paths).
    fn summary(_code: &mut Code<'_, Self>) -> String {
        String::new()
    }
}

/// The decoded code by address, the functions' bounds, and the map's names.
pub(crate) struct Code<'a, I: Isa> {
    pub(crate) isa: I,
    pub(crate) insns: BTreeMap<u64, I::Insn>,
    pub(crate) functions: Vec<(u64, u64)>,
    pub(crate) symbols: &'a Symbols,
    /// Instructions walked as if they did nothing (the self-check's unsecure calls).
    pub(crate) nops: BTreeSet<u64>,
}

impl<'a, I: Isa> Code<'a, I> {
    pub(crate) fn new(
        insns: BTreeMap<u64, I::Insn>,
        functions: Vec<(u64, u64)>,
        symbols: &'a Symbols,
    ) -> Self {
        Code {
            isa: I::default(),
            insns,
            functions,
            symbols,
            nops: BTreeSet::new(),
        }
    }

    /// The routine `target` reaches: its map name, else (for a known address) the address.
    pub(crate) fn name(&self, target: Target) -> Option<String> {
        let named = |a: u64| self.symbols.routine_at(a).map(str::to_owned);
        match target {
            Target::Direct(a) | Target::Slot(a) => named(a).or_else(|| Some(format!("{a:#x}"))),
            Target::Held(a) => named(a),
            Target::Unknown => None,
        }
    }

    /// A call's name, or its instruction's text when its target is unknown.
    pub(crate) fn label(&self, target: Target, insn: &I::Insn) -> String {
        self.name(target)
            .unwrap_or_else(|| format!("[{}]", I::text(insn).unwrap_or_default()))
    }

    /// The function holding `address`: its start and end.
    pub(crate) fn function_of(&self, address: u64) -> Option<(u64, u64)> {
        let found = self
            .functions
            .iter()
            .find(|(s, e)| *s <= address && address < *e);
        found.copied()
    }

    /// The flow of the instruction at `at` (none there: `None`), a self-check nop as `Next`.
    pub(crate) fn flow(&mut self, at: u64, regs: &mut I::Regs) -> Option<(Flow, u64)> {
        let insn = self.insns.get(&at)?;
        let next = at + I::len(insn);
        if self.nops.contains(&at) {
            return Some((Flow::Next, next));
        }
        Some((self.isa.flow(insn, at, regs), next))
    }
}

/// How a path after a secure ended.
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
pub(crate) struct Walked {
    pub(crate) calls: Vec<String>,
    pub(crate) end: End,
    /// The instructions on the path, in order.
    pub(crate) trail: Vec<u64>,
}

/// A path being walked: where it is, what it has seen.
#[derive(Clone)]
struct State<R> {
    at: u64,
    calls: Vec<String>,
    trail: Vec<u64>,
    visited: HashSet<u64>,
    regs: R,
}

impl<R> State<R> {
    fn new(at: u64, regs: R) -> Self {
        State {
            at,
            calls: Vec::new(),
            trail: Vec::new(),
            visited: HashSet::new(),
            regs,
        }
    }

    fn end(self, end: End) -> Walked {
        Walked {
            calls: self.calls,
            end,
            trail: self.trail,
        }
    }
}

/// Walks every path from `from` (just after a secure call) inside the function `range`, with
/// `regs` what the registers hold there, until each path unsecures, leaves the function or meets
/// something it cannot follow.
pub(crate) fn follow<I: Isa>(
    code: &mut Code<'_, I>,
    from: u64,
    range: (u64, u64),
    regs: I::Regs,
) -> Vec<Walked> {
    let inside = |t: u64| t >= range.0 && t < range.1;
    let mut done = Vec::new();
    let mut stack = vec![State::new(from, regs)];
    while let Some(mut state) = stack.pop() {
        if done.len() >= MAX_PATHS {
            // The paths not followed could leak: say so rather than pass on what was seen.
            done.push(state.end(End::TooManyPaths));
            break;
        }
        loop {
            let pc = state.at;
            if !inside(pc) || !code.insns.contains_key(&pc) {
                done.push(state.end(End::Unfollowable(pc)));
                break;
            }
            if !state.visited.insert(pc) {
                // A loop back to an instruction this path has run: its calls are counted once.
                break;
            }
            state.trail.push(pc);
            let Some((flow, next)) = code.flow(pc, &mut state.regs) else {
                break;
            };
            let end = match flow {
                Flow::Next => {
                    state.at = next;
                    continue;
                }
                Flow::Return | Flow::Trap => End::Leaked(pc),
                Flow::Unfollowable => End::Unfollowable(pc),
                Flow::Call(target) => match code.name(target) {
                    None => End::Unfollowable(pc),
                    Some(name) if name == UNSECURE => End::Unsecured,
                    Some(name) if demangle(&name).contains(ABANDON) => End::Abandoned,
                    Some(name) if name == SECURE => End::SecondSecure(pc),
                    Some(name) => {
                        state.calls.push(name);
                        state.at = next;
                        continue;
                    }
                },
                Flow::Jump(Target::Direct(to)) if inside(to) => {
                    state.at = to;
                    continue;
                }
                // A tail jump leaves the handle secured unless it jumps to the unsecure.
                Flow::Jump(target) => match code.name(target) {
                    None => End::Unfollowable(pc),
                    Some(name) if name == UNSECURE => End::Unsecured,
                    Some(_) => End::Leaked(pc),
                },
                Flow::Branch(to, null) => {
                    if null.is_some() {
                        // The branch on a NULL handle: the refused secure, nothing to unsecure.
                        done.push(state.clone().end(End::Refused));
                    }
                    let fallthrough_is_null = null == Some(false);
                    if null == Some(true) {
                        state.at = next;
                        continue;
                    }
                    if inside(to) {
                        if !fallthrough_is_null {
                            stack.push(State {
                                at: to,
                                ..state.clone()
                            });
                        }
                        state.at = if fallthrough_is_null { to } else { next };
                        continue;
                    }
                    let end = match code.name(Target::Direct(to)) {
                        Some(name) if name == UNSECURE => End::Unsecured,
                        _ => End::Leaked(pc),
                    };
                    if fallthrough_is_null {
                        end
                    } else {
                        done.push(state.clone().end(end));
                        state.at = next;
                        continue;
                    }
                }
            };
            done.push(state.end(end));
            break;
        }
    }
    done
}

/// What the registers hold on every path from the function's start to (just after) the call at
/// `site`: only what all paths agree on; a path the walk cannot follow, or too many, keeps
/// nothing. (An ARM64 slot loaded before a secure still names the routine a `blr` after it
/// calls.)
pub(crate) fn seed<I: Isa>(code: &mut Code<'_, I>, site: u64, range: (u64, u64)) -> I::Regs {
    let inside = |t: u64| t >= range.0 && t < range.1;
    let mut agreed: Option<I::Regs> = None;
    let mut stack = vec![State::new(range.0, I::Regs::default())];
    let mut walked = 0;
    while let Some(mut state) = stack.pop() {
        walked += 1;
        if walked > MAX_PATHS {
            return I::Regs::default();
        }
        loop {
            let pc = state.at;
            if !inside(pc) {
                return I::Regs::default();
            }
            let Some((flow, next)) = code.flow(pc, &mut state.regs) else {
                return I::Regs::default();
            };
            if pc == site {
                match &mut agreed {
                    None => agreed = Some(state.regs),
                    Some(so_far) => I::meet(so_far, &state.regs),
                }
                break;
            }
            if !state.visited.insert(pc) {
                break;
            }
            match flow {
                Flow::Next | Flow::Call(_) => state.at = next,
                Flow::Jump(Target::Direct(to)) if inside(to) => state.at = to,
                Flow::Branch(to, _) => {
                    if inside(to) {
                        stack.push(State {
                            at: to,
                            ..state.clone()
                        });
                    }
                    state.at = next;
                }
                // Leaves the function without reaching the site.
                _ => break,
            }
        }
    }
    agreed.unwrap_or_default()
}

/// What [`analyse`] found.
#[derive(Default)]
pub(crate) struct Report {
    /// Secure call sites checked.
    pub(crate) sites: usize,
    /// Secure call sites of [`RAW_CALLERS`], not checked.
    pub(crate) skipped: usize,
    pub(crate) failures: Vec<String>,
    pub(crate) text: String,
}

/// Whether `routine` may be called while secured on `I`.
pub(crate) fn allowed<I: Isa>(routine: &str) -> bool {
    ALLOWED_WHILE_SECURED
        .iter()
        .chain(I::ALLOWED)
        .any(|a| a.routine == routine)
}

/// Finds every secure call site in `code` and walks its paths inside its function.
pub(crate) fn analyse<I: Isa>(code: &mut Code<'_, I>) -> Report {
    let tag = I::TAG;
    let mut report = Report::default();
    // Secure call sites, with what straight-line code before each has loaded.
    let mut sites = Vec::new();
    let mut regs = I::Regs::default();
    let addresses: Vec<u64> = code.insns.keys().copied().collect();
    for pc in addresses {
        match code.flow(pc, &mut regs) {
            Some((Flow::Next, _)) => {}
            Some((Flow::Call(t), _)) if code.name(t).as_deref() == Some(SECURE) => sites.push(pc),
            _ => regs = I::Regs::default(),
        }
    }
    if sites.is_empty() {
        report.failures.push(format!(
            "no call to {SECURE} in the driver: nothing to check"
        ));
        return report;
    }
    for site in sites {
        let Some((start, end)) = code.function_of(site) else {
            report.failures.push(format!(
                "the {SECURE} call at {site:#x} is in no function of the driver"
            ));
            continue;
        };
        let function = code
            .symbols
            .by_address
            .get(&start)
            .map_or_else(|| format!("{start:#x}"), |name| demangle(name));
        if RAW_CALLERS.iter().any(|raw| function.contains(raw)) {
            report.skipped += 1;
            let _ = writeln!(
                report.text,
                "{tag} {SECURE} called at {site:#x} in {function}: the sample's own raw call, \
                 skipped"
            );
            continue;
        }
        report.sites += 1;
        let seeded = if I::SEEDED {
            seed(code, site, (start, end))
        } else {
            I::Regs::default()
        };
        let next = site + code.insns.get(&site).map_or(0, I::len);
        let paths = follow(code, next, (start, end), I::secured(seeded));
        let mut unsecured = 0;
        let at = format!("after the {SECURE} call at {site:#x} ({function})");
        for path in &paths {
            let stray: Vec<&String> = path.calls.iter().filter(|c| !allowed::<I>(c)).collect();
            if !stray.is_empty() && path.end != End::Refused {
                report
                    .failures
                    .push(format!("{at}, {stray:?} called before {UNSECURE}"));
            }
            let failure = match path.end {
                End::Unsecured => {
                    unsecured += 1;
                    continue;
                }
                End::Refused | End::Abandoned => continue,
                End::Leaked(left) => format!(
                    "{at}, a path with a non-NULL handle leaves the function at {left:#x} \
                     without {UNSECURE}"
                ),
                End::SecondSecure(second) => {
                    format!("{at}, a second {SECURE} at {second:#x} before {UNSECURE}")
                }
                End::Unfollowable(there) => {
                    format!("{at}, a jump or call at {there:#x} the check cannot follow")
                }
                End::TooManyPaths => {
                    format!("{at}, more than {MAX_PATHS} paths: the rest were not followed")
                }
            };
            report.failures.push(failure);
        }
        if unsecured == 0 {
            report
                .failures
                .push(format!("{at}, no path reaches {UNSECURE}"));
        }
        describe(&mut report.text, code, site, &function, &paths);
    }
    if report.sites == 0 {
        report.failures.push(format!(
            "every {SECURE} call is one of the sample's raw calls: no secure through mmsecure \
             to check"
        ));
    }
    report
}

/// Prints a secure call site: its function, its paths, and (where the architecture prints
/// instructions) those of the secured path that does the most.
fn describe<I: Isa>(
    out: &mut String,
    code: &mut Code<'_, I>,
    site: u64,
    function: &str,
    paths: &[Walked],
) {
    let _ = writeln!(
        out,
        "{} {SECURE} called at {site:#x} in {function}; {} path(s) from there:",
        I::TAG,
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
    if code.insns.get(&site).and_then(I::text).is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "  the secured path that does the most, from secure to unsecure:"
    );
    for address in std::iter::once(site).chain(longest.trail.iter().copied()) {
        let mut regs = I::Regs::default();
        let Some((flow, _)) = code.flow(address, &mut regs) else {
            continue;
        };
        let insn = &code.insns[&address];
        let note = match flow {
            Flow::Call(target) => format!("  ; {}", code.label(target, insn)),
            _ => String::new(),
        };
        let text = I::text(insn).unwrap_or_default();
        let _ = writeln!(out, "    {address:x}:  {text}{note}");
    }
}

/// How many failures the walk finds in `code` with every direct call to the unsecure made a nop:
/// none would mean the walk cannot fail.
pub(crate) fn leaks_without_unsecure<I: Isa>(code: &mut Code<'_, I>) -> usize {
    let mut nops = BTreeSet::new();
    let addresses: Vec<u64> = code.insns.keys().copied().collect();
    for pc in addresses {
        let mut regs = I::Regs::default();
        if let Some((Flow::Call(t @ (Target::Direct(_) | Target::Slot(_))), _)) =
            code.flow(pc, &mut regs)
        {
            if code.name(t).as_deref() == Some(UNSECURE) {
                nops.insert(pc);
            }
        }
    }
    let kept = std::mem::replace(&mut code.nops, nops);
    let report = analyse(code);
    code.nops = kept;
    report
        .failures
        .iter()
        .filter(|f| f.contains("without") || f.contains("no path reaches"))
        .count()
}

/// Checks the driver `sys` with its link map `map`, decoded by `load` (its instructions by
/// address and its functions' bounds): prints what a secure + drop compiles to, and fails if a
/// path after a secure does anything but what is allowed and unsecure once, if the walk passes
/// with the unsecure calls made nops, or if anything in the driver allocates.
pub(crate) fn check_driver<I: Isa>(
    sys: &Path,
    map: &Path,
    load: impl for<'s> FnOnce(&[u8], &pe::Image, &'s Symbols) -> crate::Result<Code<'s, I>>,
) -> crate::Result {
    let tag = I::TAG;
    println!("{tag} {}", sys.display());
    let map_text =
        fs::read_to_string(map).map_err(|e| format!("cannot read {}: {e}", map.display()))?;
    let symbols = Symbols::from_map(&map_text);
    let file = fs::read(sys).map_err(|e| format!("cannot read {}: {e}", sys.display()))?;
    let image = pe::parse(&file).map_err(|e| format!("{}: {e}", sys.display()))?;
    let mut code = load(&file, &image, &symbols)?;

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
    let report = analyse(&mut code);
    failures.extend(report.failures);
    match leaks_without_unsecure(&mut code) {
        0 => failures.push(format!(
            "self-check: with every {UNSECURE} call made a nop the walk still passed"
        )),
        leaks => println!(
            "{tag} self-check: with every {UNSECURE} call made a nop, the walk fails ({leaks} \
             failure(s)), as it must"
        ),
    }
    let allowed: Vec<&Allowed> = ALLOWED_WHILE_SECURED.iter().chain(I::ALLOWED).collect();
    for a in &allowed {
        println!("{tag} allowed while secured: {} ({})", a.routine, a.why);
    }
    print!("{}{}", report.text, I::summary(&mut code));
    if failures.is_empty() {
        let names: Vec<&str> = allowed.iter().map(|a| a.routine).collect();
        println!(
            "{tag} ok: {} secure call site(s) checked ({} raw one(s) of the sample skipped); \
             after each, one {UNSECURE} (or {ABANDON}, for a drop in the wrong context) on \
             every path where the handle is not NULL, and one at least; nothing called in \
             between but {}; no allocator anywhere",
            report.sites,
            report.skipped,
            names.join(", ")
        );
        Ok(())
    } else {
        Err(format!(
            "{tag} the secure + drop disassembly check failed:\n  {}",
            failures.join("\n  ")
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn every_allowed_routine_says_why() {
        for allowed in ALLOWED_WHILE_SECURED {
            assert!(!allowed.why.trim().is_empty(), "{}", allowed.routine);
        }
    }
}
