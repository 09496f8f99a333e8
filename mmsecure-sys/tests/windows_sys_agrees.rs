//! The declarations generated from `ntddk.h` agree with Microsoft's metadata-generated
//! `windows-sys` crate (`Wdk::System::SystemServices`): every constant has the same value and
//! type, every routine the same number of parameters, each of the same size, alignment and
//! register class, and every place where the Rust types differ is one listed here, with the
//! reason. So the header source (mingw-w64, or the WDK) and the published metadata are checked
//! against each other.
//!
//! Signatures are compared as function-pointer *types*, named through closures that are never
//! called: no routine's address is taken, so this test neither calls nor links any of them.
//!
//! Not built for Windows with the `host` feature (`cargo xtask test-windows`): there windows-sys
//! links import stubs named like the routines the model defines, `MmSecureVirtualMemory` and the
//! rest, and GNU ld refuses the duplicates once both objects are pulled in (issue #12's
//! `ObfReferenceObject`/`ObfDereferenceObject` and the model's data export made the model's
//! routines one object that is). The declarations are the same on every target, so the check
//! made on the other hosts covers Windows too.
#![cfg(not(all(windows, feature = "host")))]
//!
//! What windows-sys (0.61) has and we compare: all nine constants (the three IRQL levels by
//! value: they are `KIRQL` here, `u32` there), the statuses, the five routines. What it
//! does not have: the C type names (`HANDLE` and `UNICODE_STRING` aside, it spells `SIZE_T` as
//! `usize`, `ULONG` as `u32`, `KIRQL` as `u8`, and has no `PVOID`), so those are compared through
//! the routines that use them.
//!
//! The ABI strings differ on purpose: bindgen writes `extern "C"` (clang drops `__stdcall`, which
//! is what `NTAPI` means, on 64-bit targets), windows-sys writes `extern "system"`. On x86_64 and
//! aarch64 the two are the same calling convention; on 32-bit x86 they are not, and these
//! bindings, generated for x86_64, would not be right there (this test does not compile there).

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "`extern \"C\"` and `extern \"system\"` are one calling convention only on 64-bit targets"
);

use std::any::{type_name, TypeId};
use std::mem::{align_of, size_of, MaybeUninit};

use mmsecure_sys as sys;
use windows_sys::Wdk::System::SystemServices as meta;
use windows_sys::Win32::Foundation as meta_foundation;

// ---------------------------------------------------------------------------------------------
// Constants

/// Same value and same Rust type.
fn same_constant<T: PartialEq + std::fmt::Debug + 'static>(name: &str, ours: T, theirs: T) {
    assert_eq!(
        ours, theirs,
        "{name}: our header source and the metadata disagree"
    );
}

/// Every status in `mmsecure_sys::status` has the metadata's value and type
/// (`Win32::Foundation`, where windows-sys keeps the NTSTATUS values).
#[test]
fn every_status_has_the_metadata_value_and_type() {
    macro_rules! same_statuses {
        ($($name:ident,)*) => {
            $(same_constant(stringify!($name), sys::status::$name, meta_foundation::$name);)*
        };
    }
    same_statuses! {
        STATUS_SUCCESS,
        STATUS_PENDING,
        STATUS_GUARD_PAGE_VIOLATION,
        STATUS_DATATYPE_MISALIGNMENT,
        STATUS_BUFFER_OVERFLOW,
        STATUS_UNSUCCESSFUL,
        STATUS_ACCESS_VIOLATION,
        STATUS_IN_PAGE_ERROR,
        STATUS_INVALID_PARAMETER,
        STATUS_INVALID_DEVICE_REQUEST,
        STATUS_NO_MEMORY,
        STATUS_CONFLICTING_ADDRESSES,
        STATUS_NOT_MAPPED_VIEW,
        STATUS_UNABLE_TO_DELETE_SECTION,
        STATUS_BUFFER_TOO_SMALL,
        STATUS_NOT_COMMITTED,
        STATUS_INVALID_PAGE_PROTECTION,
        STATUS_INSUFFICIENT_RESOURCES,
        STATUS_FREE_VM_NOT_AT_BASE,
        STATUS_MEMORY_NOT_ALLOCATED,
        STATUS_NOT_SUPPORTED,
        STATUS_INTERNAL_ERROR,
        STATUS_PROCESS_IS_TERMINATING,
        STATUS_CANCELLED,
        STATUS_INVALID_BUFFER_SIZE,
    }
}

