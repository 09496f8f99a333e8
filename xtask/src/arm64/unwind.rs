//! The ARM64 unwind data of the guarded functions: `.pdata` and `.xdata` read with `object`,
//! their unwind codes compared with the instructions of the prologue and the epilogue, and the
//! same facts read back from `llvm-readobj --unwind`.
//!
//! The layout is Microsoft's "ARM64 exception handling"
//! (<https://learn.microsoft.com/cpp/build/arm64-exception-handling>): a `.pdata` record is the
//! function's start RVA and a word whose low two bits (Flag) are 0 for an `.xdata` RVA; the
//! `.xdata` header holds Function Length (bits 0-17, in words), Vers (18-19), X (20: exception
//! data follows), E (21: one epilogue, packed), Epilog Count (22-26; with E, the index of the
//! epilogue's first unwind code) and Code Words (27-31); then the epilogue scopes (none with
//! E), the unwind code bytes padded to words, and with X the handler's RVA.

use object::pe::IMAGE_DIRECTORY_ENTRY_EXCEPTION;
use object::read::pe::PeFile64;
use object::LittleEndian as LE;

use super::{GUARDED, SHIM};
use crate::driver::{map_symbol_rva, Checks};

/// One `.pdata` record with its `.xdata`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwind {
    /// The function's start RVA.
    pub start: u32,
    /// Its length in bytes.
    pub length: u32,
    /// X: an exception handler follows the codes.
    pub has_handler: bool,
    /// E: one epilogue, at the end of the function, whose codes start at `epilogue_index`.
    pub packed_epilogue: bool,
    /// With E: the index of the epilogue's first unwind code.
    pub epilogue_index: usize,
    /// The unwind code bytes, padding included.
    pub codes: Vec<u8>,
    /// The handler's RVA, with X.
    pub handler: Option<u32>,
}

/// Why unwind data could not be read.
type Error = String;

/// Every `.pdata` record of the image.
pub fn pdata(file: &[u8]) -> Result<Vec<(u32, u32)>, Error> {
    let pe = PeFile64::parse(file).map_err(|e| e.to_string())?;
    let sections = pe.section_table();
    let Some(dir) = pe.data_directory(IMAGE_DIRECTORY_ENTRY_EXCEPTION) else {
        return Ok(Vec::new());
    };
    let bytes = dir.data(file, &sections).map_err(|e| e.to_string())?;
    Ok(bytes
        .chunks_exact(8)
        .map(|r| {
            let word = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
            (word(0), word(4))
        })
        .collect())
}

/// The decoded unwind data of the `.pdata` record for the function at `start`.
pub fn unwind_of(file: &[u8], start: u32) -> Result<Unwind, Error> {
    let pe = PeFile64::parse(file).map_err(|e| e.to_string())?;
    let record = pdata(file)?
        .into_iter()
        .find(|(begin, _)| *begin == start)
        .ok_or_else(|| format!("no .pdata record starts at {start:#x}"))?;
    let (_, word) = record;
    if word & 3 != 0 {
        return Err(format!(
            "the .pdata record at {start:#x} holds packed unwind data (Flag {}), which has no \
             room for a handler",
            word & 3
        ));
    }
    let xdata = pe
        .section_table()
        .pe_data_at(file, word)
        .ok_or_else(|| format!(".xdata RVA {word:#x} is in no section"))?;
    let word_at = |i: usize| -> Result<u32, Error> {
        xdata
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!(".xdata at {word:#x} is cut short"))
    };
    let header = word_at(0)?;
    let mut at = 1;
    let (mut epilogue_scopes, mut code_words) = ((header >> 22) & 0x1f, header >> 27);
    if epilogue_scopes == 0 && code_words == 0 {
        let extension = word_at(1)?;
        epilogue_scopes = extension & 0xffff;
        code_words = (extension >> 16) & 0xff;
        at = 2;
    }
    let packed_epilogue = header & (1 << 21) != 0;
    if !packed_epilogue {
        at += epilogue_scopes as usize;
    }
    let codes_start = 4 * at;
    let codes_end = codes_start + 4 * code_words as usize;
    let codes = xdata
        .get(codes_start..codes_end)
        .ok_or_else(|| format!(".xdata at {word:#x} is cut short"))?
        .to_vec();
    let has_handler = header & (1 << 20) != 0;
    let handler = if has_handler {
        Some(word_at(codes_end / 4)?)
    } else {
        None
    };
    Ok(Unwind {
        start,
        length: (header & 0x3ffff) * 4,
        has_handler,
        packed_epilogue,
        epilogue_index: if packed_epilogue {
            epilogue_scopes as usize
        } else {
            0
        },
        codes,
        handler,
    })
}

