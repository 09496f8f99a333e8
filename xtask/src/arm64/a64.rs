//! Just enough A64 decoding for the ARM64 disassembly check: every instruction is one
//! little-endian word; this module tells branches, calls and returns apart, and which
//! general-purpose registers an instruction may write (over-approximated: when in doubt, it
//! writes). Encodings from the Arm Architecture Reference Manual's A64 encoding index.

/// What an instruction does to control flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Falls through to the next instruction.
    Next,
    /// `bl label`.
    Call(u64),
    /// `blr xN`.
    CallRegister(u8),
    /// `b label`.
    Jump(u64),
    /// `br xN`.
    JumpRegister(u8),
    /// `b.cond`, `cbz`/`cbnz`, `tbz`/`tbnz`: to the target or the next instruction.
    Branch(u64, Test),
    /// `ret`.
    Return,
    /// `brk`, `udf`, `hlt`, `svc`, `hvc`, `smc`, `eret` and the like: never the next instruction
    /// in the ordinary way.
    Trap,
}

/// What a conditional branch tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// `cbz xN` (64-bit): taken when the register is zero.
    Zero(u8),
    /// `cbnz xN` (64-bit): taken when the register is not zero.
    NonZero(u8),
    /// `b.eq`: taken when Z is set.
    Equal,
    /// `b.ne`: taken when Z is clear.
    NotEqual,
    /// Anything else (another condition, a 32-bit `cbz`, a bit test).
    Other,
}

fn sign_extend(value: u32, bits: u32) -> i64 {
    let shift = 64 - bits;
    (i64::from(value) << shift) >> shift
}

fn relative(pc: u64, words: i64) -> u64 {
    pc.wrapping_add((words * 4) as u64)
}

/// The control flow of `word` at `pc`.
pub fn flow(word: u32, pc: u64) -> Flow {
    match word {
        w if w & 0xfc00_0000 == 0x1400_0000 => {
            Flow::Jump(relative(pc, sign_extend(w & 0x03ff_ffff, 26)))
        }
        w if w & 0xfc00_0000 == 0x9400_0000 => {
            Flow::Call(relative(pc, sign_extend(w & 0x03ff_ffff, 26)))
        }
        w if w & 0xffff_fc1f == 0xd61f_0000 => Flow::JumpRegister(((w >> 5) & 0x1f) as u8),
        w if w & 0xffff_fc1f == 0xd63f_0000 => Flow::CallRegister(((w >> 5) & 0x1f) as u8),
        w if w & 0xffff_fc1f == 0xd65f_0000 => Flow::Return,
        // b.cond
        w if w & 0xff00_0010 == 0x5400_0000 => {
            let target = relative(pc, sign_extend((w >> 5) & 0x7ffff, 19));
            let test = match w & 0xf {
                0 => Test::Equal,
                1 => Test::NotEqual,
                _ => Test::Other,
            };
            Flow::Branch(target, test)
        }
        // cbz/cbnz
        w if w & 0x7e00_0000 == 0x3400_0000 => {
            let target = relative(pc, sign_extend((w >> 5) & 0x7ffff, 19));
            let register = (w & 0x1f) as u8;
            let test = match (w >> 31, (w >> 24) & 1) {
                (1, 0) => Test::Zero(register),
                (1, 1) => Test::NonZero(register),
                _ => Test::Other,
            };
            Flow::Branch(target, test)
        }
        // tbz/tbnz
        w if w & 0x7e00_0000 == 0x3600_0000 => Flow::Branch(
            relative(pc, sign_extend((w >> 5) & 0x3fff, 14)),
            Test::Other,
        ),
        // Exception generation (svc, hvc, smc, brk, hlt, ...), eret/drps, udf.
        w if w & 0xff00_0000 == 0xd400_0000 => Flow::Trap,
        w if w & 0xfffffbff == 0xd69f_03e0 || w == 0xd6bf_03e0 => Flow::Trap,
        w if w & 0xffff_0000 == 0 => Flow::Trap,
        _ => Flow::Next,
    }
}

