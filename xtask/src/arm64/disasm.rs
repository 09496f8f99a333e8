//! The ARM64 equivalent of `bench::disasm`: what a secure + drop compiles to in the ARM64 sample
//! driver, decoded from its code (see [`super::a64`]), and the check that every path after a
//! secure calls nothing but what is allowed before its one unsecure.
//!
//! The walk is the x64 one: from every `bl` to the `MmSecureVirtualMemory` thunk (or `blr`
//! through its import slot) outside the sample's raw callers, every path through the function
//! (its bounds from `.pdata`) is followed until it calls `MmUnsecureVirtualMemory` (or
//! `mmsecure::context::abandon`), leaves the function, or meets what the walk cannot follow.
//! The handle is tracked from x0 through `mov xD, xN` and across calls in x19-x28 (what an ARM64
//! callee must preserve); a `cbz`/`cbnz` on a register holding it, or a `b.eq`/`b.ne` right
//! after `cmp xN, #0`/`tst xN, xN` of one, is the NULL test, whose NULL side is the refused
//! secure. Any instruction that may write a register removes the handle from it (over-
//! approximated, see [`super::a64::writes`]); losing the handle is the safe side: the branch is
//! then followed both ways, and a leak shows.
//!
//! What it does not do, compared with the x64 check: it does not follow the handle through the
//! stack (a spill and reload loses it, which fails the check rather than pass it), and an
//! indirect call or jump is followed only when its register was loaded on the same path by
//! `adrp` + `ldr` from an import slot (or `adrp` + `add` to a named function); any other is
//! "unfollowable" and fails the check.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use super::a64::{self, Flow, Test};
use super::unwind;
use crate::bench::disasm::{
    Allowed, End, ABANDON, ALLOCATOR_IMPORTS, ALLOCATOR_SYMBOLS, ALLOWED_WHILE_SECURED, MAX_PATHS,
    RAW_CALLERS,
};
use crate::pe;

const SECURE: &str = "MmSecureVirtualMemory";
const UNSECURE: &str = "MmUnsecureVirtualMemory";

/// What ARM64 adds to [`ALLOWED_WHILE_SECURED`] (whose x64 entries hold here too).
pub const ALLOWED_ON_ARM64: &[Allowed] = &[Allowed {
    routine: "KeGetCurrentIrql",
    why: "on ARM64 reading the IRQL is a call to the HAL's export (wdm.h declares it \
              NTHALAPI there), not a register read; it only reads",
}];

fn allowed(routine: &str) -> bool {
    ALLOWED_WHILE_SECURED
        .iter()
        .chain(ALLOWED_ON_ARM64)
        .any(|a| a.routine == routine)
}

fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// Names by address from the link map (`Rva+Base`); import slots lose their `__imp_`.
fn symbols(map: &str) -> BTreeMap<u64, String> {
    let mut by_address = BTreeMap::new();
    for line in map.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [place, name, address, ..] = fields.as_slice() else {
            continue;
        };
        if !place.contains(':') || name.starts_with('.') {
            continue;
        }
        let Ok(address) = u64::from_str_radix(address, 16) else {
            continue;
        };
        by_address
            .entry(address)
            .or_insert_with(|| name.strip_prefix("__imp_").unwrap_or(name).to_owned());
    }
    by_address
}

/// One path from a secure to where it ends.
#[derive(Debug, Clone)]
struct Walked {
    calls: Vec<String>,
    end: End,
    length: usize,
}

