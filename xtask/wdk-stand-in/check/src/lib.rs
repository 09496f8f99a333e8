//! A driver crate's view of mmsecure-sys with the `wdk-sys` feature on: wdk-sys's values go in
//! and come back out through the conversions, and every item the crate has without the feature
//! is still there, unchanged (Cargo turns a feature on for the whole build, so a crate that never
//! asked for it sees these too).
#![no_std]

use mmsecure_sys::wdk_types::WdkType;

/// The current process as wdk-sys types it, then as mmsecure-sys does, and back.
pub fn current_process() -> (wdk_sys::PEPROCESS, mmsecure_sys::PEPROCESS) {
    // SAFETY: IoGetCurrentProcess has no preconditions.
    let process = unsafe { wdk_sys::ntddk::IoGetCurrentProcess() };
    let ours = mmsecure_sys::PEPROCESS::from_wdk(process);
    assert_eq!(ours.to_wdk(), process);
    (process, ours)
}

/// A wdk-sys `UNICODE_STRING` through mmsecure-sys's, both ways, and its pointer.
pub fn routine_name(name: wdk_sys::UNICODE_STRING) -> mmsecure_sys::UNICODE_STRING {
    let ours: mmsecure_sys::UNICODE_STRING = name.into();
    let back: wdk_sys::UNICODE_STRING = ours.into();
    assert_eq!(back.Buffer, name.Buffer);
    let mut copy = ours;
    let pointer: mmsecure_sys::PUNICODE_STRING = &mut copy;
    let theirs: wdk_sys::PUNICODE_STRING = pointer.to_wdk();
    assert_eq!(mmsecure_sys::PUNICODE_STRING::from_wdk(theirs), pointer);
    ours
}

/// The items the feature used to remove or change, named as a crate that knows nothing of
/// wdk-sys names them: they must be the ones the generated bindings declare.
pub fn generated_items_are_untouched() {
    let _: mmsecure_sys::PWSTR = core::ptr::null_mut::<mmsecure_sys::wchar_t>();
    let _: mmsecure_sys::PEPROCESS = core::ptr::null_mut::<mmsecure_sys::_EPROCESS>();
    let _: *mut mmsecure_sys::_UNICODE_STRING =
        core::ptr::null_mut::<mmsecure_sys::UNICODE_STRING>();
    // The safe crate builds in the same graph and hands out mmsecure-sys's own PEPROCESS.
    let _: fn(&mmsecure::SecureRegion) -> mmsecure_sys::PEPROCESS =
        mmsecure::SecureRegion::eprocess;
}
