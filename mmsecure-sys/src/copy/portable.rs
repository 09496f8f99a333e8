//! Architectures without a hand-written copy: volatile word and byte copies.

use core::mem::size_of;
use core::ptr;

/// Copies `len` bytes from `src` to `dst` with volatile loads and stores, a word at a time where
/// the source and destination are both word-aligned, a byte at a time elsewhere.
///
/// # Safety
///
/// `src` must be valid for `len` bytes of reads and `dst` for `len` bytes of writes, and the two
/// ranges must not overlap. Either may be written by another party (user mode) at the same time.
#[inline]
pub(crate) unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) {
    const WORD: usize = size_of::<usize>();
    let mut done = 0;
    if (dst as usize) % WORD == (src as usize) % WORD {
        while done < len && (src as usize + done) % WORD != 0 {
            // SAFETY: `done < len`, inside both ranges the caller vouches for.
            unsafe { copy_byte(dst, src, done) };
            done += 1;
        }
        while len - done >= WORD {
            // SAFETY: `done + WORD <= len`, inside both ranges; both addresses are word-aligned
            // because the source is and the two share their offset within a word.
            let word = unsafe { ptr::read_volatile(src.wrapping_add(done).cast::<usize>()) };
            // SAFETY: as for the read above.
            unsafe { ptr::write_volatile(dst.wrapping_add(done).cast::<usize>(), word) };
            done += WORD;
        }
    }
    while done < len {
        // SAFETY: `done < len`, inside both ranges the caller vouches for.
        unsafe { copy_byte(dst, src, done) };
        done += 1;
    }
}

/// Copies the byte at `at`.
///
/// # Safety
///
/// `src + at` must be readable and `dst + at` writable.
#[inline(always)]
unsafe fn copy_byte(dst: *mut u8, src: *const u8, at: usize) {
    // SAFETY: the caller vouches for both addresses.
    let byte = unsafe { ptr::read_volatile(src.wrapping_add(at)) };
    // SAFETY: the caller vouches for both addresses.
    unsafe { ptr::write_volatile(dst.wrapping_add(at), byte) };
}
