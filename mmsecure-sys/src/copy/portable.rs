//! Architectures without a hand-written copy (and Miri, which cannot run assembly): a relaxed
//! atomic byte copy.
//!
//! Why atomics and not volatile accesses: the host model's own user-mode writes are relaxed
//! atomic stores (`host/memory.rs`), and Rust counts a volatile access as non-atomic, so a
//! volatile copy racing such a write is a data race, undefined behaviour. Relaxed atomic loads
//! and stores cost what plain ones do on every architecture Rust supports (no fence, no lock
//! prefix; `ldrb`/`strb` on aarch64), and they race with the model's stores without undefined
//! behaviour.
//!
//! Why bytes: racing atomic accesses of different sizes that overlap are not allowed either
//! (Miri reports them). A copy that loads a word where a user write covers only part of it (an
//! unaligned write, or one ending mid-word) mixes sizes whatever the copy's partitioning, since
//! the copy cannot know where the next user write starts. So both sides use one size, the only
//! one every write can be cut into: the model stores, loads and zeroes user memory one
//! `AtomicU8` at a time, and this copy does the same on both of its sides (issue #22; before,
//! words at aligned addresses, which raced a partial-word user write). The cost is the speed of
//! a byte loop on these targets; x86_64 outside Miri copies with `rep movsb`, and Windows ARM64's
//! guarded copy is its own assembly.

use core::sync::atomic::{AtomicU8, Ordering};

/// Copies `len` bytes from `src` to `dst` with relaxed atomic byte loads and stores, in order.
///
/// # Safety
///
/// `src` must be valid for `len` bytes of reads and `dst` for `len` bytes of writes, and the two
/// ranges must not overlap. Either may be written by another party (user mode) at the same time,
/// with atomic byte stores or foreign (non-Rust) stores.
#[inline]
pub(crate) unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) {
    for at in 0..len {
        // SAFETY: `at < len`, inside the source range the caller vouches for; AtomicU8 has u8's
        // layout; every Rust access to memory others may write is a byte atomic, so a shared
        // reference to an atomic is sound.
        let byte = unsafe { &*src.wrapping_add(at).cast::<AtomicU8>() }.load(Ordering::Relaxed);
        // SAFETY: as for the load, in the destination range.
        unsafe { &*dst.wrapping_add(at).cast::<AtomicU8>() }.store(byte, Ordering::Relaxed);
    }
}
