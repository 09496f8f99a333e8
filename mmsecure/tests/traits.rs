//! What the types are, checked at compile time and by size.

use core::mem::size_of;
use mmsecure::{
    Error, FromRawError, ProbeMode, ProcessRef, RawRegion, Reader, SecureFlags, SecureRegion,
    SliceHold, UserSlice, Writer,
};
use static_assertions::{assert_impl_all, assert_not_impl_any};

// A secure is tied to its process context, and is owned once.
assert_not_impl_any!(SecureRegion: Send, Sync, Clone, Copy);
// Taken apart, it may travel with an IRP, but is still owned once: never copied, so never
// rebuilt (and unsecured) twice.
assert_impl_all!(RawRegion: Send, Sync);
assert_not_impl_any!(RawRegion: Clone, Copy);
assert_impl_all!(FromRawError: Send, Sync, core::fmt::Display);
// A counted reference on a process object: any thread may hold and drop it. Taking one can
// fail (above DISPATCH_LEVEL), so it is `try_clone`, not `Clone`.
assert_impl_all!(ProcessRef: Send, Sync, Eq, core::fmt::Debug);
assert_not_impl_any!(ProcessRef: Clone, Copy);
// A slice and its cursors hold a reference on the process they were made in and copy only in
// its context: tied to the thread, never duplicated but through `clone_reader`.
assert_not_impl_any!(UserSlice: Send, Sync, Clone, Copy);
assert_not_impl_any!(SliceHold: Send, Sync, Clone, Copy);
assert_not_impl_any!(Reader<'static, SliceHold>: Send, Sync, Clone, Copy);
assert_not_impl_any!(Writer<'static, SliceHold>: Send, Sync, Clone, Copy);
assert_not_impl_any!(Reader<'static>: Send, Sync, Clone, Copy);
assert_not_impl_any!(Writer<'static>: Send, Sync, Clone, Copy);
assert_impl_all!(Error: Send, Sync, Copy, Eq, core::fmt::Display);
assert_impl_all!(ProbeMode: Send, Sync, Copy, Eq);
assert_impl_all!(SecureFlags: Send, Sync, Copy, Eq);

#[test]
fn secure_region_is_five_words_and_option_costs_nothing() {
    // handle, address, len, mode (padded to a word) and the securing process.
    assert_eq!(size_of::<SecureRegion>(), 5 * size_of::<usize>());
    assert_eq!(size_of::<Option<SecureRegion>>(), size_of::<SecureRegion>());
    // The handle's niche holds the error's tag too: a constructor returns five words.
    assert_eq!(
        size_of::<Result<SecureRegion, mmsecure::Error>>(),
        size_of::<SecureRegion>()
    );
}

#[test]
fn raw_region_is_as_small_as_the_region() {
    assert_eq!(size_of::<RawRegion>(), size_of::<SecureRegion>());
    assert_eq!(size_of::<Option<RawRegion>>(), size_of::<RawRegion>());
}

#[test]
fn raw_representations_are_the_headers() {
    assert_eq!(size_of::<ProbeMode>(), 4);
    assert_eq!(size_of::<SecureFlags>(), 4);
    assert_eq!(ProbeMode::ReadOnly as u32, mmsecure_sys::PAGE_READONLY);
    assert_eq!(ProbeMode::ReadWrite as u32, mmsecure_sys::PAGE_READWRITE);
}