#[test]
fn every_constant_has_the_metadata_value_and_type() {
    same_constant("PAGE_READONLY", sys::PAGE_READONLY, meta::PAGE_READONLY);
    same_constant("PAGE_READWRITE", sys::PAGE_READWRITE, meta::PAGE_READWRITE);
    // The one listed difference among the constants: the levels are `KIRQL` here (codegen types
    // them so), `u32` in the metadata, which types every untyped `#define` so.
    let levels: [(&str, sys::KIRQL, u32); 3] = [
        ("PASSIVE_LEVEL", sys::PASSIVE_LEVEL, meta::PASSIVE_LEVEL),
        ("APC_LEVEL", sys::APC_LEVEL, meta::APC_LEVEL),
        ("DISPATCH_LEVEL", sys::DISPATCH_LEVEL, meta::DISPATCH_LEVEL),
    ];
    for (name, ours, theirs) in levels {
        same_constant(name, u32::from(ours), theirs);
    }
    same_constant(
        "MM_SECURE_EXCLUSIVE",
        sys::MM_SECURE_EXCLUSIVE,
        meta::MM_SECURE_EXCLUSIVE,
    );
    same_constant(
        "MM_SECURE_NO_CHANGE",
        sys::MM_SECURE_NO_CHANGE,
        meta::MM_SECURE_NO_CHANGE,
    );
    same_constant(
        "MM_SECURE_USER_MODE_ONLY",
        sys::MM_SECURE_USER_MODE_ONLY,
        meta::MM_SECURE_USER_MODE_ONLY,
    );
    same_constant(
        "MM_SECURE_NO_INHERIT",
        sys::MM_SECURE_NO_INHERIT,
        meta::MM_SECURE_NO_INHERIT,
    );
}

// ---------------------------------------------------------------------------------------------
// Types

#[test]
fn handle_is_the_metadata_handle() {
    assert_eq!(
        TypeId::of::<sys::HANDLE>(),
        TypeId::of::<meta_foundation::HANDLE>()
    );
}

/// The offset of `$field` in the struct `$base` points to, without reading memory.
macro_rules! offset {
    ($base:expr, $field:ident) => {{
        let base = $base;
        // SAFETY: `addr_of!` on a field of a live (if uninitialized) local only computes an
        // address: nothing is read and no reference is made.
        let field = unsafe { std::ptr::addr_of!((*base).$field) };
        field as usize - base as usize
    }};
}

#[test]
fn unicode_string_has_the_metadata_layout() {
    type Ours = sys::UNICODE_STRING;
    type Theirs = meta_foundation::UNICODE_STRING;
    assert_eq!(size_of::<Ours>(), size_of::<Theirs>());
    assert_eq!(align_of::<Ours>(), align_of::<Theirs>());

    let ours = MaybeUninit::<Ours>::uninit();
    let theirs = MaybeUninit::<Theirs>::uninit();
    let (o, t) = (ours.as_ptr(), theirs.as_ptr());
    let ours_offsets = [
        offset!(o, Length),
        offset!(o, MaximumLength),
        offset!(o, Buffer),
    ];
    let theirs_offsets = [
        offset!(t, Length),
        offset!(t, MaximumLength),
        offset!(t, Buffer),
    ];
    assert_eq!(ours_offsets, theirs_offsets);

    // And the fields' types: USHORT is u16, PWSTR/PWCH is *mut u16 on both sides.
    fn field_type<S, F: 'static>(_: fn(&S) -> &F) -> TypeId {
        TypeId::of::<F>()
    }
    assert_eq!(
        field_type::<Ours, _>(|s| &s.Length),
        field_type::<Theirs, _>(|s| &s.Length)
    );
    assert_eq!(
        field_type::<Ours, _>(|s| &s.MaximumLength),
        field_type::<Theirs, _>(|s| &s.MaximumLength)
    );
    assert_eq!(
        field_type::<Ours, _>(|s| &s.Buffer),
        field_type::<Theirs, _>(|s| &s.Buffer)
    );
}

// ---------------------------------------------------------------------------------------------
// Routines

/// How a value crosses a call: the Windows x64 convention (and the System V one the host backend
/// uses) passes every integer and pointer of up to 8 bytes the same way, in an integer register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// No value (`void` return).
    Void,
    /// An integer or a pointer: one integer register (or stack slot).
    Scalar,
}