/// The unwind codes from `index` up to and including the first `end` (0xE4), each as its bytes.
pub fn codes_from(codes: &[u8], index: usize) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    let mut i = index;
    loop {
        let first = *codes
            .get(i)
            .ok_or_else(|| format!("unwind codes run out at byte {i} without `end`"))?;
        let len = match first {
            0x00..=0xbf => 1,
            0xc0..=0xdf => 2,
            0xe0 => 4,
            0xe2 | 0xe7 => 2,
            _ => 1,
        };
        let code = codes
            .get(i..i + len)
            .ok_or_else(|| format!("unwind code at byte {i} is cut short"))?
            .to_vec();
        i += len;
        let end = first == 0xe4;
        out.push(code);
        if end {
            return Ok(out);
        }
    }
}

/// The unwind code an instruction of a prologue (or, with `epilogue`, of an epilogue) stands
/// for, for the instructions these assembly functions use; `None` for any other.
pub fn code_for(insn: u32, epilogue: bool) -> Option<Vec<u8>> {
    let rt = insn & 0x1f;
    let rn = (insn >> 5) & 0x1f;
    let rt2 = (insn >> 10) & 0x1f;
    let imm7 = (((insn >> 15) & 0x7f) as i32) << 25 >> 25;
    // stp x29, x30, [sp, #-N]! (prologue) / ldp x29, x30, [sp], #N (epilogue): save_fplr_x.
    let pair_pre = if epilogue { 0xa8c0_0000 } else { 0xa980_0000 };
    if insn & 0xffc0_0000 == pair_pre && rt == 29 && rt2 == 30 && rn == 31 {
        let bytes = if epilogue { imm7 } else { -imm7 } * 8;
        if bytes > 0 && bytes <= 512 {
            return Some(vec![0x80 | (bytes / 8 - 1) as u8]);
        }
    }
    // mov x29, sp (add x29, sp, #0) / mov sp, x29: set_fp.
    if (!epilogue && insn == 0x9100_03fd) || (epilogue && insn == 0x9100_03bf) {
        return Some(vec![0xe1]);
    }
    // str/ldr x(19+X), [sp, #Z*8]: save_reg.
    let single = if epilogue { 0xf940_0000 } else { 0xf900_0000 };
    if insn & 0xffc0_0000 == single && rn == 31 && (19..=28).contains(&rt) {
        let x = rt - 19;
        let z = (insn >> 10) & 0xfff;
        if z < 64 {
            return Some(vec![0xd0 | (x >> 2) as u8, (((x & 3) << 6) | z) as u8]);
        }
    }
    None
}

/// Checks a function's unwind data against its instructions: the prologue's instructions,
/// reversed, are the codes from index 0 to `end`; with a packed epilogue, the instructions
/// before the final `ret` are the codes from its index; the length is the function's.
/// Returns the address where the epilogue starts.
fn codes_match(code: &[u8], unwind: &Unwind) -> Result<u32, Error> {
    let insn = |offset: u32| -> Result<u32, Error> {
        let at = offset as usize;
        code.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("no instruction at +{offset:#x}"))
    };
    let prologue = codes_from(&unwind.codes, 0)?;
    let count = prologue.len() - 1;
    let mut expected = Vec::new();
    for i in 0..count as u32 {
        let word = insn(4 * i)?;
        expected.push(code_for(word, false).ok_or_else(|| {
            format!(
                "prologue instruction {word:#010x} at +{:#x} has no unwind code here",
                4 * i
            )
        })?);
    }
    expected.reverse();
    if expected[..] != prologue[..count] {
        return Err(format!(
            "prologue codes {:02x?} do not match its instructions, which stand for {expected:02x?}",
            &prologue[..count]
        ));
    }
    if !unwind.packed_epilogue {
        return Err("the epilogue is not packed into the header (E = 0)".to_owned());
    }
    let epilogue = codes_from(&unwind.codes, unwind.epilogue_index)?;
    let steps = epilogue.len() - 1;
    let ret = unwind
        .length
        .checked_sub(4)
        .ok_or("a function of no length")?;
    if insn(ret)? != 0xd65f_03c0 {
        return Err(format!("the function does not end with `ret` (+{ret:#x})"));
    }
    let start = ret - 4 * steps as u32;
    for (i, code) in epilogue[..steps].iter().enumerate() {
        let word = insn(start + 4 * i as u32)?;
        if code_for(word, true).as_ref() != Some(code) {
            return Err(format!(
                "epilogue instruction {word:#010x} at +{:#x} does not stand for code {code:02x?}",
                start + 4 * i as u32
            ));
        }
    }
    Ok(start)
}

