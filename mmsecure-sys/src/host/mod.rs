//! PLACEHOLDER: the host backend is being written (issue #3).
#![allow(missing_docs)]
use crate::KIRQL;
pub unsafe fn KeGetCurrentIrql() -> KIRQL { 0 }
