//! The ARM64 equivalent of `bench::disasm`: what a secure + drop compiles to in the ARM64 sample
//! driver, decoded from its code (see [`super::a64`]), and the check that every path after a
//! secure calls nothing but what is allowed before its one unsecure.
//!
//! The walk is the x64 one, [`crate::walk`]; this is its ARM64 part. From every `bl` to the `MmSecureVirtualMemory` thunk (or `blr`
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

use std::collections::BTreeMap;
use std::path::Path;

use super::a64::{self, Test};
use super::unwind;
use crate::walk::{self, Allowed, Code, Flow, Isa, Target};

/// What ARM64 adds to [`walk::ALLOWED_WHILE_SECURED`] (whose x64 entries hold here too).
pub const ALLOWED_ON_ARM64: &[Allowed] = &[Allowed {
    routine: "KeGetCurrentIrql",
    why: "on ARM64 reading the IRQL is a call to the HAL's export (wdm.h declares it \
              NTHALAPI there), not a register read; it only reads",
}];

/// What a path knows of the registers.
#[derive(Clone, Default)]
pub(crate) struct Regs {
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

impl Regs {
    /// What an indirect call or jump through `register` reaches, if the path loaded it.
    fn through(&self, register: u8) -> Target {
        match self.known.get(&register) {
            Some(Known::LoadedFrom(a) | Known::Address(a)) => Target::Held(*a),
            None => Target::Unknown,
        }
    }

    /// Follows one non-branch instruction's effect on the handle and the known addresses.
    fn step(&mut self, word: u32, pc: u64) {
        let copied = a64::mov_register(word).filter(|(_, src)| self.handle.contains(src));
        let compared = a64::compares_with_zero(word).filter(|r| self.handle.contains(r));
        let known = if let Some((rd, page)) = a64::adrp(word, pc) {
            Some((rd, Known::Address(page)))
        } else if let Some((rd, rn, imm)) = a64::add_immediate(word) {
            match self.known.get(&rn) {
                Some(Known::Address(base)) => Some((rd, Known::Address(base + imm))),
                _ => None,
            }
        } else if let Some((rt, rn, imm)) = a64::load_immediate(word) {
            match self.known.get(&rn) {
                Some(Known::Address(base)) => Some((rt, Known::LoadedFrom(base + imm))),
                _ => None,
            }
        } else {
            None
        };
        for written in a64::writes(word) {
            self.handle.retain(|r| *r != written);
            self.known.remove(&written);
        }
        if let Some((dst, _)) = copied {
            self.handle.push(dst);
        }
        if let Some((register, value)) = known {
            self.known.insert(register, value);
        }
        self.compared = compared;
    }

    /// What a call leaves: the handle only in x19-x28 (nonvolatile on ARM64), no known
    /// addresses in volatile registers, the flags unknown.
    fn after_call(&mut self) {
        self.handle.retain(|r| (19..=28).contains(r));
        self.known.retain(|r, _| (19..=28).contains(r));
        self.compared = None;
    }
}

/// ARM64's part of the walk: instruction words, decoded by [`a64`].
#[derive(Default)]
pub(crate) struct Arm64;

impl Isa for Arm64 {
    const TAG: &'static str = "[disasm arm64]";
    const ALLOWED: &'static [Allowed] = ALLOWED_ON_ARM64;
    const SEEDED: bool = true;
    type Insn = u32;
    type Regs = Regs;

    fn flow(&mut self, &word: &u32, at: u64, regs: &mut Regs) -> Flow {
        match a64::flow(word, at) {
            a64::Flow::Next => {
                regs.step(word, at);
                Flow::Next
            }
            a64::Flow::Call(target) => {
                regs.after_call();
                Flow::Call(Target::Direct(target))
            }
            a64::Flow::CallRegister(register) => {
                let target = regs.through(register);
                regs.after_call();
                Flow::Call(target)
            }
            a64::Flow::Jump(target) => Flow::Jump(Target::Direct(target)),
            a64::Flow::JumpRegister(register) => Flow::Jump(regs.through(register)),
            a64::Flow::Branch(target, test) => {
                let null = match test {
                    Test::Zero(r) if regs.handle.contains(&r) => Some(true),
                    Test::NonZero(r) if regs.handle.contains(&r) => Some(false),
                    Test::Equal if regs.compared.is_some() => Some(true),
                    Test::NotEqual if regs.compared.is_some() => Some(false),
                    _ => None,
                };
                regs.compared = None;
                Flow::Branch(target, null)
            }
            a64::Flow::Return => Flow::Return,
            a64::Flow::Trap => Flow::Trap,
        }
    }