/// One parameter's or return value's Rust type, as far as the comparison needs it.
#[derive(Clone, Copy, Debug)]
struct Ty {
    name: &'static str,
    id: TypeId,
    size: usize,
    align: usize,
    class: Class,
}

trait Describe: 'static {
    const CLASS: Class;
}
impl Describe for () {
    const CLASS: Class = Class::Void;
}
macro_rules! scalar {
    ($($t:ty),*) => { $(impl Describe for $t { const CLASS: Class = Class::Scalar; })* };
}
scalar!(u8, u16, u32, u64, usize, isize);
impl<T: 'static> Describe for *mut T {
    const CLASS: Class = Class::Scalar;
}
impl<T: 'static> Describe for *const T {
    const CLASS: Class = Class::Scalar;
}

fn ty<T: Describe>() -> Ty {
    Ty {
        name: type_name::<T>(),
        id: TypeId::of::<T>(),
        size: size_of::<T>(),
        align: align_of::<T>(),
        class: T::CLASS,
    }
}

/// A function-pointer type taken apart.
#[derive(Debug)]
struct Signature {
    abi: &'static str,
    params: Vec<Ty>,
    ret: Ty,
}

trait FnPointer {
    fn signature() -> Signature;
}
macro_rules! fn_pointer {
    ($($p:ident),*) => {
        fn_pointer!(@abi "C" $($p),*);
        fn_pointer!(@abi "system" $($p),*);
        impl<R: Describe, $($p: Describe),*> FnPointer for unsafe fn($($p),*) -> R {
            fn signature() -> Signature {
                Signature { abi: "Rust", params: vec![$(ty::<$p>()),*], ret: ty::<R>() }
            }
        }
    };
    (@abi $abi:literal $($p:ident),*) => {
        impl<R: Describe, $($p: Describe),*> FnPointer for unsafe extern $abi fn($($p),*) -> R {
            fn signature() -> Signature {
                Signature { abi: $abi, params: vec![$(ty::<$p>()),*], ret: ty::<R>() }
            }
        }
    };
}
fn_pointer!();
fn_pointer!(A);
fn_pointer!(A, B);
fn_pointer!(A, B, C);
fn_pointer!(A, B, C, D);

/// The signature of the function-pointer type that `name_it` returns. `name_it` is never called
/// (so never compiled to code that refers to the routine): only its return type is used.
fn signature<F: FnPointer>(_name_it: impl FnOnce() -> F) -> Signature {
    F::signature()
}

/// Where the Rust types are expected to differ, and why. Positions are parameter indices;
/// `None` is the return value.
struct Known {
    at: Option<usize>,
    why: &'static str,
}

const ADDRESS_IS_CONST: &str = "Address: the metadata makes `_In_reads_bytes_(Size) PVOID` a \
    `*const c_void`; the header says PVOID (`*mut`). The kernel does not write through it.";
const SIZE_T_IS_U64: &str = "Size: SIZE_T is ULONG_PTR, `unsigned __int64` in the header (u64); \
    the metadata says usize. Both 8 bytes on 64-bit Windows.";

fn compare(routine: &str, ours: Signature, theirs: Signature, known: &[Known]) {
    assert_eq!(ours.abi, "C", "{routine}: bindgen's ABI");
    assert_eq!(theirs.abi, "system", "{routine}: windows-sys's ABI");
    assert_eq!(
        ours.params.len(),
        theirs.params.len(),
        "{routine}: number of parameters"
    );

    let positions = ours
        .params
        .iter()
        .zip(&theirs.params)
        .enumerate()
        .map(|(i, (o, t))| (Some(i), o, t))
        .chain(std::iter::once((None, &ours.ret, &theirs.ret)));
    for (at, o, t) in positions {
        let place = match at {
            Some(i) => format!("{routine}: parameter {i}"),
            None => format!("{routine}: return value"),
        };
        // What the call sees: the same size, alignment and register class, always.
        assert_eq!(
            (o.size, o.align, o.class),
            (t.size, t.align, t.class),
            "{place}: {} and {} are passed differently",
            o.name,
            t.name
        );
        // What Rust sees: the same type, or a difference listed (with its reason) above.
        let listed = known.iter().find(|k| k.at == at);
        match (o.id == t.id, listed) {
            (true, None) => {}
            (false, Some(_)) => {}
            (false, None) => panic!(
                "{place}: ours is {}, the metadata's is {}: an unexplained difference",
                o.name, t.name
            ),
            (true, Some(k)) => panic!(
                "{place}: both are {} now; the note \"{}\" is stale",
                o.name, k.why
            ),
        }
    }
}

