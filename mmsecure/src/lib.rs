//! Safe API over `MmSecureVirtualMemory` (in progress).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