/// The prologue codes and the handler address `llvm-readobj --unwind` prints for the function
/// at `address`: (prologue bytes, `ExceptionData: Yes`, handler).
pub fn readobj_entry(text: &str, address: u64) -> Option<(Vec<u8>, bool, Option<u64>)> {
    let head = format!("Function: {address:#X}").replace("0X", "0x");
    let block = text.split("RuntimeFunction {").find(|b| {
        b.lines().any(|l| {
            l.trim().eq_ignore_ascii_case(&head) || l.trim().starts_with(&format!("{head} "))
        })
    })?;
    let mut prologue = Vec::new();
    let mut in_prologue = false;
    let mut exception = false;
    let mut handler = None;
    for line in block.lines().map(str::trim) {
        if line.starts_with("Prologue [") {
            in_prologue = true;
        } else if in_prologue && line.starts_with(']') {
            in_prologue = false;
        } else if in_prologue {
            let hex = line.split_whitespace().next()?.strip_prefix("0x")?;
            for i in (0..hex.len()).step_by(2) {
                prologue.push(u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()?);
            }
        } else if line == "ExceptionData: Yes" {
            exception = true;
        } else if let Some(routine) = line.strip_prefix("Routine: ") {
            let hex = routine.split_whitespace().next()?.strip_prefix("0x")?;
            handler = u64::from_str_radix(hex, 16).ok();
        }
    }
    Some((prologue, exception, handler))
}

/// Records the unwind checks of the guarded functions and the sample's shim on `checks`.
pub fn check(file: &[u8], map: &str, readobj: &str, checks: &mut Checks) {
    let image_base = PeFile64::parse(file)
        .map(|pe| pe.nt_headers().optional_header.image_base.get(LE))
        .unwrap_or(0);
    let text = |rva: u32, len: u32| -> Vec<u8> {
        PeFile64::parse(file)
            .ok()
            .and_then(|pe| pe.section_table().pe_data_at(file, rva).map(<[u8]>::to_vec))
            .map(|bytes| bytes.into_iter().take(len as usize).collect())
            .unwrap_or_default()
    };
    let mut functions: Vec<(&str, Option<&str>, Option<&str>)> = GUARDED
        .iter()
        .map(|(f, h, l)| (*f, Some(*h), Some(*l)))
        .collect();
    functions.push((SHIM, None, None));
    for (function, handler, landing) in functions {
        let Some(rva) = map_symbol_rva(map, function) else {
            checks.record(false, &format!("{function} in the link map"), "absent");
            continue;
        };
        let unwind = match unwind_of(file, rva) {
            Ok(unwind) => unwind,
            Err(e) => {
                checks.record(
                    false,
                    &format!("{function}: a .pdata record with .xdata"),
                    e,
                );
                continue;
            }
        };
        checks.record(
            true,
            &format!("{function}: a .pdata record with .xdata"),
            format!("at {rva:#x}, {} bytes", unwind.length),
        );
        let wanted_handler = handler.and_then(|h| map_symbol_rva(map, h));
        match handler {
            Some(name) => checks.record(
                unwind.has_handler && unwind.handler.is_some() && unwind.handler == wanted_handler,
                &format!("{function}: exception-handler flag (X) set, handler is {name}"),
                format!(
                    "X {}, handler RVA {:x?}, {name} at {:x?}",
                    unwind.has_handler, unwind.handler, wanted_handler
                ),
            ),
            None => checks.record(
                !unwind.has_handler,
                &format!("{function}: no handler (an exception passes through it)"),
                format!("X {}", unwind.has_handler),
            ),
        }
        match codes_match(&text(rva, unwind.length), &unwind) {
            Ok(epilogue) => {
                checks.record(
                    true,
                    &format!("{function}: unwind codes match the prologue and the epilogue"),
                    format!("codes {:02x?}", unwind.codes),
                );
                if let Some(landing) = landing {
                    let at = map_symbol_rva(map, landing);
                    checks.record(
                        at == Some(rva + epilogue),
                        &format!("{function}: {landing} is where the epilogue starts"),
                        format!("{landing} at {at:x?}, epilogue at {:#x}", rva + epilogue),
                    );
                }
            }
            Err(e) => checks.record(
                false,
                &format!("{function}: unwind codes match the prologue and the epilogue"),
                e,
            ),
        }
        let address = image_base + u64::from(rva);
        match readobj_entry(readobj, address) {
            Some((prologue, exception, routine)) => {
                let ours: Vec<u8> = codes_from(&unwind.codes, 0)
                    .map(|c| c.concat())
                    .unwrap_or_default();
                let wanted_routine = wanted_handler.map(|h| image_base + u64::from(h));
                checks.record(
                    prologue == ours && exception == handler.is_some() && routine == wanted_routine,
                    &format!("{function}: llvm-readobj --unwind agrees"),
                    format!(
                        "prologue {prologue:02x?}, ExceptionData {exception}, Routine {routine:x?}"
                    ),
                );
            }
            None => checks.record(
                false,
                &format!("{function}: llvm-readobj --unwind agrees"),
                format!("no RuntimeFunction at {address:#x} in its output"),
            ),
        }
    }
    self_check(file, map, checks);
}

