//! Just enough of the PE/COFF format to check a driver: the headers, the sections and the import
//! table of a PE32+ image.
//!
//! Hand-written rather than taken from a crate (`object` or `goblin` would do): the checks need a
//! dozen fields and the import names, which is a hundred lines of bounds-checked reads, and it
//! keeps xtask's dependency list (and the workspace's lockfile, shared with the codegen task)
//! unchanged. Every read is bounds-checked; a malformed file is an error, never a panic.
//! Field offsets follow Microsoft's "PE Format" specification.

use std::fmt;

/// `IMAGE_FILE_MACHINE_AMD64`.
pub const MACHINE_AMD64: u16 = 0x8664;
/// The optional header's magic for PE32+ (64-bit) images.
pub const MAGIC_PE32_PLUS: u16 = 0x20b;
/// `IMAGE_SUBSYSTEM_NATIVE`: drivers and native applications.
pub const SUBSYSTEM_NATIVE: u16 = 1;
/// `IMAGE_FILE_EXECUTABLE_IMAGE`.
pub const FILE_EXECUTABLE_IMAGE: u16 = 0x0002;
/// `IMAGE_FILE_DLL`.
pub const FILE_DLL: u16 = 0x2000;
/// `IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE`: relocatable, as the kernel loads drivers anywhere.
pub const DLLCHARACTERISTICS_DYNAMIC_BASE: u16 = 0x0040;
/// `IMAGE_DLLCHARACTERISTICS_NX_COMPAT`: data is not executable (needed under HVCI).
pub const DLLCHARACTERISTICS_NX_COMPAT: u16 = 0x0100;
/// `IMAGE_SCN_MEM_EXECUTE`.
pub const SCN_MEM_EXECUTE: u32 = 0x2000_0000;

/// Where the optional header's `CheckSum` is, from the optional header's start.
const CHECKSUM_OFFSET: usize = 64;
/// The import table's index among the data directories.
const IMPORT_DIRECTORY: usize = 1;

/// A parsed PE32+ image.
#[derive(Debug)]
pub struct Image {
    /// COFF `Machine`.
    pub machine: u16,
    /// COFF `Characteristics`.
    pub characteristics: u16,
    /// Optional header `Magic`.
    pub magic: u16,
    /// `AddressOfEntryPoint` (an RVA).
    pub entry_point: u32,
    /// `CheckSum` as stored.
    pub checksum: u32,
    /// `CheckSum` as computed from the file.
    pub computed_checksum: u32,
    /// `Subsystem`.
    pub subsystem: u16,
    /// `DllCharacteristics`.
    pub dll_characteristics: u16,
    /// The section table.
    pub sections: Vec<Section>,
    /// The import table, one entry per import descriptor, in file order.
    pub imports: Vec<Import>,
}

/// One section header.
#[derive(Debug, Clone)]
pub struct Section {
    /// The name, up to 8 bytes.
    pub name: String,
    /// `VirtualAddress`.
    pub virtual_address: u32,
    /// `VirtualSize`.
    pub virtual_size: u32,
    /// `PointerToRawData`.
    pub raw_offset: u32,
    /// `SizeOfRawData`.
    pub raw_size: u32,
    /// `Characteristics`.
    pub characteristics: u32,
}

/// The routines imported from one DLL (one import descriptor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The DLL's name as written in the image.
    pub dll: String,
    /// The routines, by name; imports by ordinal appear as `#<ordinal>`.
    pub names: Vec<String>,
}

/// Why a file is not a PE32+ image this module can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err<T>(message: impl Into<String>) -> Result<T, Error> {
    Err(Error(message.into()))
}

