//! `capture_unicode_string` (issue #20): the structure read once, its copy checked, `Buffer`
//! probed aligned to 2, `Length` bytes copied once; both layouts, the 32-bit one in memory a
//! 32-bit process can name; a hostile user changing the structure after the read.

use mmsecure::host::{Process, PAGE_READWRITE};
use mmsecure::{capture_unicode_string, highest_user_address, Error, UserAbi};

fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_ne_bytes).collect()
}

fn native(length: u16, maximum: u16, buffer: usize) -> [u8; 16] {
    let mut raw = [0u8; 16];
    raw[0..2].copy_from_slice(&length.to_ne_bytes());
    raw[2..4].copy_from_slice(&maximum.to_ne_bytes());
    raw[8..16].copy_from_slice(&(buffer as u64).to_ne_bytes());
    raw
}

fn wow64(length: u16, maximum: u16, buffer: u32) -> [u8; 8] {
    let mut raw = [0u8; 8];
    raw[0..2].copy_from_slice(&length.to_ne_bytes());
    raw[2..4].copy_from_slice(&maximum.to_ne_bytes());
    raw[4..8].copy_from_slice(&buffer.to_ne_bytes());
    raw
}

fn app() -> (Process, *mut u8, mmsecure::host::Attach) {
    let process = Process::new();
    let attach = process.attach();
    let page = process.allocate(4096, PAGE_READWRITE).unwrap();
    (process, page, attach)
}

#[test]
fn captures_a_native_string_with_each_check() {
    let (process, page, _in) = app();
    let text = page.wrapping_add(256);
    process.write(text, &utf16("volume")).unwrap();
    let mut out = [0u16; 16];
    /// `Length`, `MaximumLength`, `Buffer`, and what the capture gives.
    type Case<'a> = (u16, u16, usize, Result<&'a [u16], Error>);
    let cases: [Case; 6] = [
        (
            12,
            12,
            text as usize,
            Ok(&[0x76, 0x6F, 0x6C, 0x75, 0x6D, 0x65][..]),
        ),
        (11, 12, text as usize, Err(Error::BadUnicodeString)),
        (14, 12, text as usize, Err(Error::BadUnicodeString)),
        (
            12,
            12,
            text as usize + 1,
            Err(Error::Misaligned { align: 2 }),
        ),
        (12, 12, highest_user_address() - 3, Err(Error::NotUserRange)),
        (12, 12, 0, Err(Error::NullAddress)),
    ];
    for (length, maximum, buffer, expected) in cases {
        process
            .write(page, &native(length, maximum, buffer))
            .unwrap();
        let got = capture_unicode_string(page, UserAbi::Native, &mut out).map(|s| s.to_vec());
        assert_eq!(
            got,
            expected.map(|s| s.to_vec()),
            "Length {length}, Buffer {buffer:#x}"
        );
    }
    // Longer than the driver's buffer; empty, with no Buffer at all.
    process.write(page, &native(12, 12, text as usize)).unwrap();
    let got = capture_unicode_string(page, UserAbi::Native, &mut out[..5]);
    assert_eq!(got, Err(Error::StringTooLong(6)));
    process.write(page, &native(0, 0, 0)).unwrap();
    assert_eq!(
        capture_unicode_string(page, UserAbi::Native, &mut out),
        Ok(&[][..])
    );
}

#[test]
fn a_wow64_string_is_read_with_the_32_bit_layout() {
    let process = Process::new();
    let _in = process.attach();
    let low = match process.allocate_32bit(4096, PAGE_READWRITE) {
        Ok(low) => low,
        // The model maps below 4 GiB on x86_64 Linux only (MAP_32BIT).
        Err(_) if !cfg!(all(target_os = "linux", target_arch = "x86_64")) => return,
        Err(status) => panic!("allocate_32bit: {status:?}"),
    };
    assert!((low as usize) < 1 << 32);
    let text = low.wrapping_add(64);
    process.write(text, &utf16("x86")).unwrap();
    process.write(low, &wow64(6, 6, text as u32)).unwrap();
    let mut out = [0u16; 8];
    let got = capture_unicode_string(low, UserAbi::Wow64, &mut out).unwrap();
    assert_eq!(String::from_utf16(got).unwrap(), "x86");
    // Read with the 64-bit layout, the same bytes name another Buffer: the ABI matters.
    assert_ne!(
        capture_unicode_string(low, UserAbi::Native, &mut out).map(|s| s.to_vec()),
        Ok(utf16_units("x86"))
    );
}

fn utf16_units(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

#[test]
fn the_capture_reads_once_and_uses_its_copy_when_the_user_changes_the_structure() {
    let (process, page, _in) = app();
    let text = page.wrapping_add(512);
    process.write(text, &utf16("short")).unwrap();
    process.write(page, &native(10, 64, text as usize)).unwrap();
    let request = process.begin_request();
    let mut out = [0u16; 32];
    let got = capture_unicode_string(page, UserAbi::Native, &mut out)
        .unwrap()
        .to_vec();
    // The hostile user now grows Length and moves Buffer into kernel space: too late, the
    // capture used its own copy of both.
    process
        .write(page, &native(64, 64, 0xFFFF_8000_0000_0000))
        .unwrap();
    assert_eq!(got, utf16_units("short"));
    drop(request);
    assert!(
        process.double_fetches().is_empty(),
        "each byte was read once"
    );

    // A naive capture reads Length to check it and again to use it: the detector reports it.
    let request = process.begin_request();
    let _checked: u16 = mmsecure::read_user(page).unwrap();
    let _again: [u8; 16] = mmsecure::read_user(page).unwrap();
    drop(request);
    assert_eq!(process.double_fetches().len(), 1);
}

#[cfg(feature = "alloc")]
#[test]
fn the_vec_form_checks_the_maximum_before_it_allocates() {
    let (process, page, _in) = app();
    let text = page.wrapping_add(128);
    process.write(text, &utf16("abcd")).unwrap();
    process.write(page, &native(8, 8, text as usize)).unwrap();
    let got = mmsecure::capture_unicode_string_vec(page, UserAbi::Native, 4).unwrap();
    assert_eq!(got, utf16_units("abcd"));
    assert_eq!(
        mmsecure::capture_unicode_string_vec(page, UserAbi::Native, 3),
        Err(Error::StringTooLong(4))
    );
}