/// The file offset of `rva`.
fn file_offset(file: &[u8], rva: u32) -> Option<usize> {
    let pe = PeFile64::parse(file).ok()?;
    let (offset, _) = pe.section_table().pe_file_range_at(rva)?;
    Some(offset as usize)
}

/// Shows that the checks above can fail: in copies of the image, the copy's `.xdata` with the X
/// bit cleared must read as having no handler, and its first prologue instruction changed to
/// `stp x29, x30, [sp, #-32]!` must no longer match its unwind codes.
fn self_check(file: &[u8], map: &str, checks: &mut Checks) {
    let (function, _, _) = GUARDED[0];
    let found = map_symbol_rva(map, function).and_then(|rva| {
        let xdata = pdata(file).ok()?.into_iter().find(|(s, _)| *s == rva)?.1;
        Some((rva, file_offset(file, xdata)?, file_offset(file, rva)?))
    });
    let Some((rva, xdata_at, code_at)) = found else {
        checks.record(
            false,
            "self-check: the check rejects altered unwind data",
            "no record",
        );
        return;
    };
    let mut no_handler = file.to_vec();
    no_handler[xdata_at + 2] &= !(1 << 4); // bit 20 of the header word
    let mut other_prologue = file.to_vec();
    other_prologue[code_at..code_at + 4].copy_from_slice(&0xa9be_7bfd_u32.to_le_bytes());
    let handler_lost = unwind_of(&no_handler, rva).map(|u| !u.has_handler && u.handler.is_none());
    let mismatch = unwind_of(&other_prologue, rva).map(|u| {
        let length = u.length as usize;
        codes_match(&other_prologue[code_at..code_at + length], &u).is_err()
    });
    checks.record(
        handler_lost == Ok(true) && mismatch == Ok(true),
        "self-check: the check rejects altered unwind data",
        format!(
            "{function} with X cleared reads as handler-less: {handler_lost:?}; with \
             `stp x29, x30, [sp, #-32]!` first, its codes mismatch: {mismatch:?}"
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prologue_and_epilogue_instructions_stand_for_their_codes() {
        // stp x29, x30, [sp, #-16]! / ldp x29, x30, [sp], #16
        assert_eq!(code_for(0xa9bf_7bfd, false), Some(vec![0x81]));
        assert_eq!(code_for(0xa8c1_7bfd, true), Some(vec![0x81]));
        // stp x29, x30, [sp, #-32]!
        assert_eq!(code_for(0xa9be_7bfd, false), Some(vec![0x83]));
        // mov x29, sp
        assert_eq!(code_for(0x9100_03fd, false), Some(vec![0xe1]));
        // str x19, [sp, #16] / ldr x19, [sp, #16]
        assert_eq!(code_for(0xf900_0bf3, false), Some(vec![0xd0, 0x02]));
        assert_eq!(code_for(0xf940_0bf3, true), Some(vec![0xd0, 0x02]));
        // ret, and a load in a prologue, stand for nothing.
        assert_eq!(code_for(0xd65f_03c0, false), None);
        assert_eq!(code_for(0xa8c1_7bfd, false), None);
    }

    #[test]
    fn codes_split_at_their_lengths_up_to_end() {
        let codes = [
            0xe1, 0xd0, 0x02, 0x83, 0xe4, 0xd0, 0x02, 0x83, 0xe4, 0, 0, 0,
        ];
        assert_eq!(
            codes_from(&codes, 0).unwrap(),
            [vec![0xe1], vec![0xd0, 0x02], vec![0x83], vec![0xe4]]
        );
        assert_eq!(codes_from(&codes, 5).unwrap().len(), 3);
        assert!(codes_from(&[0xe1, 0x81], 0).is_err());
    }

    #[test]
    fn readobj_blocks_are_found_by_address() {
        let text = "UnwindInformation [
  RuntimeFunction {
    Function: 0x140001030
    ExceptionData {
      ExceptionData: Yes
      Prologue [
        0xe1                ; mov fp, sp
        0xd002              ; str x19, [sp, #16]
        0xe4                ; end
      ]
      ExceptionHandler [
        Routine: 0x140004190
      ]
    }
  }
  RuntimeFunction {
    Function: 0x140001074
    ExceptionData {
      ExceptionData: No
    }
  }
";
        assert_eq!(
            readobj_entry(text, 0x1_4000_1030),
            Some((vec![0xe1, 0xd0, 0x02, 0xe4], true, Some(0x1_4000_4190)))
        );
        assert_eq!(
            readobj_entry(text, 0x1_4000_1074),
            Some((vec![], false, None))
        );
        assert_eq!(readobj_entry(text, 0x1_4000_1000), None);
    }
}