/// `mov xD, xM` (`orr xD, xzr, xM`): (D, M).
pub fn mov_register(word: u32) -> Option<(u8, u8)> {
    (word & 0xffe0_ffe0 == 0xaa00_03e0)
        .then_some(((word & 0x1f) as u8, ((word >> 16) & 0x1f) as u8))
}

/// `cmp xN, #0`, `cmp xN, xzr` or `tst xN, xN`: Z is then set exactly when xN is zero.
pub fn compares_with_zero(word: u32) -> Option<u8> {
    let n = ((word >> 5) & 0x1f) as u8;
    let m = ((word >> 16) & 0x1f) as u8;
    let is = word & 0xffff_fc1f == 0xf100_001f // subs xzr, xN, #0
        || word & 0xffff_fc1f == 0xeb1f_001f // subs xzr, xN, xzr
        || (word & 0xffe0_fc1f == 0xea00_001f && n == m); // ands xzr, xN, xN
    is.then_some(n)
}

/// `adrp xD, page`: (D, the page's address).
pub fn adrp(word: u32, pc: u64) -> Option<(u8, u64)> {
    if word & 0x9f00_0000 != 0x9000_0000 {
        return None;
    }
    let immlo = (word >> 29) & 3;
    let immhi = (word >> 5) & 0x7ffff;
    let offset = sign_extend((immhi << 2) | immlo, 21) << 12;
    Some((
        (word & 0x1f) as u8,
        (pc & !0xfff).wrapping_add(offset as u64),
    ))
}

/// `add xD, xN, #imm` (64-bit, optionally shifted by 12): (D, N, imm).
pub fn add_immediate(word: u32) -> Option<(u8, u8, u64)> {
    if word & 0xff80_0000 != 0x9100_0000 {
        return None;
    }
    let imm = u64::from((word >> 10) & 0xfff) << if word & (1 << 22) != 0 { 12 } else { 0 };
    Some(((word & 0x1f) as u8, ((word >> 5) & 0x1f) as u8, imm))
}

/// `ldr xT, [xN, #imm]` (64-bit, unsigned offset): (T, N, imm).
pub fn load_immediate(word: u32) -> Option<(u8, u8, u64)> {
    if word & 0xffc0_0000 != 0xf940_0000 {
        return None;
    }
    Some((
        (word & 0x1f) as u8,
        ((word >> 5) & 0x1f) as u8,
        u64::from((word >> 10) & 0xfff) * 8,
    ))
}