/// A path being walked.
#[derive(Clone)]
struct State {
    at: u64,
    calls: Vec<String>,
    visited: HashSet<u64>,
    /// Registers holding the handle.
    handle: Vec<u8>,
    /// The register `cmp xN, #0` just compared, if it held the handle.
    compared: Option<u8>,
    /// Registers holding a known address: a page (`adrp`), an address (`add`), or the value
    /// loaded from a slot (`ldr`), by register.
    known: BTreeMap<u8, Known>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Known {
    Address(u64),
    LoadedFrom(u64),
}

impl State {
    fn end(self, end: End) -> Walked {
        Walked {
            length: self.visited.len(),
            calls: self.calls,
            end,
        }
    }
}

/// The code: each instruction word by address, and the names.
struct Code<'a> {
    words: BTreeMap<u64, u32>,
    names: &'a BTreeMap<u64, String>,
}

impl Code<'_> {
    fn name(&self, address: u64) -> String {
        self.names
            .get(&address)
            .cloned()
            .unwrap_or_else(|| format!("{address:#x}"))
    }

    /// The routine a register-indirect call or jump reaches, if the path loaded the register.
    fn through(&self, state: &State, register: u8) -> Option<String> {
        match state.known.get(&register)? {
            Known::LoadedFrom(slot) => self.names.get(slot).cloned(),
            Known::Address(address) => self.names.get(address).cloned(),
        }
    }
}

/// Follows one non-branch instruction's effect on the handle and the known addresses.
fn step(state: &mut State, word: u32, pc: u64) {
    let copied = a64::mov_register(word).filter(|(_, src)| state.handle.contains(src));
    let compared = a64::compares_with_zero(word).filter(|r| state.handle.contains(r));
    let known = if let Some((rd, page)) = a64::adrp(word, pc) {
        Some((rd, Known::Address(page)))
    } else if let Some((rd, rn, imm)) = a64::add_immediate(word) {
        match state.known.get(&rn) {
            Some(Known::Address(base)) => Some((rd, Known::Address(base + imm))),
            _ => None,
        }
    } else if let Some((rt, rn, imm)) = a64::load_immediate(word) {
        match state.known.get(&rn) {
            Some(Known::Address(base)) => Some((rt, Known::LoadedFrom(base + imm))),
            _ => None,
        }
    } else {
        None
    };
    for written in a64::writes(word) {
        state.handle.retain(|r| *r != written);
        state.known.remove(&written);
    }
    if let Some((dst, _)) = copied {
        state.handle.push(dst);
    }
    if let Some((register, value)) = known {
        state.known.insert(register, value);
    }
    state.compared = compared;
}

/// The addresses the nonvolatile registers (x19-x28) hold on every path from the function's
/// start to the call at `site`: a slot loaded before a secure (LLVM hoists `adrp` + `ldr` of an
/// import it calls twice) still names the routine a `blr` after it calls. Only what all paths
/// agree on is kept; a path the walk cannot follow, or too many, keeps nothing.
fn known_at(code: &Code<'_>, site: u64, range: (u64, u64)) -> BTreeMap<u8, Known> {
    let inside = |t: u64| t >= range.0 && t < range.1;
    let mut agreed: Option<BTreeMap<u8, Known>> = None;
    let mut stack = vec![State {
        at: range.0,
        calls: Vec::new(),
        visited: HashSet::new(),
        handle: Vec::new(),
        compared: None,
        known: BTreeMap::new(),
    }];
    let mut walked = 0;
    while let Some(mut state) = stack.pop() {
        walked += 1;
        if walked > MAX_PATHS {
            return BTreeMap::new();
        }
        loop {
            let pc = state.at;
            if pc == site {
                after_call(&mut state);
                let known = state.known;
                agreed = Some(match agreed {
                    None => known,
                    Some(mut so_far) => {
                        so_far.retain(|r, k| known.get(r) == Some(k));
                        so_far
                    }
                });
                break;
            }
            let Some(&word) = code.words.get(&pc).filter(|_| inside(pc)) else {
                return BTreeMap::new();
            };
            if !state.visited.insert(pc) {
                break;
            }
            match a64::flow(word, pc) {
                Flow::Next => {
                    step(&mut state, word, pc);
                    state.at += 4;
                }
                Flow::Call(_) | Flow::CallRegister(_) => {
                    after_call(&mut state);
                    state.at += 4;
                }
                Flow::Jump(target) if inside(target) => state.at = target,
                Flow::Branch(target, _) => {
                    state.compared = None;
                    if inside(target) {
                        stack.push(State {
                            at: target,
                            ..state.clone()
                        });
                    }
                    state.at += 4;
                }
                // Leaves the function without reaching the site.
                Flow::Jump(_) | Flow::JumpRegister(_) | Flow::Return | Flow::Trap => break,
            }
        }
    }
    agreed.unwrap_or_default()
}

