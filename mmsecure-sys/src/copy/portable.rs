//! Architectures without a hand-written copy (and Miri, which cannot run assembly): relaxed
//! atomic word and byte copies.
//!
//! Why atomics and not volatile accesses: the host model's own user-mode writes are relaxed
//! atomic stores (`host/memory.rs`), and Rust counts a volatile access as non-atomic, so a
//! volatile copy racing such a write is a data race, undefined behaviour. Relaxed atomic loads
//! and stores cost what plain ones do on every architecture Rust supports (no fence, no lock
//! prefix; `ldr`/`str` on aarch64), and they race with the model's stores without undefined
//! behaviour.
//!
//! Why this partitioning: overlapping atomic accesses of different sizes that race are not
//! allowed either (Miri reports them). So the source is read in exactly the units the model
//! stores in (`for_each_unit` there): a word at each word-aligned address whose whole word is in
//! the range, single bytes elsewhere. The destination gets a word where the same step is
//! word-aligned there too, bytes otherwise. A concurrent model write that covers only part of a
//! word the copy reads whole (a write ending mid-word inside the copy's range) still mixes sizes;
//! the tests' writers write whole buffers, and real user writes come from another process,
//! outside the driver's abstract machine.

use core::mem::size_of;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

const WORD: usize = size_of::<usize>();

/// Copies `len` bytes from `src` to `dst` with relaxed atomic loads and stores: a word at a time
/// at word-aligned source addresses, a byte at a time elsewhere.
///
/// # Safety
///
/// `src` must be valid for `len` bytes of reads and `dst` for `len` bytes of writes, and the two
/// ranges must not overlap. Either may be written by another party (user mode) at the same time,
/// with atomic or foreign (non-Rust) stores.
#[inline]
pub(crate) unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) {
    let mut done = 0;
    while done < len {
        let from = src.wrapping_add(done);
        let to = dst.wrapping_add(done);
        if from as usize % WORD == 0 && len - done >= WORD {
            // SAFETY: `done + WORD <= len`, inside the source range the caller vouches for, and
            // word-aligned; AtomicUsize has usize's size and alignment; every Rust access to
            // memory others may write is atomic, so a shared reference to an atomic is sound.
            let word = unsafe { &*from.cast::<AtomicUsize>() }.load(Ordering::Relaxed);
            if to as usize % WORD == 0 {
                // SAFETY: as for the load, in the destination range, which is aligned here too.
                unsafe { &*to.cast::<AtomicUsize>() }.store(word, Ordering::Relaxed);
            } else {
                for (at, byte) in word.to_ne_bytes().into_iter().enumerate() {
                    // SAFETY: `done + at < len`, inside the destination range.
                    unsafe { store_byte(to.wrapping_add(at), byte) };
                }
            }
            done += WORD;
        } else {
            // SAFETY: `done < len`, inside both ranges the caller vouches for.
            let byte = unsafe { &*from.cast::<AtomicU8>() }.load(Ordering::Relaxed);
            // SAFETY: as for the load.
            unsafe { store_byte(to, byte) };
            done += 1;
        }
    }
}

/// Stores one byte with a relaxed atomic store.
///
/// # Safety
///
/// `at` must be valid for a one-byte write.
#[inline(always)]
unsafe fn store_byte(at: *mut u8, byte: u8) {
    // SAFETY: the caller vouches for the address; AtomicU8 has u8's layout.
    unsafe { &*at.cast::<AtomicU8>() }.store(byte, Ordering::Relaxed);
}
