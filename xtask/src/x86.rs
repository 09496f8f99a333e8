//! The driver's machine code, decoded with iced-x86: every instruction of its executable
//! sections, and the moves to and from CR8 among them.
//!
//! Decoding is a linear sweep from the start of each section, as `objdump -d` does. Bytes that
//! are no instruction (padding, data) decode as `INVALID` instructions of their own length, and
//! x86 decoding falls back into step within a few instructions after them.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// Every instruction of `sections` (each one's load address and bytes), in address order.
pub fn decode(sections: &[(u64, &[u8])]) -> Vec<Instruction> {
    let mut code = Vec::new();
    for &(address, bytes) in sections {
        let mut decoder = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE);
        code.extend(decoder.iter());
    }
    code.sort_by_key(Instruction::ip);
    code
}

/// Where the code moves a value to or from CR8 (the IRQL), by address.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cr8Moves {
    /// `mov reg, cr8`: reads the IRQL (`KeGetCurrentIrql`, an IRQL assertion).
    pub reads: Vec<u64>,
    /// `mov cr8, reg`: raises or lowers the IRQL.
    pub writes: Vec<u64>,
}

/// The CR8 moves among `code`. Exact: other control registers, and bytes that merely look like
/// the encoding inside another instruction, do not count.
pub fn cr8_moves(code: &[Instruction]) -> Cr8Moves {
    let mut moves = Cr8Moves::default();
    for insn in code.iter().filter(|i| i.mnemonic() == Mnemonic::Mov) {
        let register = |operand| {
            insn.op_kind(operand) == OpKind::Register && insn.op_register(operand) == Register::CR8
        };
        if register(0) {
            moves.writes.push(insn.ip());
        } else if register(1) {
            moves.reads.push(insn.ip());
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr8_reads_and_writes_are_told_apart_from_other_control_registers() {
        let code = [
            0x44, 0x0f, 0x20, 0xc0, // 0x00 mov rax, cr8
            0x0f, 0x20, 0xc0, // 0x04 mov rax, cr0
            0x48, 0x0f, 0x20, 0xd8, // 0x07 mov rax, cr3
            0x45, 0x0f, 0x22, 0xc1, // 0x0b mov cr8, r9
            0x44, 0x0f, 0x22, 0xc0, // 0x0f mov cr8, rax
            0xc3, // 0x13 ret
        ];
        let moves = cr8_moves(&decode(&[(0x1000, &code)]));
        assert_eq!(moves.reads, [0x1000]);
        assert_eq!(moves.writes, [0x100b, 0x100f]);
    }

    #[test]
    fn a_cr8_encoding_inside_an_immediate_is_no_cr8_move() {
        // mov rax, 0xc0220f44c0200f44: the bytes of `mov rax, cr8` and `mov cr8, rax` as data,
        // which a byte-pattern scan took for both.
        let code = [
            0x48, 0xb8, 0x44, 0x0f, 0x20, 0xc0, 0x44, 0x0f, 0x22, 0xc0, 0xc3,
        ];
        let decoded = decode(&[(0x1000, &code)]);
        assert_eq!(decoded.len(), 2);
        assert_eq!(cr8_moves(&decoded), Cr8Moves::default());
    }

    #[test]
    fn sections_decode_in_address_order() {
        let decoded = decode(&[(0x2000, &[0xc3]), (0x1000, &[0x90, 0xc3])]);
        let ips: Vec<u64> = decoded.iter().map(Instruction::ip).collect();
        assert_eq!(ips, [0x1000, 0x1001, 0x2000]);
    }
}
