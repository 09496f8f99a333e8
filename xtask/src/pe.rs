//! What the driver checks read from a PE32+ image: the headers, the sections and the import
//! table, read with `object`, and the PE checksum, which `object` does not compute.

use std::fmt;

use object::pe::{ImageNtHeaders64, IMAGE_SCN_MEM_EXECUTE};
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, Import as ObjectImport, PeFile64};
use object::{FileKind, LittleEndian as LE};

/// Where the optional header's `CheckSum` is, from the optional header's start.
const CHECKSUM_OFFSET: usize = 64;

/// A parsed PE32+ image.
#[derive(Debug)]
pub struct Image {
    /// COFF `Machine`.
    pub machine: u16,
    /// COFF `Characteristics`.
    pub characteristics: u16,
    /// Optional header `Magic`.
    pub magic: u16,
    /// `ImageBase`: the address the RVAs count from when the image loads where it prefers.
    pub image_base: u64,
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

impl From<object::Error> for Error {
    fn from(e: object::Error) -> Error {
        Error(e.to_string())
    }
}

/// Parses a PE32+ image, its import table included: a malformed file is an error, never a
/// panic.
pub fn parse(file: &[u8]) -> Result<Image, Error> {
    match FileKind::parse(file)? {
        FileKind::Pe64 => {}
        FileKind::Pe32 => return Err(Error("a PE32 image, not PE32+".to_owned())),
        other => return Err(Error(format!("a {other:?} file, not a PE32+ image"))),
    }
    let pe = PeFile64::parse(file)?;
    let nt = pe.nt_headers();
    let header = nt.file_header();
    let optional = nt.optional_header();
    let sections = pe
        .section_table()
        .iter()
        .map(|s| Section {
            virtual_address: s.virtual_address.get(LE),
            virtual_size: s.virtual_size.get(LE),
            raw_offset: s.pointer_to_raw_data.get(LE),
            raw_size: s.size_of_raw_data.get(LE),
            characteristics: s.characteristics.get(LE),
        })
        .collect();
    let optional_at = pe.dos_header().nt_headers_offset() as usize
        + 4
        + std::mem::size_of::<object::pe::ImageFileHeader>();
    Ok(Image {
        machine: header.machine.get(LE),
        characteristics: header.characteristics.get(LE),
        magic: optional.magic(),
        image_base: optional.image_base(),
        entry_point: optional.address_of_entry_point(),
        checksum: optional.check_sum(),
        computed_checksum: checksum_of(file, optional_at + CHECKSUM_OFFSET),
        subsystem: optional.subsystem(),
        dll_characteristics: optional.dll_characteristics(),
        sections,
        imports: read_imports(&pe)?,
    })
}

fn read_imports(pe: &PeFile64<'_>) -> Result<Vec<Import>, Error> {
    let Some(table) = pe.import_table()? else {
        return Ok(Vec::new());
    };
    let mut imports = Vec::new();
    let mut descriptors = table.descriptors()?;
    while let Some(descriptor) = descriptors.next()? {
        let dll = String::from_utf8_lossy(table.name(descriptor.name.get(LE))?).into_owned();
        // The lookup table, or the address table in images that have none (both hold the same
        // entries before binding).
        let thunks = match descriptor.original_first_thunk.get(LE) {
            0 => descriptor.first_thunk.get(LE),
            lookup => lookup,
        };
        let mut thunks = table.thunks(thunks)?;
        let mut names = Vec::new();
        while let Some(thunk) = thunks.next::<ImageNtHeaders64>()? {
            names.push(match table.import::<ImageNtHeaders64>(thunk)? {
                ObjectImport::Ordinal(ordinal) => format!("#{ordinal}"),
                ObjectImport::Name(_hint, name) => String::from_utf8_lossy(name).into_owned(),
            });
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

    /// The bytes of each executable section with the address they load at (`ImageBase` + RVA),
    /// without the file-alignment padding past the section's virtual size.
    pub fn code<'f>(&self, file: &'f [u8]) -> Vec<(u64, &'f [u8])> {
        self.sections
            .iter()
            .filter(|s| s.characteristics & IMAGE_SCN_MEM_EXECUTE != 0)
            .filter_map(|s| {
                let start = s.raw_offset as usize;
                let len = match s.virtual_size {
                    0 => s.raw_size,
                    size => s.raw_size.min(size),
                } as usize;
                let bytes = file.get(start..start.saturating_add(len))?;
                Some((self.image_base + u64::from(s.virtual_address), bytes))
            })
            .collect()
    }
}

/// `IMAGE_DEBUG_TYPE_EX_DLLCHARACTERISTICS`: a debug directory entry whose data is the
/// extended DLL characteristics (winnt.h; `object` 0.36 has no name for it).
pub const IMAGE_DEBUG_TYPE_EX_DLLCHARACTERISTICS: u32 = 20;
/// `IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT`: the image is compatible with CET shadow stacks
/// (what `/CETCOMPAT` sets).
pub const IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT: u32 = 0x0001;
/// `IMAGE_GUARD_EH_CONTINUATION_TABLE_PRESENT` in the load config's `GuardFlags`.
pub const IMAGE_GUARD_EH_CONTINUATION_TABLE_PRESENT: u32 = 0x0040_0000;
/// Where `GuardEHContinuationTable` (a VA) and `GuardEHContinuationCount` sit in
/// `IMAGE_LOAD_CONFIG_DIRECTORY64`, past the end of `object` 0.36's `ImageLoadConfigDirectory64`.
const GUARD_EH_CONTINUATION_TABLE_AT: usize = 264;
const GUARD_EH_CONTINUATION_COUNT_AT: usize = 272;
/// Where `GuardFlags` sits in `IMAGE_LOAD_CONFIG_DIRECTORY64`.
const GUARD_FLAGS_AT: usize = 144;

/// What an image says about kernel shadow stacks (issue #23).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowStackInfo {
    /// The extended DLL characteristics from the debug directory, if it has such an entry.
    pub ex_dll_characteristics: Option<u32>,
    /// The load config's `Size`, if the image has a load config.
    pub load_config_size: Option<u32>,
    /// The load config's `GuardFlags` (0 without a load config or one too short to hold them).
    pub guard_flags: u32,
    /// The RVAs of the EH continuation table, in table order (empty without a table).
    pub eh_continuation_targets: Vec<u32>,
}

impl ShadowStackInfo {
    /// Whether the image is marked CET-compatible.
    pub fn cet_compat(&self) -> bool {
        self.ex_dll_characteristics
            .is_some_and(|c| c & IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT != 0)
    }