/// The general-purpose registers (0-30) `word` may write, over-approximated: a register listed
/// may keep its value, a register not listed does.
pub fn writes(word: u32) -> Vec<u8> {
    let rd = (word & 0x1f) as u8;
    let rn = ((word >> 5) & 0x1f) as u8;
    let rt2 = ((word >> 10) & 0x1f) as u8;
    let rs = ((word >> 16) & 0x1f) as u8;
    let mut out = Vec::new();
    let op0 = (word >> 25) & 0xf;
    match op0 {
        // Branches, exception generation, system instructions.
        0b1010 | 0b1011 => {
            if matches!(flow(word, 0), Flow::Call(_) | Flow::CallRegister(_)) {
                out.push(30);
            }
            // mrs, sysl
            if word & 0xfff0_0000 == 0xd530_0000 || word & 0xfff8_0000 == 0xd528_0000 {
                out.push(rd);
            }
        }
        // Loads and stores.
        op if op & 0b0101 == 0b0100 => {
            let class = (word >> 27) & 0b111;
            let load = word & (1 << 22) != 0;
            let atomic = class == 0b111
                && word & (1 << 24) == 0
                && word & (1 << 21) != 0
                && (word >> 10) & 3 == 0;
            if load || atomic {
                out.push(rd);
                if class == 0b101 || class == 0b001 {
                    out.push(rt2);
                }
            }
            // Store exclusive: the status register.
            if (word >> 24) & 0x3f == 0b00_1000 {
                out.push(rs);
            }
            let writeback = match class {
                0b101 => matches!((word >> 23) & 3, 0b01 | 0b11),
                0b111 => word & (1 << 24) == 0 && word & (1 << 21) == 0 && (word >> 10) & 1 == 1,
                _ => false,
            };
            if writeback {
                out.push(rn);
            }
        }
        // Data processing (immediate, register), SIMD and floating point (some of which write a
        // general-purpose register: fmov, umov, fcvtzs...), and everything else: Rd.
        _ => out.push(rd),
    }
    out.retain(|r| *r < 31);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_and_calls_decode_with_their_targets() {
        let pc = 0x1_4000_1000;
        assert_eq!(flow(0x9400_0004, pc), Flow::Call(pc + 16)); // bl +16
        assert_eq!(flow(0x97ff_ffff, pc), Flow::Call(pc - 4)); // bl -4
        assert_eq!(flow(0x1400_0002, pc), Flow::Jump(pc + 8)); // b +8
        assert_eq!(flow(0xd63f_0100, pc), Flow::CallRegister(8)); // blr x8
        assert_eq!(flow(0xd61f_0200, pc), Flow::JumpRegister(16)); // br x16
        assert_eq!(flow(0xd65f_03c0, pc), Flow::Return); // ret
        assert_eq!(flow(0xb400_0040, pc), Flow::Branch(pc + 8, Test::Zero(0))); // cbz x0, +8
        assert_eq!(
            flow(0xb500_0053, pc),
            Flow::Branch(pc + 8, Test::NonZero(19))
        ); // cbnz x19
        assert_eq!(flow(0x3400_0040, pc), Flow::Branch(pc + 8, Test::Other)); // cbz w0
        assert_eq!(flow(0x5400_0040, pc), Flow::Branch(pc + 8, Test::Equal)); // b.eq +8
        assert_eq!(flow(0x54ff_ffe1, pc), Flow::Branch(pc - 4, Test::NotEqual)); // b.ne -4
        assert_eq!(flow(0x3600_0040, pc), Flow::Branch(pc + 8, Test::Other)); // tbz w0, #0
        assert_eq!(flow(0xd43e_0000, pc), Flow::Trap); // brk #0xf000
        assert_eq!(flow(0x0000_0000, pc), Flow::Trap); // udf #0
        assert_eq!(flow(0xaa00_03f3, pc), Flow::Next); // mov x19, x0
    }

    #[test]
    fn moves_compares_and_addresses_decode() {
        assert_eq!(mov_register(0xaa00_03f3), Some((19, 0)));
        assert_eq!(mov_register(0x2a00_03f3), None); // mov w19, w0
        assert_eq!(compares_with_zero(0xf100_001f), Some(0)); // cmp x0, #0
        assert_eq!(compares_with_zero(0xf100_041f), None); // cmp x0, #1
        assert_eq!(compares_with_zero(0xea13_027f), Some(19)); // tst x19, x19
                                                               // adrp x8, +0x3000 from 0x140001234
        assert_eq!(adrp(0xf000_0008, 0x1_4000_1234), Some((8, 0x1_4000_4000)));
        assert_eq!(add_immediate(0x9102_0108), Some((8, 8, 0x80))); // add x8, x8, #0x80
        assert_eq!(load_immediate(0xf940_3d08), Some((8, 8, 0x78))); // ldr x8, [x8, #0x78]
    }

    #[test]
    fn writes_cover_destinations_and_spare_stored_registers() {
        assert_eq!(writes(0xaa00_03f3), [19]); // mov x19, x0
        assert_eq!(writes(0xf940_3d08), [8]); // ldr x8, [x8, #0x78]
        assert!(writes(0xf900_0be0).is_empty()); // str x0, [sp, #16]
        assert!(writes(0xa9bf_7bfd).is_empty()); // stp x29, x30, [sp, #-16]!: sp only
        assert_eq!(writes(0xa8c1_7bfd), [29, 30]); // ldp x29, x30, [sp], #16
        assert_eq!(writes(0x9400_0004), [30]); // bl
        assert!(writes(0xb400_0040).is_empty()); // cbz
        assert_eq!(writes(0xd53b_e040), [0]); // mrs x0, cntvct_el0
    }
}
