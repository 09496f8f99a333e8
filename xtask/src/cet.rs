//! The kernel shadow stack checks of `cargo xtask driver --check` (issue #23): the x64 driver is
//! marked CET-compatible, has a load config with an EH continuation table, and that table lists
//! the RVA of every landing label of mmsecure-sys's guard, where `RtlUnwindEx` resumes after a
//! caught exception. Why each matters: `docs/exceptions.md`, "Kernel shadow stacks".

use crate::driver::{map_symbol_rva, Checks};
use crate::pe::{shadow_stack_info, ShadowStackInfo};

/// mmsecure-sys's landing labels (`mmsecure-sys/src/seh.rs`): never return addresses, so under
/// shadow stacks only the EH continuation table can vouch for them.
pub const LANDINGS: &[&str] = &[
    "mmsecure_sys_copy_guarded_landing",
    "mmsecure_sys_call_guarded_landing",
];

/// What the load config check is called: it depends on the driver's source (a
/// `_load_config_used`), not on the linker options.
pub const LOAD_CONFIG_CHECK: &str = "a load config that reaches GuardEHContinuationCount";

/// Checks `file` (with its link map `map`) and records each result on `checks`.
pub fn check(file: &[u8], map: &str, checks: &mut Checks) {
    let info = match shadow_stack_info(file) {
        Ok(info) => info,
        Err(e) => {
            checks.record(
                false,
                "debug directory and load config readable",
                e.to_string(),
            );
            return;
        }
    };
    for (ok, what, detail) in verdicts(&info, map) {
        checks.record(ok, &what, detail);
    }
}