/// Walks every path from `from` inside `range`, with `known` the addresses registers hold there.
fn follow(
    code: &Code<'_>,
    from: u64,
    range: (u64, u64),
    known: BTreeMap<u8, Known>,
) -> Vec<Walked> {
    let mut done = Vec::new();
    let mut stack = vec![State {
        at: from,
        calls: Vec::new(),
        visited: HashSet::new(),
        handle: vec![0],
        compared: None,
        known,
    }];
    let inside = |t: u64| t >= range.0 && t < range.1;
    while let Some(mut state) = stack.pop() {
        if done.len() >= MAX_PATHS {
            done.push(state.end(End::TooManyPaths));
            break;
        }
        loop {
            let pc = state.at;
            let Some(&word) = code.words.get(&pc).filter(|_| inside(pc)) else {
                done.push(state.end(End::Unfollowable(pc)));
                break;
            };
            if !state.visited.insert(pc) {
                break;
            }
            let call_to = |name: Option<String>| -> Result<String, End> {
                let name = name.ok_or(End::Unfollowable(pc))?;
                if name == UNSECURE {
                    Err(End::Unsecured)
                } else if demangle(&name).contains(ABANDON) {
                    Err(End::Abandoned)
                } else if name == SECURE {
                    Err(End::SecondSecure(pc))
                } else {
                    Ok(name)
                }
            };
            match a64::flow(word, pc) {
                Flow::Next => {
                    step(&mut state, word, pc);
                    state.at += 4;
                }
                Flow::Return | Flow::Trap => {
                    done.push(state.end(End::Leaked(pc)));
                    break;
                }
                Flow::Call(target) => match call_to(Some(code.name(target))) {
                    Ok(name) => {
                        state.calls.push(name);
                        after_call(&mut state);
                        state.at += 4;
                    }
                    Err(end) => {
                        done.push(state.end(end));
                        break;
                    }
                },
                Flow::CallRegister(register) => {
                    let name = code.through(&state, register);
                    match call_to(name) {
                        Ok(name) => {
                            state.calls.push(name);
                            after_call(&mut state);
                            state.at += 4;
                        }
                        Err(end) => {
                            done.push(state.end(end));
                            break;
                        }
                    }
                }
                Flow::Jump(target) if inside(target) => state.at = target,
                Flow::Jump(target) => {
                    let end = if code.name(target) == UNSECURE {
                        End::Unsecured
                    } else {
                        End::Leaked(pc)
                    };
                    done.push(state.end(end));
                    break;
                }
                Flow::JumpRegister(register) => {
                    let end = match code.through(&state, register) {
                        Some(name) if name == UNSECURE => End::Unsecured,
                        Some(_) => End::Leaked(pc),
                        None => End::Unfollowable(pc),
                    };
                    done.push(state.end(end));
                    break;
                }
                Flow::Branch(target, test) => {
                    let (taken_is_null, fallthrough_is_null) = match test {
                        Test::Zero(r) if state.handle.contains(&r) => (true, false),
                        Test::NonZero(r) if state.handle.contains(&r) => (false, true),
                        Test::Equal if state.compared.is_some() => (true, false),
                        Test::NotEqual if state.compared.is_some() => (false, true),
                        _ => (false, false),
                    };
                    state.compared = None;
                    if taken_is_null || fallthrough_is_null {
                        done.push(state.clone().end(End::Refused));
                    }
                    if !inside(target) {
                        if !taken_is_null {
                            let end = if code.name(target) == UNSECURE {
                                End::Unsecured
                            } else {
                                End::Leaked(pc)
                            };
                            done.push(state.clone().end(end));
                        }
                        if fallthrough_is_null {
                            break;
                        }
                        state.at += 4;
                        continue;
                    }
                    if taken_is_null {
                        state.at += 4;
                    } else if fallthrough_is_null {
                        state.at = target;
                    } else {
                        stack.push(State {
                            at: target,
                            ..state.clone()
                        });
                        state.at += 4;
                    }
                }
            }
        }
    }
    done
}

