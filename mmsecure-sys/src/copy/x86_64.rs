//! x86_64: one `rep movsb`.

/// Copies `len` bytes from `src` to `dst` with `rep movsb`.
///
/// # Safety
///
/// `src` must be valid for `len` bytes of reads and `dst` for `len` bytes of writes, and the two
/// ranges must not overlap. Either may be written by another party (user mode) at the same time.
#[inline]
pub(crate) unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller guarantees both ranges are valid and disjoint. `rep movsb` copies
    // forward because the direction flag is clear at every call boundary (both ABIs require it),
    // touches only rcx, rsi, rdi and memory, and leaves the flags alone.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags),
        );
    }
}