    /// Whether the load config says an EH continuation table is present.
    pub fn has_eh_continuation_table(&self) -> bool {
        self.guard_flags & IMAGE_GUARD_EH_CONTINUATION_TABLE_PRESENT != 0
    }
}

/// Reads the debug directory's extended DLL characteristics and the load config's EH
/// continuation table. The table's entries are `4 + n` bytes, an RVA and `n` bytes of flags, `n`
/// from `GuardFlags`' `IMAGE_GUARD_CF_FUNCTION_TABLE_SIZE_MASK` (lld writes one flag byte).
pub fn shadow_stack_info(file: &[u8]) -> Result<ShadowStackInfo, Error> {
    use object::pe::{
        ImageDebugDirectory, IMAGE_DIRECTORY_ENTRY_DEBUG, IMAGE_DIRECTORY_ENTRY_LOAD_CONFIG,
        IMAGE_GUARD_CF_FUNCTION_TABLE_SIZE_MASK, IMAGE_GUARD_CF_FUNCTION_TABLE_SIZE_SHIFT,
    };
    let pe = PeFile64::parse(file)?;
    let sections = pe.section_table();
    let image_base = pe.nt_headers().optional_header().image_base();
    let bytes_at = |rva: u32, len: usize| -> Result<&[u8], Error> {
        sections
            .pe_data_at(file, rva)
            .and_then(|data| data.get(..len))
            .ok_or_else(|| Error(format!("{len} bytes at RVA {rva:#x} are not in the file")))
    };
    let u32_at = |bytes: &[u8], at: usize| {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    };
    let u64_at = |bytes: &[u8], at: usize| {
        u64::from(u32_at(bytes, at)) | u64::from(u32_at(bytes, at + 4)) << 32
    };

    let mut ex_dll_characteristics = None;
    if let Some(dir) = pe.data_directory(IMAGE_DIRECTORY_ENTRY_DEBUG) {
        let entry_len = std::mem::size_of::<ImageDebugDirectory>();
        let entries = bytes_at(dir.virtual_address.get(LE), dir.size.get(LE) as usize)?;
        for entry in entries.chunks_exact(entry_len) {
            // Type at 12, SizeOfData at 16, AddressOfRawData at 20.
            if u32_at(entry, 12) == IMAGE_DEBUG_TYPE_EX_DLLCHARACTERISTICS && u32_at(entry, 16) >= 4
            {
                ex_dll_characteristics = Some(u32_at(bytes_at(u32_at(entry, 20), 4)?, 0));
            }
        }
    }

    let mut info = ShadowStackInfo {
        ex_dll_characteristics,
        load_config_size: None,
        guard_flags: 0,
        eh_continuation_targets: Vec::new(),
    };
    let Some(dir) = pe.data_directory(IMAGE_DIRECTORY_ENTRY_LOAD_CONFIG) else {
        return Ok(info);
    };
    let at = dir.virtual_address.get(LE);
    let size = u32_at(bytes_at(at, 4)?, 0);
    info.load_config_size = Some(size);
    let config = bytes_at(at, size as usize)?;
    if config.len() >= GUARD_FLAGS_AT + 4 {
        info.guard_flags = u32_at(config, GUARD_FLAGS_AT);
    }
    if config.len() < GUARD_EH_CONTINUATION_COUNT_AT + 8 {
        return Ok(info);
    }
    let table = u64_at(config, GUARD_EH_CONTINUATION_TABLE_AT);
    let count = u64_at(config, GUARD_EH_CONTINUATION_COUNT_AT);
    if table == 0 || count == 0 {
        return Ok(info);
    }
    let stride = 4
        + ((info.guard_flags & IMAGE_GUARD_CF_FUNCTION_TABLE_SIZE_MASK)
            >> IMAGE_GUARD_CF_FUNCTION_TABLE_SIZE_SHIFT) as usize;
    let rva = table
        .checked_sub(image_base)
        .and_then(|rva| u32::try_from(rva).ok())
        .ok_or_else(|| {
            Error(format!(
                "EH continuation table at {table:#x} is below the image"
            ))
        })?;
    let len = usize::try_from(count)
        .ok()
        .and_then(|count| count.checked_mul(stride))
        .ok_or_else(|| Error(format!("EH continuation count {count} is absurd")))?;
    let entries = bytes_at(rva, len)?;
    info.eh_continuation_targets = entries.chunks_exact(stride).map(|e| u32_at(e, 0)).collect();
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::pe::{
        IMAGE_FILE_DLL, IMAGE_FILE_MACHINE_AMD64, IMAGE_NT_OPTIONAL_HDR64_MAGIC,
        IMAGE_SUBSYSTEM_NATIVE,
    };

    /// Builds a small PE32+ driver image: headers, one code section holding `code` at RVA
    /// 0x1000, one data section at RVA 0x2000 holding an import table for `imports`.
    fn image(code: &[u8], imports: &[(&str, &[&str])]) -> Vec<u8> {
        let mut file = vec![0u8; 0x600];
        file[..2].copy_from_slice(b"MZ");
        file[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        file[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        put16(&mut file, coff, IMAGE_FILE_MACHINE_AMD64);
        put16(&mut file, coff + 2, 2);
        put16(&mut file, coff + 16, 240);
        put16(&mut file, coff + 18, 0x22);
        let opt = coff + 20;
        put16(&mut file, opt, IMAGE_NT_OPTIONAL_HDR64_MAGIC);
        put32(&mut file, opt + 16, 0x1010);
        file[opt + 24..opt + 32].copy_from_slice(&0x1_4000_0000u64.to_le_bytes());
        put16(&mut file, opt + 68, IMAGE_SUBSYSTEM_NATIVE);
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
        assert_eq!(pe.machine, IMAGE_FILE_MACHINE_AMD64);
        assert_eq!(pe.magic, IMAGE_NT_OPTIONAL_HDR64_MAGIC);
        assert_eq!(pe.subsystem, IMAGE_SUBSYSTEM_NATIVE);
        assert_eq!(pe.characteristics & IMAGE_FILE_DLL, 0);
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
    fn code_is_the_executable_sections_at_their_load_address() {
        let file = image(&[0x90, 0xc3], &[]);
        let pe = parse(&file).unwrap();
        assert_eq!(pe.image_base, 0x1_4000_0000);
        let code = pe.code(&file);
        assert_eq!(code.len(), 1, "only .text is executable");
        assert_eq!(code[0].0, 0x1_4000_1000);
        assert_eq!(code[0].1.len(), 0x200);
        assert_eq!(code[0].1[..2], [0x90, 0xc3]);
    }
}
