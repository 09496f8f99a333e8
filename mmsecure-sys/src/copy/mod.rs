//! The copy primitive under [`copy_guarded`](crate::copy_guarded): copies between user memory
//! and the driver's own memory, without an exception guard.
//!
//! The user can write the bytes of a secured range at any moment: a secure promises nothing about
//! content. A copy that the compiler can see (`core::ptr::copy_nonoverlapping`, or a loop of
//! plain loads) racing such a write is a data race, which is undefined behaviour in Rust's memory
//! model even though the hardware would do something harmless; the compiler may also assume the
//! source does not change during the copy and, say, read a byte twice. So the copy is one the
//! compiler cannot see into: on x86_64, a single `rep movsb` in assembly (as the Linux kernel
//! copies from user space), which also runs at memory-copy speed on every x86_64 since Ivy Bridge
//! (ERMSB). Other architectures (and Miri) get byte-wise relaxed atomic copies, which race the
//! host model's atomic user stores without undefined behaviour (see `portable.rs`). Either way the result is some mixture of old and new bytes when the user writes during
//! the copy: copy once, then validate the copy.
//!
//! It lives in this crate, not in `mmsecure`, because the host model builds its guarded copy on
//! it. On Windows the guarded copy is its own assembly function with unwind information: on
//! x86_64 the same `rep movsb` (`seh.rs`), on ARM64 an `ldp`/`stp` loop (`seh_aarch64.rs`),
//! where this unguarded copy is the portable volatile one.

// Miri cannot run inline assembly: under `cargo miri test` the portable copy stands in for
// `rep movsb` on x86_64 too, so that Miri checks the copy other hosts run (docs/reliability.md).
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[path = "x86_64.rs"]
mod imp;

#[cfg(any(not(target_arch = "x86_64"), miri))]
#[path = "portable.rs"]
mod imp;

/// Copies `len` bytes from `src` to `dst` with no exception guard: one `rep movsb` on x86_64,
/// relaxed atomic byte copies elsewhere. A fault during the copy is not caught (a bug check in a
/// kernel, a crash on the host): use [`copy_guarded`](crate::copy_guarded) on user memory. This is
/// what the guarded copy costs are measured against.
///
/// ```
/// let src = *b"secured";
/// let mut dst = [0u8; 7];
/// // SAFETY: both are local arrays of 7 bytes, valid and disjoint.
/// unsafe { mmsecure_sys::copy_unguarded(dst.as_mut_ptr(), src.as_ptr(), 7) };
/// assert_eq!(&dst, b"secured");
/// ```
///
/// # Safety
///
/// `src` must be valid for `len` bytes of reads and `dst` for `len` bytes of writes, and the two
/// ranges must not overlap. Either may be written by another party (user mode) at the same time.
#[inline]
pub unsafe fn copy_unguarded(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's contract is the primitive's.
    unsafe { imp::copy_bytes(dst, src, len) }
}

// The portable copy is what non-x86_64 targets run; test it here too.
#[cfg(all(test, target_arch = "x86_64", not(miri)))]
#[path = "portable.rs"]
mod portable;

#[cfg(test)]
mod tests {
    /// Copies `src` into a zeroed buffer through `copy` at every offset pair and length up to 40,
    /// and checks the bytes landed where they belong and nowhere else.
    fn check_copy(copy: unsafe fn(*mut u8, *const u8, usize)) {
        let src: [u8; 64] = core::array::from_fn(|i| i as u8 + 1);
        for src_off in 0..9 {
            for dst_off in 0..9 {
                for len in 0..40 {
                    let mut dst = [0u8; 64];
                    // SAFETY: offsets + len stay within both 64-byte arrays; they are distinct.
                    unsafe {
                        copy(
                            dst.as_mut_ptr().wrapping_add(dst_off),
                            src.as_ptr().wrapping_add(src_off),
                            len,
                        )
                    };
                    assert_eq!(&dst[dst_off..dst_off + len], &src[src_off..src_off + len]);
                    assert!(dst[..dst_off].iter().all(|b| *b == 0));
                    assert!(dst[dst_off + len..].iter().all(|b| *b == 0));
                }
            }
        }
    }

    #[test]
    fn copy_moves_exactly_the_asked_bytes() {
        check_copy(super::copy_unguarded);
    }

    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[test]
    fn portable_copy_moves_exactly_the_asked_bytes() {
        check_copy(super::portable::copy_bytes);
    }

    /// Runs `copy` over user memory while a user thread writes 5 bytes at an unaligned offset
    /// inside the copied words, over and over (issue #22: the portable copy loaded whole words,
    /// which such a write covers only partly, a mixed-size race Miri reports). Every byte the
    /// copy returns is one the user wrote there or the one before: 0, 0xA5 or 0x5A. Miri runs it
    /// (`.ci/run`'s `miri` step selects `copy::`); elsewhere it checks the bytes only.
    #[cfg(mmsecure_host)]
    fn race_unaligned_user_write(copy: unsafe fn(*mut u8, *const u8, usize)) {
        use crate::host::{Process, PAGE_READWRITE, PAGE_SIZE};

        let process = Process::new();
        let buffer = process.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap();
        let rounds = if cfg!(miri) { 20 } else { 2000 };
        let writer = {
            let process = process.clone();
            let at = buffer.wrapping_add(3) as usize;
            std::thread::spawn(move || {
                for round in 0..rounds {
                    let byte = if round % 2 == 0 { 0xA5 } else { 0x5A };
                    process.write(at as *const u8, &[byte; 5]).unwrap();
                }
            })
        };
        for _ in 0..rounds {
            let mut out = [0u8; 16];
            // SAFETY: the buffer is a live committed page of model memory, 16 bytes of it are
            // read; `out` is a local array; the user's writes are byte atomics.
            unsafe { copy(out.as_mut_ptr(), buffer, 16) };
            assert!(
                out.iter().all(|b| matches!(*b, 0 | 0xA5 | 0x5A)),
                "{out:x?}"
            );
            assert!(
                out[..3].iter().chain(&out[8..]).all(|b| *b == 0),
                "{out:x?}"
            );
        }
        writer.join().unwrap();
    }

    #[cfg(mmsecure_host)]
    #[test]
    fn copy_races_an_unaligned_user_write_without_ub() {
        race_unaligned_user_write(super::copy_unguarded);
    }

    #[cfg(all(mmsecure_host, target_arch = "x86_64", not(miri)))]
    #[test]
    fn portable_copy_races_an_unaligned_user_write() {
        race_unaligned_user_write(super::portable::copy_bytes);
    }
}