#[test]
fn mm_secure_virtual_memory_matches_the_metadata() {
    compare(
        "MmSecureVirtualMemory",
        signature(|| sys::MmSecureVirtualMemory as unsafe extern "C" fn(_, _, _) -> _),
        signature(|| meta::MmSecureVirtualMemory as unsafe extern "system" fn(_, _, _) -> _),
        &[
            Known {
                at: Some(0),
                why: ADDRESS_IS_CONST,
            },
            Known {
                at: Some(1),
                why: SIZE_T_IS_U64,
            },
        ],
    );
}

#[test]
fn mm_secure_virtual_memory_ex_matches_the_metadata() {
    compare(
        "MmSecureVirtualMemoryEx",
        signature(|| sys::MmSecureVirtualMemoryEx as unsafe extern "C" fn(_, _, _, _) -> _),
        signature(|| meta::MmSecureVirtualMemoryEx as unsafe extern "system" fn(_, _, _, _) -> _),
        &[
            Known {
                at: Some(0),
                why: ADDRESS_IS_CONST,
            },
            Known {
                at: Some(1),
                why: SIZE_T_IS_U64,
            },
        ],
    );
}

#[test]
fn pfn_mm_secure_virtual_memory_ex_is_the_routine_s_type() {
    // The pointer type the safe crate calls the run-time-found routine through.
    let from_alias = <sys::PFN_MM_SECURE_VIRTUAL_MEMORY_EX as FnPointer>::signature();
    let declared =
        signature(|| sys::MmSecureVirtualMemoryEx as unsafe extern "C" fn(_, _, _, _) -> _);
    assert_eq!(from_alias.abi, declared.abi);
    let ids =
        |s: &Signature| -> Vec<TypeId> { s.params.iter().chain([&s.ret]).map(|t| t.id).collect() };
    assert_eq!(ids(&from_alias), ids(&declared));
}

#[test]
fn mm_unsecure_virtual_memory_matches_the_metadata() {
    compare(
        "MmUnsecureVirtualMemory",
        signature(|| sys::MmUnsecureVirtualMemory as unsafe extern "C" fn(_) -> _),
        signature(|| meta::MmUnsecureVirtualMemory as unsafe extern "system" fn(_) -> _),
        &[],
    );
}

#[test]
fn mm_get_system_routine_address_matches_the_metadata() {
    compare(
        "MmGetSystemRoutineAddress",
        signature(|| sys::MmGetSystemRoutineAddress as unsafe extern "C" fn(_) -> _),
        signature(|| meta::MmGetSystemRoutineAddress as unsafe extern "system" fn(_) -> _),
        &[Known {
            at: Some(0),
            why: "SystemRoutineName: the header says PUNICODE_STRING (`*mut`), the metadata \
                  `*const UNICODE_STRING` (the routine only reads it); the two UNICODE_STRING \
                  types have one layout (unicode_string_has_the_metadata_layout).",
        }],
    );
}

#[test]
fn io_get_current_process_matches_the_metadata() {
    compare(
        "IoGetCurrentProcess",
        signature(|| sys::IoGetCurrentProcess as unsafe extern "C" fn() -> _),
        signature(|| meta::IoGetCurrentProcess as unsafe extern "system" fn() -> _),
        &[Known {
            at: None,
            why: "PEPROCESS: the header's pointer to the opaque struct _EPROCESS; the metadata \
                  models it as an opaque `isize`. One pointer-sized value in RAX either way.",
        }],
    );
}

#[test]
fn ke_get_current_irql_returns_the_metadata_type() {
    // Not generated: ntddk.h makes it FORCEINLINE on x64 (it reads CR8), so ours is a Rust
    // function (src/kernel.rs on Windows, the host backend elsewhere); the metadata lists an
    // ntoskrnl import. Only the result can be compared: KIRQL is UCHAR, u8.
    let ours = signature(|| sys::KeGetCurrentIrql as unsafe fn() -> _);
    let theirs = signature(|| meta::KeGetCurrentIrql as unsafe extern "system" fn() -> _);
    assert!(ours.params.is_empty() && theirs.params.is_empty());
    assert_eq!(
        ours.ret.id, theirs.ret.id,
        "{} vs {}",
        ours.ret.name, theirs.ret.name
    );
}