/// What a call leaves: the handle only in x19-x28 (nonvolatile on ARM64), no known addresses in
/// volatile registers, the flags unknown.
fn after_call(state: &mut State) {
    state.handle.retain(|r| (19..=28).contains(r));
    state.known.retain(|r, _| (19..=28).contains(r));
    state.compared = None;
}

/// Checks the ARM64 sample driver `sys` with its link map `map`; fails if a path after a secure
/// does anything but what is allowed and unsecure once, or if anything in it allocates.
pub fn check_driver(sys: &Path, map: &Path) -> crate::Result {
    println!("[disasm arm64] {}", sys.display());
    let map_text =
        fs::read_to_string(map).map_err(|e| format!("cannot read {}: {e}", map.display()))?;
    let names = symbols(&map_text);
    let file = fs::read(sys).map_err(|e| format!("cannot read {}: {e}", sys.display()))?;
    let image = pe::parse(&file).map_err(|e| format!("{}: {e}", sys.display()))?;
    let mut words = BTreeMap::new();
    for (address, bytes) in image.code(&file) {
        for (i, chunk) in bytes.chunks_exact(4).enumerate() {
            let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            words.insert(address + 4 * i as u64, word);
        }
    }
    let code = Code {
        words,
        names: &names,
    };
    // Function bounds from .pdata: every function that calls (the secure routine among them)
    // has a record.
    let mut functions = Vec::new();
    for (start, _) in unwind::pdata(&file)? {
        let unwind = unwind::unwind_of(&file, start).ok();
        let length = match unwind {
            Some(u) => u.length,
            None => packed_length(&file, start).unwrap_or(0),
        };
        functions.push((
            image.image_base + u64::from(start),
            image.image_base + u64::from(start + length),
        ));
    }

    let mut failures = Vec::new();
    for name in image.imports.iter().flat_map(|i| &i.names) {
        if ALLOCATOR_IMPORTS.iter().any(|p| name.starts_with(p)) {
            failures.push(format!("the driver imports the allocator {name}"));
        }
    }
    for name in names.values() {
        if ALLOCATOR_SYMBOLS.iter().any(|a| name.contains(a)) {
            failures.push(format!("the driver contains the allocator symbol {name}"));
        }
    }

    let analysis = analyse(&code, &functions);
    failures.extend(analysis.failures);
    let (text, checked, skipped) = (analysis.text, analysis.checked, analysis.skipped);
    // Shows the walk can fail: the same code with every call to the unsecure thunk made a `nop`
    // must leak on some path.
    let mut unpatched = code.words.clone();
    for (pc, word) in unpatched.iter_mut() {
        if matches!(a64::flow(*word, *pc), Flow::Call(t) if code.name(t) == UNSECURE) {
            *word = 0xd503_201f;
        }
    }
    let without_unsecure = analyse(
        &Code {
            words: unpatched,
            names: &names,
        },
        &functions,
    );
    let leaks = without_unsecure
        .failures
        .iter()
        .filter(|f| f.contains("without") || f.contains("no path reaches"))
        .count();
    if leaks == 0 {
        failures.push(format!(
            "self-check: with every {UNSECURE} call made a nop the walk still passed"
        ));
    } else {
        println!(
            "[disasm arm64] self-check: with every {UNSECURE} call made a nop, the walk fails \
             ({leaks} failure(s)), as it must"
        );
    }
    for allowed in ALLOWED_WHILE_SECURED.iter().chain(ALLOWED_ON_ARM64) {
        println!(
            "[disasm arm64] allowed while secured: {} ({})",
            allowed.routine, allowed.why
        );
    }
    print!("{text}");
    if failures.is_empty() {
        println!(
            "[disasm arm64] ok: {checked} secure call site(s) checked ({skipped} raw one(s) of \
             the sample skipped); after each, one {UNSECURE} (or {ABANDON}) on every path where \
             the handle is not NULL; nothing called in between but the allowed routines; no \
             allocator anywhere"
        );
        Ok(())
    } else {
        Err(format!(
            "the ARM64 secure + drop disassembly check failed:\n  {}",
            failures.join("\n  ")
        )
        .into())
    }
}

