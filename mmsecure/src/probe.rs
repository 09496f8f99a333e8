//! [`ProbeMode`]: which access a secure keeps.

use crate::Error;
use mmsecure_sys::{PAGE_READONLY, PAGE_READWRITE};

/// The least access a secured range keeps: the `ProbeMode` argument of `MmSecureVirtualMemory`.
///
/// | mode | probed for | protection changes refused while secured |
/// |---|---|---|
/// | [`ReadOnly`](ProbeMode::ReadOnly) | read | to no access (and guard pages); a change to read-write is allowed |
/// | [`ReadWrite`](ProbeMode::ReadWrite) | write | to anything not writable: no access, read-only (and guard pages) |
///
/// A read-only secure does not keep the buffer read-only: the user may still make it writable.
///
/// ```
/// use mmsecure::ProbeMode;
///
/// assert_eq!(ProbeMode::ReadWrite.into_raw(), 0x04);
/// assert_eq!(ProbeMode::from_raw(0x02), Ok(ProbeMode::ReadOnly));
/// assert!(ProbeMode::from_raw(0x40).is_err());
/// ```
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeMode {
    /// `PAGE_READONLY`: the range must stay readable.
    ReadOnly = PAGE_READONLY,
    /// `PAGE_READWRITE`: the range must stay readable and writable.
    ReadWrite = PAGE_READWRITE,
}

impl ProbeMode {
    /// The raw `ProbeMode` value the kernel takes.
    ///
    /// ```
    /// assert_eq!(mmsecure::ProbeMode::ReadOnly.into_raw(), 0x02);
    /// ```
    #[must_use]
    pub const fn into_raw(self) -> u32 {
        self as u32
    }

    /// The mode for a raw value; any value but `PAGE_READONLY` or `PAGE_READWRITE` is
    /// [`Error::UnknownProbeMode`].
    ///
    /// ```
    /// use mmsecure::{Error, ProbeMode};
    ///
    /// assert_eq!(ProbeMode::from_raw(0x04), Ok(ProbeMode::ReadWrite));
    /// assert_eq!(ProbeMode::from_raw(0x01), Err(Error::UnknownProbeMode(0x01)));
    /// ```
    pub const fn from_raw(raw: u32) -> Result<ProbeMode, Error> {
        if raw == PAGE_READONLY {
            Ok(ProbeMode::ReadOnly)
        } else if raw == PAGE_READWRITE {
            Ok(ProbeMode::ReadWrite)
        } else {
            Err(Error::UnknownProbeMode(raw))
        }
    }
}

impl From<ProbeMode> for u32 {
    fn from(mode: ProbeMode) -> u32 {
        mode.into_raw()
    }
}

impl TryFrom<u32> for ProbeMode {
    type Error = Error;

    fn try_from(raw: u32) -> Result<ProbeMode, Error> {
        ProbeMode::from_raw(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_round_trip() {
        for mode in [ProbeMode::ReadOnly, ProbeMode::ReadWrite] {
            assert_eq!(ProbeMode::from_raw(mode.into_raw()), Ok(mode));
            assert_eq!(ProbeMode::try_from(u32::from(mode)), Ok(mode));
        }
    }

    #[test]
    fn every_other_raw_value_is_an_error() {
        for raw in (0..=0x200u32).filter(|r| *r != 2 && *r != 4) {
            assert_eq!(ProbeMode::from_raw(raw), Err(Error::UnknownProbeMode(raw)));
        }
    }
}