    fn len(_: &u32) -> u64 {
        4
    }

    fn text(_: &u32) -> Option<String> {
        None
    }

    fn secured(regs: Regs) -> Regs {
        Regs {
            handle: vec![0],
            compared: None,
            ..regs
        }
    }

    fn meet(into: &mut Regs, other: &Regs) {
        into.known.retain(|r, k| other.known.get(r) == Some(k));
    }
}

/// Checks the ARM64 sample driver `sys` with its link map `map`; fails if a path after a secure
/// does anything but what is allowed and unsecure once, or if anything in it allocates.
pub fn check_driver(sys: &Path, map: &Path) -> crate::Result {
    walk::check_driver::<Arm64>(sys, map, |file, image, symbols| {
        let mut words = BTreeMap::new();
        for (address, bytes) in image.code(file) {
            for (i, chunk) in bytes.chunks_exact(4).enumerate() {
                let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                words.insert(address + 4 * i as u64, word);
            }
        }
        // Function bounds from .pdata: every function that calls (the secure routine among
        // them) has a record.
        let mut functions = Vec::new();
        for (start, _) in unwind::pdata(file)? {
            let length = match unwind::unwind_of(file, start) {
                Ok(u) => u.length,
                Err(_) => packed_length(file, start).unwrap_or(0),
            };
            functions.push((
                image.image_base + u64::from(start),
                image.image_base + u64::from(start + length),
            ));
        }
        Ok(Code::new(words, functions, symbols))
    })
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
    use crate::walk::{follow, seed, End, Symbols, Walked, SECURE, UNSECURE};

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
    fn names() -> Symbols {
        let mut symbols = Symbols::default();
        symbols.by_address = [
            (SECURE_THUNK, SECURE),
            (UNSECURE_THUNK, UNSECURE),
            (OTHER_THUNK, "ExAllocatePool2"),
            (SLOT, "KeGetCurrentIrql"),
        ]
        .into_iter()
        .map(|(a, n)| (a, n.to_owned()))
        .collect();
        symbols
    }

    /// `words` from BASE, and the function they make.
    fn code<'a>(words: &[u32], names: &'a Symbols) -> (Code<'a, Arm64>, (u64, u64)) {
        let range = (BASE, BASE + 4 * words.len() as u64);
        let words = words
            .iter()
            .enumerate()
            .map(|(i, w)| (BASE + 4 * i as u64, *w))
            .collect();
        (Code::new(words, vec![range], names), range)
    }

    /// Walks `words` (starting at BASE, the secure call first) and returns the path ends.
    fn walk(words: &[u32]) -> Vec<Walked> {
        let names = names();
        let (mut code, range) = code(words, &names);
        follow(&mut code, BASE + 4, range, Arm64::secured(Regs::default()))
    }

    const RET: u32 = 0xd65f_03c0;
    const MOV_X19_X0: u32 = 0xaa00_03f3;
    const MOV_X0_X19: u32 = 0xaa13_03e0;
    const MOV_X19_X1: u32 = 0xaa01_03f3;

    /// bl secure; mov x19, x0; cbz x19, ret; mov x0, x19; bl unsecure; ret
    fn null_test_then_unsecure() -> [u32; 6] {
        [
            bl(BASE, SECURE_THUNK),
            MOV_X19_X0,
            cbz(BASE + 8, BASE + 20, 19),
            MOV_X0_X19,
            bl(BASE + 16, UNSECURE_THUNK),
            RET,
        ]
    }

    #[test]
    fn a_null_test_then_unsecure_passes() {
        let words = null_test_then_unsecure();
        let ends: Vec<End> = walk(&words).into_iter().map(|p| p.end).collect();
        assert!(ends.contains(&End::Refused));
        assert!(ends.contains(&End::Unsecured));
        assert!(
            !ends.iter().any(|e| matches!(e, End::Leaked(_))),
            "{ends:?}"
        );
    }

    /// The self-check: with the `bl` to the unsecure thunk made a nop, the walk fails.
    #[test]
    fn a_walk_without_the_unsecure_call_fails() {
        let words = null_test_then_unsecure();
        let names = names();
        let (mut code, _) = code(&words, &names);
        let report = walk::analyse(&mut code);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.sites, 1);
        assert_eq!(walk::leaks_without_unsecure(&mut code), 2);
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
        let (mut code, range) = code(words, &names);
        let seeded = seed(&mut code, site, range);
        follow(&mut code, site + 4, range, Arm64::secured(seeded))
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