/// What [`analyse`] found.
struct Analysis {
    text: String,
    failures: Vec<String>,
    checked: usize,
    skipped: usize,
}

/// Finds every secure call site in `code` and walks its paths inside its function.
fn analyse(code: &Code<'_>, functions: &[(u64, u64)]) -> Analysis {
    let names = code.names;
    let mut failures = Vec::new();
    // Secure call sites: `bl` to the thunk, or `blr` right after `adrp` + `ldr` of its slot.
    let mut sites = Vec::new();
    let mut known = State {
        at: 0,
        calls: Vec::new(),
        visited: HashSet::new(),
        handle: Vec::new(),
        compared: None,
        known: BTreeMap::new(),
    };
    for (&pc, &word) in &code.words {
        match a64::flow(word, pc) {
            Flow::Call(target) if code.name(target) == SECURE => sites.push(pc),
            Flow::CallRegister(r) if code.through(&known, r).as_deref() == Some(SECURE) => {
                sites.push(pc)
            }
            Flow::Next => step(&mut known, word, pc),
            _ => known.known.clear(),
        }
    }
    let mut text = String::new();
    let (mut checked, mut skipped) = (0, 0);
    for site in &sites {
        let Some(&(start, end)) = functions.iter().find(|(s, e)| s <= site && site < e) else {
            failures.push(format!(
                "the {SECURE} call at {site:#x} is in no .pdata function"
            ));
            continue;
        };
        let function = names
            .get(&start)
            .map_or_else(|| format!("{start:#x}"), |n| demangle(n));
        if RAW_CALLERS.iter().any(|raw| function.contains(raw)) {
            skipped += 1;
            let _ = writeln!(
                text,
                "[disasm arm64] {SECURE} called at {site:#x} in {function}: the sample's own \
                 raw call, skipped"
            );
            continue;
        }
        checked += 1;
        let paths = follow(
            code,
            site + 4,
            (start, end),
            known_at(code, *site, (start, end)),
        );
        let at = format!("after the {SECURE} call at {site:#x} ({function})");
        let mut unsecured = 0;
        let _ = writeln!(
            text,
            "[disasm arm64] {SECURE} called at {site:#x} in {function}; {} path(s):",
            paths.len()
        );
        for path in &paths {
            let stray: Vec<&String> = path.calls.iter().filter(|c| !allowed(c)).collect();
            if !stray.is_empty() && path.end != End::Refused {
                failures.push(format!("{at}, {stray:?} called before {UNSECURE}"));
            }
            match &path.end {
                End::Unsecured => unsecured += 1,
                End::Refused | End::Abandoned => {}
                End::Leaked(left) => failures.push(format!(
                    "{at}, a path with a non-NULL handle leaves the function at {left:#x} \
                     without {UNSECURE}"
                )),
                End::SecondSecure(second) => {
                    failures.push(format!("{at}, a second {SECURE} at {second:#x}"))
                }
                End::Unfollowable(there) => failures.push(format!(
                    "{at}, a jump or call at {there:#x} the check cannot follow"
                )),
                End::TooManyPaths => failures.push(format!("{at}, more than {MAX_PATHS} paths")),
            }
            let calls = if path.calls.is_empty() {
                "nothing".to_owned()
            } else {
                path.calls.join(", ")
            };
            let _ = writeln!(
                text,
                "  {:<22} after {:>3} instruction(s), having called {calls}",
                format!("{:?}", path.end),
                path.length
            );
        }
        if unsecured == 0 {
            failures.push(format!("{at}, no path reaches {UNSECURE}"));
        }
    }
    if checked == 0 {
        failures.push(format!(
            "no {SECURE} call through mmsecure in the driver: nothing checked"
        ));
    }
    Analysis {
        text,
        failures,
        checked,
        skipped,
    }
}