/// Little-endian reads that fail instead of panicking past the end.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn slice(&self, at: usize, len: usize, what: &str) -> Result<&[u8], Error> {
        at.checked_add(len)
            .and_then(|end| self.0.get(at..end))
            .map_or_else(
                || {
                    err(format!(
                        "{what} at offset {at:#x} lies past the end of the file"
                    ))
                },
                Ok,
            )
    }

    fn u16(&self, at: usize, what: &str) -> Result<u16, Error> {
        let b = self.slice(at, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, at: usize, what: &str) -> Result<u32, Error> {
        let b = self.slice(at, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&self, at: usize, what: &str) -> Result<u64, Error> {
        let b = self.slice(at, 8, what)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(b);
        Ok(u64::from_le_bytes(word))
    }

    /// A NUL-terminated ASCII string starting at `at`.
    fn c_string(&self, at: usize, what: &str) -> Result<String, Error> {
        let rest = self.0.get(at..).map_or_else(
            || {
                err(format!(
                    "{what} at offset {at:#x} lies past the end of the file"
                ))
            },
            Ok,
        )?;
        let len = rest.iter().position(|b| *b == 0).map_or_else(
            || err(format!("{what} at {at:#x} has no terminating NUL")),
            Ok,
        )?;
        Ok(String::from_utf8_lossy(&rest[..len]).into_owned())
    }
}

/// Parses a PE32+ image.
pub fn parse(file: &[u8]) -> Result<Image, Error> {
    let bytes = Bytes(file);
    if bytes.slice(0, 2, "DOS signature")? != b"MZ" {
        return err("no MZ signature: not a PE file");
    }
    let nt = bytes.u32(0x3c, "e_lfanew")? as usize;
    if bytes.slice(nt, 4, "PE signature")? != b"PE\0\0" {
        return err(format!("no PE signature at {nt:#x}"));
    }
    let coff = nt + 4;
    let machine = bytes.u16(coff, "Machine")?;
    let section_count = bytes.u16(coff + 2, "NumberOfSections")? as usize;
    let optional_size = bytes.u16(coff + 16, "SizeOfOptionalHeader")? as usize;
    let characteristics = bytes.u16(coff + 18, "Characteristics")?;

    let opt = coff + 20;
    let magic = bytes.u16(opt, "optional header Magic")?;
    if magic != MAGIC_PE32_PLUS {
        return err(format!(
            "optional header magic {magic:#x} is not PE32+ ({MAGIC_PE32_PLUS:#x})"
        ));
    }
    let entry_point = bytes.u32(opt + 16, "AddressOfEntryPoint")?;
    let checksum = bytes.u32(opt + CHECKSUM_OFFSET, "CheckSum")?;
    let subsystem = bytes.u16(opt + 68, "Subsystem")?;
    let dll_characteristics = bytes.u16(opt + 70, "DllCharacteristics")?;
    let directory_count = bytes.u32(opt + 108, "NumberOfRvaAndSizes")? as usize;
    let import_rva = if directory_count > IMPORT_DIRECTORY {
        bytes.u32(opt + 112 + 8 * IMPORT_DIRECTORY, "import directory")?
    } else {
        0
    };

    let mut sections = Vec::with_capacity(section_count);
    let table = opt + optional_size;
    for i in 0..section_count {
        let at = table + 40 * i;
        let raw_name = bytes.slice(at, 8, "section name")?;
        let name_len = raw_name.iter().position(|b| *b == 0).unwrap_or(8);
        sections.push(Section {
            name: String::from_utf8_lossy(&raw_name[..name_len]).into_owned(),
            virtual_size: bytes.u32(at + 8, "VirtualSize")?,
            virtual_address: bytes.u32(at + 12, "VirtualAddress")?,
            raw_size: bytes.u32(at + 16, "SizeOfRawData")?,
            raw_offset: bytes.u32(at + 20, "PointerToRawData")?,
            characteristics: bytes.u32(at + 36, "section Characteristics")?,
        });
    }

    let imports = if import_rva == 0 {
        Vec::new()
    } else {
        read_imports(&bytes, &sections, import_rva)?
    };

    Ok(Image {
        machine,
        characteristics,
        magic,
        entry_point,
        checksum,
        computed_checksum: checksum_of(file, opt + CHECKSUM_OFFSET),
        subsystem,
        dll_characteristics,
        sections,
        imports,
    })
}

/// The file offset of an RVA, through the section that holds it.
fn file_offset(sections: &[Section], rva: u32, what: &str) -> Result<usize, Error> {
    for s in sections {
        let start = s.virtual_address;
        let len = s.virtual_size.max(s.raw_size);
        if rva >= start && rva - start < len {
            let into = rva - start;
            if into >= s.raw_size {
                return err(format!(
                    "{what} (RVA {rva:#x}) is in {}'s zero-filled tail",
                    s.name
                ));
            }
            return Ok(s.raw_offset as usize + into as usize);
        }
    }
    err(format!("{what} (RVA {rva:#x}) is in no section"))
}

fn read_imports(bytes: &Bytes<'_>, sections: &[Section], rva: u32) -> Result<Vec<Import>, Error> {
    let table = file_offset(sections, rva, "import table")?;
    let mut imports = Vec::new();
    for i in 0.. {
        let at = table + 20 * i;
        let lookup = bytes.u32(at, "OriginalFirstThunk")?;
        let name_rva = bytes.u32(at + 12, "import DLL name")?;
        let address_table = bytes.u32(at + 16, "FirstThunk")?;
        if lookup == 0 && name_rva == 0 && address_table == 0 {
            break;
        }
        let dll = bytes.c_string(file_offset(sections, name_rva, "DLL name")?, "DLL name")?;
        // The lookup table, or the address table in images that have none (both hold the same
        // entries before binding).
        let thunks = if lookup != 0 { lookup } else { address_table };
        let mut at = file_offset(sections, thunks, "import lookup table")?;
        let mut names = Vec::new();
        loop {
            let entry = bytes.u64(at, "import lookup entry")?;
            if entry == 0 {
                break;
            }
            if entry & (1 << 63) != 0 {
                names.push(format!("#{}", entry & 0xffff));
            } else {
                let hint_name = file_offset(sections, (entry & 0x7fff_ffff) as u32, "hint/name")?;
                names.push(bytes.c_string(hint_name + 2, "import name")?);
            }
            at += 8;
        }
        imports.push(Import { dll, names });
    }
    Ok(imports)
}

/// The PE checksum (as `CheckSumMappedFile` computes it): the file's 16-bit words summed with
/// end-around carry, skipping the checksum field itself, plus the file's length.
pub fn checksum_of(file: &[u8], checksum_at: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, word) in file.chunks(2).enumerate() {
        let at = 2 * i;
        if at >= checksum_at && at < checksum_at + 4 {
            continue;
        }
        let value = u64::from(word[0]) | u64::from(word.get(1).copied().unwrap_or(0)) << 8;
        sum += value;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(file.len() as u32)
}

impl Image {
    /// Every routine imported from `dll` (compared without regard to case, as Windows does).
    pub fn imports_from(&self, dll: &str) -> Vec<&str> {
        self.imports
            .iter()
            .filter(|i| i.dll.eq_ignore_ascii_case(dll))
            .flat_map(|i| i.names.iter().map(String::as_str))
            .collect()
    }

    /// Where `mov` to or from CR8 appears in executable sections, by RVA.
    ///
    /// The pattern is a REX prefix with its R bit (CR8 needs it), `0F 20` (read) or `0F 22`
    /// (write), and a ModRM byte naming register operand 0 (`mod` = 3, `reg` = 0). A byte
    /// pattern, not a disassembly: it could in principle match inside another instruction's
    /// immediate, which would show up as a false alarm, never as a miss.
    pub fn cr8_accesses(&self, file: &[u8]) -> Vec<u32> {
        let mut found = Vec::new();
        for s in self
            .sections
            .iter()
            .filter(|s| s.characteristics & SCN_MEM_EXECUTE != 0)
        {
            let start = s.raw_offset as usize;
            // Raw data past the virtual size is file-alignment padding, not code.
            let len = match s.virtual_size {
                0 => s.raw_size,
                size => s.raw_size.min(size),
            } as usize;
            let Some(code) = file.get(start..start.saturating_add(len)) else {
                continue;
            };
            for (i, w) in code.windows(4).enumerate() {
                let rex_r = w[0] & 0xf4 == 0x44;
                let mov_cr = w[1] == 0x0f && (w[2] == 0x20 || w[2] == 0x22);
                let cr8 = w[3] & 0xf8 == 0xc0;
                if rex_r && mov_cr && cr8 {
                    found.push(s.virtual_address + i as u32);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a small PE32+ driver image: headers, one code section holding `code` at RVA
    /// 0x1000, one data section at RVA 0x2000 holding an import table for `imports`.
    fn image(code: &[u8], imports: &[(&str, &[&str])]) -> Vec<u8> {
        let mut file = vec![0u8; 0x600];
        file[..2].copy_from_slice(b"MZ");
        file[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        file[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        put16(&mut file, coff, MACHINE_AMD64);
        put16(&mut file, coff + 2, 2);
        put16(&mut file, coff + 16, 240);
        put16(&mut file, coff + 18, 0x22);
        let opt = coff + 20;
        put16(&mut file, opt, MAGIC_PE32_PLUS);
        put32(&mut file, opt + 16, 0x1010);
        file[opt + 24..opt + 32].copy_from_slice(&0x1_4000_0000u64.to_le_bytes());
        put16(&mut file, opt + 68, SUBSYSTEM_NATIVE);
        put16(&mut file, opt + 70, 0x0160);
        put32(&mut file, opt + 108, 16);
        put32(&mut file, opt + 112 + 8, 0x2000);
        let table = opt + 240;
        section(
            &mut file,
            table,
            b".text",
            0x1000,
            0x200,
            0x200,
            0x6000_0020,
        );
        section(
            &mut file,
            table + 40,
            b".rdata",
            0x2000,
            0x200,
            0x400,
            0x4000_0040,
        );
        file[0x200..0x200 + code.len()].copy_from_slice(code);

        // .rdata: descriptors first, then lookup tables, then names.
        let rdata = 0x400;
        let rva = |offset: usize| (0x2000 + offset - rdata) as u32;
        let mut next = rdata + 20 * (imports.len() + 1);
        for (i, (dll, names)) in imports.iter().enumerate() {
            let lookup = next;
            next += 8 * (names.len() + 1);
            let descriptor = rdata + 20 * i;
            put32(&mut file, descriptor, rva(lookup));
            put32(&mut file, descriptor + 16, rva(lookup));
            for (j, name) in names.iter().enumerate() {
                file[lookup + 8 * j..lookup + 8 * j + 8]
                    .copy_from_slice(&u64::from(rva(next)).to_le_bytes());
                file[next + 2..next + 2 + name.len()].copy_from_slice(name.as_bytes());
                next += 2 + name.len() + 1;
            }
            put32(&mut file, descriptor + 12, rva(next));
            file[next..next + dll.len()].copy_from_slice(dll.as_bytes());
            next += dll.len() + 1;
        }
        let sum = checksum_of(&file, opt + CHECKSUM_OFFSET);
        put32(&mut file, opt + CHECKSUM_OFFSET, sum);
        file
    }

    fn put16(file: &mut [u8], at: usize, value: u16) {
        file[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn put32(file: &mut [u8], at: usize, value: u32) {
        file[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[allow(clippy::too_many_arguments)]
    fn section(file: &mut [u8], at: usize, name: &[u8], rva: u32, size: u32, raw: u32, flags: u32) {
        file[at..at + name.len()].copy_from_slice(name);
        put32(file, at + 8, size);
        put32(file, at + 12, rva);
        put32(file, at + 16, size);
        put32(file, at + 20, raw);
        put32(file, at + 36, flags);
    }

    #[test]
    fn reads_headers_and_imports_of_a_driver_image() {
        let file = image(
            &[0xc3],
            &[
                ("ntoskrnl.exe", &["MmSecureVirtualMemory", "DbgPrint"]),
                ("HAL.dll", &["KeGetCurrentIrql"]),
            ],
        );
        let pe = parse(&file).unwrap();
        assert_eq!(pe.machine, MACHINE_AMD64);
        assert_eq!(pe.magic, MAGIC_PE32_PLUS);
        assert_eq!(pe.subsystem, SUBSYSTEM_NATIVE);
        assert_eq!(pe.characteristics & FILE_DLL, 0);
        assert_eq!(pe.entry_point, 0x1010);
        assert_eq!(pe.dll_characteristics, 0x0160);
        assert_eq!(pe.checksum, pe.computed_checksum);
        assert_eq!(
            pe.imports_from("NTOSKRNL.EXE"),
            ["MmSecureVirtualMemory", "DbgPrint"]
        );
        assert_eq!(pe.imports_from("hal.dll"), ["KeGetCurrentIrql"]);
        assert_eq!(pe.imports.len(), 2);
    }

    #[test]
    fn a_changed_byte_breaks_the_checksum() {
        let mut file = image(&[0xc3], &[]);
        file[0x300] ^= 1;
        let pe = parse(&file).unwrap();
        assert_ne!(pe.checksum, pe.computed_checksum);
    }

    #[test]
    fn truncated_or_foreign_files_are_errors_not_panics() {
        let file = image(&[0xc3], &[("ntoskrnl.exe", &["DbgPrint"])]);
        for len in [0, 1, 0x3c, 0x84, 0x90, 0x1a0, 0x300, 0x420, 0x440, 0x44a] {
            assert!(parse(&file[..len]).is_err(), "length {len:#x} parsed");
        }
        let mut pe32 = file.clone();
        put16(&mut pe32, 0x84 + 20, 0x10b);
        assert!(parse(&pe32).unwrap_err().to_string().contains("not PE32+"));
        assert!(parse(b"\x7fELF").is_err());
    }

    #[test]
    fn finds_cr8_reads_and_writes_but_not_other_control_registers() {
        let code = [
            0x44, 0x0f, 0x20, 0xc0, // mov rax, cr8
            0x0f, 0x20, 0xc0, // mov rax, cr0
            0x48, 0x0f, 0x20, 0xd8, // mov rax, cr3
            0x45, 0x0f, 0x22, 0xc1, // mov cr8, r9
            0xc3,
        ];
        let file = image(&code, &[]);
        let pe = parse(&file).unwrap();
        assert_eq!(pe.cr8_accesses(&file), [0x1000, 0x100b]);
    }
}