/// The checks' results for an image described by `info` whose link map is `map`: (passed, what
/// was checked, what was found).
pub fn verdicts(info: &ShadowStackInfo, map: &str) -> Vec<(bool, String, String)> {
    let mut out = vec![
        (
            info.cet_compat(),
            "CET-compatible (IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT in the debug directory's \
             extended DLL characteristics: /cetcompat)"
                .to_owned(),
            format!(
                "extended DLL characteristics {:x?}",
                info.ex_dll_characteristics
            ),
        ),
        (
            info.load_config_size.is_some_and(|size| size >= 280),
            format!("{LOAD_CONFIG_CHECK} (Size >= 280)"),
            format!("Size {:?}", info.load_config_size),
        ),
        (
            info.has_eh_continuation_table(),
            "an EH continuation table (IMAGE_GUARD_EH_CONTINUATION_TABLE_PRESENT in GuardFlags: \
             /guard:ehcont)"
                .to_owned(),
            format!(
                "GuardFlags {:#010x}, {} entries",
                info.guard_flags,
                info.eh_continuation_targets.len()
            ),
        ),
    ];
    for landing in LANDINGS {
        let rva = map_symbol_rva(map, landing);
        let listed = rva.is_some_and(|rva| info.eh_continuation_targets.contains(&rva));
        out.push((
            listed,
            format!("{landing} is a valid EH continuation target (its RVA is in the table)"),
            format!(
                "{landing} at {rva:x?} in the link map; table {:x?}",
                info.eh_continuation_targets
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pe::{
        IMAGE_DEBUG_TYPE_EX_DLLCHARACTERISTICS, IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT,
        IMAGE_GUARD_EH_CONTINUATION_TABLE_PRESENT,
    };
    use object::pe::{IMAGE_FILE_MACHINE_AMD64, IMAGE_NT_OPTIONAL_HDR64_MAGIC};

    const BASE: u64 = 0x1_4000_0000;
    const COPY_LANDING: u32 = 0x1234;
    const CALL_LANDING: u32 = 0x1300;

    fn map() -> String {
        format!(
            " Preferred load address is {BASE:016x}\n\n 0001:00000234       \
             mmsecure_sys_copy_guarded_landing  {:016x}     lib:obj.o\n 0001:00000300       \
             mmsecure_sys_call_guarded_landing  {:016x}     lib:obj.o\n",
            BASE + u64::from(COPY_LANDING),
            BASE + u64::from(CALL_LANDING)
        )
    }

    fn put(file: &mut [u8], at: usize, bytes: &[u8]) {
        file[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// What goes into a synthetic image, as lld-link would write it with (or without) the
    /// options.
    struct Options {
        cet_compat: bool,
        load_config: bool,
        table_flag: bool,
        targets: Vec<u32>,
    }

    impl Options {
        fn linked_with_both() -> Options {
            Options {
                cet_compat: true,
                load_config: true,
                table_flag: true,
                targets: vec![COPY_LANDING, CALL_LANDING],
            }
        }
    }

    /// A PE32+ image with one data section at RVA 0x2000 (file offset 0x200) holding a debug
    /// directory entry and its data, a 320-byte load config and the EH continuation table (5-byte
    /// entries, as lld writes them).
    fn image(options: &Options) -> Vec<u8> {
        let mut file = vec![0u8; 0x600];
        put(&mut file, 0, b"MZ");
        put(&mut file, 0x3c, &0x80u32.to_le_bytes());
        put(&mut file, 0x80, b"PE\0\0");
        let coff = 0x84;
        put(&mut file, coff, &IMAGE_FILE_MACHINE_AMD64.to_le_bytes());
        put(&mut file, coff + 2, &1u16.to_le_bytes());
        put(&mut file, coff + 16, &240u16.to_le_bytes());
        put(&mut file, coff + 18, &0x22u16.to_le_bytes());
        let opt = coff + 20;
        put(&mut file, opt, &IMAGE_NT_OPTIONAL_HDR64_MAGIC.to_le_bytes());
        put(&mut file, opt + 24, &BASE.to_le_bytes());
        put(&mut file, opt + 32, &0x1000u32.to_le_bytes());
        put(&mut file, opt + 36, &0x200u32.to_le_bytes());
        put(&mut file, opt + 56, &0x3000u32.to_le_bytes());
        put(&mut file, opt + 60, &0x200u32.to_le_bytes());
        put(&mut file, opt + 108, &16u32.to_le_bytes());
        let dirs = opt + 112;
        let section = opt + 240;
        put(&mut file, section, b".rdata");
        put(&mut file, section + 8, &0x400u32.to_le_bytes());
        put(&mut file, section + 12, &0x2000u32.to_le_bytes());
        put(&mut file, section + 16, &0x400u32.to_le_bytes());
        put(&mut file, section + 20, &0x200u32.to_le_bytes());
        put(&mut file, section + 36, &0x4000_0040u32.to_le_bytes());

        // The debug directory at RVA 0x2000: one entry, its data at 0x2020.
        if options.cet_compat {
            put(&mut file, dirs + 6 * 8, &0x2000u32.to_le_bytes());
            put(&mut file, dirs + 6 * 8 + 4, &28u32.to_le_bytes());
            let entry = 0x200;
            put(
                &mut file,
                entry + 12,
                &IMAGE_DEBUG_TYPE_EX_DLLCHARACTERISTICS.to_le_bytes(),
            );
            put(&mut file, entry + 16, &4u32.to_le_bytes());
            put(&mut file, entry + 20, &0x2020u32.to_le_bytes());
            put(&mut file, entry + 24, &0x220u32.to_le_bytes());
            put(
                &mut file,
                0x220,
                &IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT.to_le_bytes(),
            );
        }
        // The load config at RVA 0x2040, the table at 0x2200.
        if options.load_config {
            put(&mut file, dirs + 10 * 8, &0x2040u32.to_le_bytes());
            put(&mut file, dirs + 10 * 8 + 4, &320u32.to_le_bytes());
            let config = 0x240;
            put(&mut file, config, &320u32.to_le_bytes());
            let mut flags = 0x1000_0500; // CF instrumented, function table, 1 flag byte per entry
            if options.table_flag {
                flags |= IMAGE_GUARD_EH_CONTINUATION_TABLE_PRESENT;
            }
            put(&mut file, config + 144, &flags.to_le_bytes());
            if !options.targets.is_empty() {
                put(&mut file, config + 264, &(BASE + 0x2200).to_le_bytes());
                let count = options.targets.len() as u64;
                put(&mut file, config + 272, &count.to_le_bytes());
            }
            for (i, rva) in options.targets.iter().enumerate() {
                put(&mut file, 0x400 + 5 * i, &rva.to_le_bytes());
            }
        }
        file
    }

    fn failed(options: &Options) -> Vec<String> {
        let info = shadow_stack_info(&image(options)).unwrap();
        verdicts(&info, &map())
            .into_iter()
            .filter(|(ok, _, _)| !ok)
            .map(|(_, what, _)| what)
            .collect()
    }

    #[test]
    fn an_image_linked_with_cetcompat_and_ehcont_passes() {
        let info = shadow_stack_info(&image(&Options::linked_with_both())).unwrap();
        assert!(info.cet_compat());
        assert_eq!(info.eh_continuation_targets, [COPY_LANDING, CALL_LANDING]);
        assert_eq!(failed(&Options::linked_with_both()), Vec::<String>::new());
    }

    #[test]
    fn an_image_linked_without_either_fails_every_check() {
        let plain = Options {
            cet_compat: false,
            load_config: false,
            table_flag: false,
            targets: Vec::new(),
        };
        assert_eq!(failed(&plain).len(), 3 + LANDINGS.len());
    }

    #[test]
    fn each_missing_piece_fails_its_own_check() {
        let no_cet = Options {
            cet_compat: false,
            ..Options::linked_with_both()
        };
        assert_eq!(failed(&no_cet).len(), 1);
        assert!(failed(&no_cet)[0].starts_with("CET-compatible"));

        // A load config without /guard:ehcont: no flag, no table.
        let no_table = Options {
            table_flag: false,
            targets: Vec::new(),
            ..Options::linked_with_both()
        };
        assert_eq!(failed(&no_table).len(), 1 + LANDINGS.len());

        // A table that lacks one label (the guard's objects were not marked, say).
        let one_missing = Options {
            targets: vec![COPY_LANDING],
            ..Options::linked_with_both()
        };
        let failures = failed(&one_missing);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].starts_with("mmsecure_sys_call_guarded_landing"));
    }

    #[test]
    fn a_table_that_points_outside_the_file_is_an_error_not_a_panic() {
        let mut file = image(&Options::linked_with_both());
        put(&mut file, 0x240 + 272, &0x10_0000u64.to_le_bytes());
        assert!(shadow_stack_info(&file).is_err());
        assert!(shadow_stack_info(&file[..0x100]).is_err());
    }
}