/// The length of a function whose `.pdata` record holds packed unwind data (Flag 1 or 2):
/// bits 2-12 of the second word, in words.
fn packed_length(file: &[u8], start: u32) -> Option<u32> {
    let (_, word) = unwind::pdata(file)
        .ok()?
        .into_iter()
        .find(|(s, _)| *s == start)?;
    (word & 3 != 0).then_some(((word >> 2) & 0x7ff) * 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x1_4000_1000;
    const SECURE_THUNK: u64 = 0x1_4000_2000;
    const UNSECURE_THUNK: u64 = 0x1_4000_2010;
    const OTHER_THUNK: u64 = 0x1_4000_2020;

    fn bl(from: u64, to: u64) -> u32 {
        0x9400_0000 | ((((to as i64 - from as i64) / 4) as u32) & 0x03ff_ffff)
    }

    fn cbz(from: u64, to: u64, register: u32) -> u32 {
        0xb400_0000 | (((((to as i64 - from as i64) / 4) as u32) & 0x7ffff) << 5) | register
    }

    /// The thunks' names, and KeGetCurrentIrql's import slot.
    fn names() -> BTreeMap<u64, String> {
        [
            (SECURE_THUNK, SECURE),
            (UNSECURE_THUNK, UNSECURE),
            (OTHER_THUNK, "ExAllocatePool2"),
            (SLOT, "KeGetCurrentIrql"),
        ]
        .into_iter()
        .map(|(a, n)| (a, n.to_owned()))
        .collect()
    }

    /// `words` from BASE, and the function they make.
    fn code<'a>(words: &[u32], names: &'a BTreeMap<u64, String>) -> (Code<'a>, (u64, u64)) {
        let range = (BASE, BASE + 4 * words.len() as u64);
        let words = words
            .iter()
            .enumerate()
            .map(|(i, w)| (BASE + 4 * i as u64, *w))
            .collect();
        (Code { words, names }, range)
    }

    /// Walks `words` (starting at BASE, the secure call first) and returns the path ends.
    fn walk(words: &[u32]) -> Vec<Walked> {
        let names = names();
        let (code, range) = code(words, &names);
        follow(&code, BASE + 4, range, BTreeMap::new())
    }

    const RET: u32 = 0xd65f_03c0;
    const MOV_X19_X0: u32 = 0xaa00_03f3;
    const MOV_X0_X19: u32 = 0xaa13_03e0;
    const MOV_X19_X1: u32 = 0xaa01_03f3;

    #[test]
    fn a_null_test_then_unsecure_passes() {
        // bl secure; mov x19, x0; cbz x19, ret; mov x0, x19; bl unsecure; ret
        let words = [
            bl(BASE, SECURE_THUNK),
            MOV_X19_X0,
            cbz(BASE + 8, BASE + 20, 19),
            MOV_X0_X19,
            bl(BASE + 16, UNSECURE_THUNK),
            RET,
        ];
        let ends: Vec<End> = walk(&words).into_iter().map(|p| p.end).collect();
        assert!(ends.contains(&End::Refused));
        assert!(ends.contains(&End::Unsecured));
        assert!(
            !ends.iter().any(|e| matches!(e, End::Leaked(_))),
            "{ends:?}"
        );
    }

    #[test]
    fn a_test_of_an_overwritten_register_is_no_null_test() {
        // The handle in x19 is overwritten before the cbz: both ways are followed, and the
        // taken side leaves without an unsecure.
        let words = [
            bl(BASE, SECURE_THUNK),
            MOV_X19_X0,
            MOV_X19_X1,
            cbz(BASE + 12, BASE + 24, 19),
            MOV_X0_X19,
            bl(BASE + 20, UNSECURE_THUNK),
            RET,
        ];
        let ends: Vec<End> = walk(&words).into_iter().map(|p| p.end).collect();
        assert!(!ends.contains(&End::Refused), "{ends:?}");
        assert!(ends.iter().any(|e| matches!(e, End::Leaked(_))), "{ends:?}");
    }

    /// Walks `words` from BASE with the secure call at `site`, seeding the registers as
    /// `analyse` does; `SLOT` is KeGetCurrentIrql's import slot.
    fn walk_from_start(words: &[u32], site: u64) -> Vec<Walked> {
        let names = names();
        let (code, range) = code(words, &names);
        follow(&code, site + 4, range, known_at(&code, site, range))
    }

    const SLOT: u64 = 0x1_4000_3008;
    /// `adrp x21, SLOT's page` at BASE, `ldr x21, [x21, #8]`, `blr x21`.
    const ADRP_X21: u32 = 0xd000_0015;
    const LDR_X21: u32 = 0xf940_06b5;
    const BLR_X21: u32 = 0xd63f_02a0;

    #[test]
    fn a_slot_loaded_before_the_secure_names_the_call_after_it() {
        let words = [
            ADRP_X21,
            LDR_X21,
            bl(BASE + 8, SECURE_THUNK),
            MOV_X19_X0,
            cbz(BASE + 16, BASE + 36, 19),
            BLR_X21,
            MOV_X0_X19,
            bl(BASE + 28, UNSECURE_THUNK),
            RET,
        ];
        let paths = walk_from_start(&words, BASE + 8);
        let unsecured: Vec<&Walked> = paths.iter().filter(|p| p.end == End::Unsecured).collect();
        assert_eq!(unsecured.len(), 1);
        assert_eq!(unsecured[0].calls, ["KeGetCurrentIrql"]);
        // A path that reaches the secure without the load leaves the register unknown.
        let words = [
            ADRP_X21,
            cbz(BASE + 4, BASE + 12, 1),
            LDR_X21,
            bl(BASE + 12, SECURE_THUNK),
            MOV_X19_X0,
            cbz(BASE + 20, BASE + 40, 19),
            BLR_X21,
            MOV_X0_X19,
            bl(BASE + 32, UNSECURE_THUNK),
            RET,
        ];
        let paths = walk_from_start(&words, BASE + 12);
        assert!(
            paths.iter().any(|p| matches!(p.end, End::Unfollowable(_))),
            "{:?}",
            paths.iter().map(|p| &p.end).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_call_in_between_is_seen_and_volatile_registers_lose_the_handle() {
        // bl secure; bl other; cbz x0 (x0 no longer holds the handle): both ways.
        let words = [
            bl(BASE, SECURE_THUNK),
            bl(BASE + 4, OTHER_THUNK),
            cbz(BASE + 8, BASE + 20, 0),
            0xd503_201f, // nop
            bl(BASE + 16, UNSECURE_THUNK),
            RET,
        ];
        let paths = walk(&words);
        assert!(paths.iter().all(|p| p.calls == ["ExAllocatePool2"]));
        assert!(paths.iter().any(|p| matches!(p.end, End::Leaked(_))));
        assert!(paths.iter().any(|p| p.end == End::Unsecured));
    }
}
