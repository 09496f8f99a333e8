//! Random sequences of `UserSlice` operations on the host backend (issue #20), checked step by
//! step. Shared by `tests/proptest_slice.rs` (proptest picks the operations) and
//! `fuzz/fuzz_targets/slice_ops.rs` (libFuzzer's bytes are decoded into them): sequences of slices made
//! (any alignment, offset, length), reads and writes through their reader and writer, the user's
//! protection changes, writes and frees, attaching to another process, raising the IRQL to
//! `DISPATCH_LEVEL`, and the process's exit.
//!
//! # The invariant
//!
//! Every outcome is predicted by a model of the test's own (the pages' protections and bytes,
//! the context, the cursor): each probe error, each `OutOfBounds` (the cursor stays), each
//! `IrqlTooHigh` and `WrongProcess` (nothing touched, the cursor stays), each fault
//! (`STATUS_ACCESS_VIOLATION` from a page without the access, freed, or gone with its process;
//! the cursor moves past it), and the bytes a read returns are the bytes last written there.
//! No case leaves a process reference behind: once the slices are gone the model counts none.

use mmsecure::host::{
    raise_irql, AccessMode, Attach, Irql, Process, PAGE_READONLY, PAGE_READWRITE, PAGE_SIZE,
};
use mmsecure::status::STATUS_ACCESS_VIOLATION;
use mmsecure::sys::DISPATCH_LEVEL;
use mmsecure::{Error, Reader, SliceHold, UserSlice, Writer};

/// Fails the case with both values and the message when they differ.
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {
        ensure_eq!($left, $right, "")
    };
    ($left:expr, $right:expr, $($message:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!(
                "{:?} != {:?}: {}",
                left,
                right,
                format_args!($($message)+)
            ));
        }
    }};
}

/// Fails the case when the condition is false.
macro_rules! ensure {
    ($condition:expr) => {
        if !$condition {
            return Err(format!("failed: {}", stringify!($condition)));
        }
    };
}

/// Pages of the user allocation the slices lie in.
pub const PAGES: usize = 3;

/// One step of a case: the driver's slices and cursors, the user's memory changes, and the
/// context.
#[derive(Clone, Debug)]
pub enum Op {
    /// A slice of `len` bytes at `offset` into page `page`, aligned to `align`; a reader or a
    /// writer of it.
    Make {
        page: usize,
        offset: u16,
        len: u16,
        align: usize,
        write: bool,
    },
    /// `n` bytes through the cursor.
    Access { n: u16, fill: u8 },
    /// The user's `VirtualProtect` of a page.
    Protect { page: usize, protect: u32 },
    /// The user's write of a page's first bytes.
    UserWrite { page: usize, fill: u8 },
    /// The user frees a page.
    Free { page: usize },
    /// Attach to the other process, or detach from it.
    ToggleOther,
    /// Raise to `DISPATCH_LEVEL`, or lower again.
    ToggleIrql,
    /// The process exits.
    Exit,
}

/// A page as the test predicts it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Page {
    Mapped(u32),
    Gone,
}

enum Cursor {
    Read(Reader<'static, SliceHold>),
    Write(Writer<'static, SliceHold>),
}

/// The predicted cursor: its page and offset there, length, position, and whether its slice
/// belongs to the other process.
struct Predicted {
    page: usize,
    start: usize,
    len: usize,
    pos: usize,
    other: bool,
}

/// Runs `ops` and checks every outcome against the prediction; the first one that differs is the
/// error.
pub fn run(ops: &[Op]) -> Result<(), String> {
    let app = Process::new();
    let other = Process::new();
    let in_app = app.attach();
    let pages: Vec<*mut u8> = (0..PAGES)
        .map(|_| app.allocate(PAGE_SIZE, PAGE_READWRITE).unwrap())
        .collect();
    let mut state = [Page::Mapped(PAGE_READWRITE); PAGES];
    let mut bytes = vec![[0u8; 4096]; PAGES];
    let mut in_other: Option<Attach> = None;
    let mut high: Option<Irql> = None;
    let mut cursor: Option<(Cursor, Predicted)> = None;
    let mut exited = false;

    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Make {
                page,
                offset,
                len,
                align,
                write,
            } => {
                let address = pages[page].wrapping_add(usize::from(offset));
                let len = usize::from(len);
                let expected = if !align.is_power_of_two() {
                    Err(Error::BadAlignment(align))
                } else if len != 0 && address as usize % align != 0 {
                    Err(Error::Misaligned { align })
                } else if high.is_some() {
                    Err(Error::IrqlTooHigh { irql: 2, max: 1 })
                } else {
                    Ok(())
                };
                cursor = None;
                let made = UserSlice::aligned(address, len, align);
                ensure_eq!(
                    made.as_ref().map(|_| ()).map_err(|e| *e),
                    expected,
                    "step {}",
                    step
                );
                if let Ok(slice) = made {
                    let predicted = Predicted {
                        page,
                        start: usize::from(offset),
                        len,
                        pos: 0,
                        other: in_other.is_some(),
                    };
                    let made = if write {
                        Cursor::Write(slice.writer())
                    } else {
                        Cursor::Read(slice.reader())
                    };
                    cursor = Some((made, predicted));
                }
            }
            Op::Access { n, fill } => {
                let (made, p) = match cursor.as_mut() {
                    Some(c) => c,
                    None => continue,
                };
                let n = usize::from(n);
                let in_own = p.other == in_other.is_some();
                let (write, page_state) = (matches!(made, Cursor::Write(_)), state[p.page]);
                let expected: Result<(), Error> = if n > p.len - p.pos {
                    Err(Error::OutOfBounds {
                        offset: p.pos,
                        len: n,
                        region_len: p.len,
                    })
                } else if high.is_some() {
                    Err(Error::IrqlTooHigh { irql: 2, max: 1 })
                } else if !in_own {
                    Err(Error::WrongProcess)
                } else if n == 0 {
                    Ok(())
                } else if p.other {
                    Err(Error::Fault {
                        code: STATUS_ACCESS_VIOLATION,
                    }) // nothing mapped there
                } else {
                    match page_state {
                        Page::Mapped(PAGE_READWRITE) => Ok(()),
                        Page::Mapped(PAGE_READONLY) if !write => Ok(()),
                        _ => Err(Error::Fault {
                            code: STATUS_ACCESS_VIOLATION,
                        }),
                    }
                };
                let at = p.start + p.pos;
                let got = match made {
                    Cursor::Read(reader) => {
                        let mut out = vec![0u8; n];
                        let got = reader.read_slice(&mut out).map_err(|e| e.error());
                        if got.is_ok() && n > 0 {
                            ensure_eq!(
                                &out[..],
                                &bytes[p.page][at..at + n],
                                "step {}: bytes",
                                step
                            );
                        }
                        ensure_eq!(
                            reader.offset(),
                            p.pos
                                + if matches!(expected, Ok(()) | Err(Error::Fault { .. })) {
                                    n
                                } else {
                                    0
                                }
                        );
                        got
                    }
                    Cursor::Write(writer) => {
                        let data = vec![fill; n];
                        let got = writer.write_slice(&data).map_err(|e| e.error());
                        if got.is_ok() {
                            bytes[p.page][at..at + n].fill(fill);
                        }
                        ensure_eq!(
                            writer.offset(),
                            p.pos
                                + if matches!(expected, Ok(()) | Err(Error::Fault { .. })) {
                                    n
                                } else {
                                    0
                                }
                        );
                        got
                    }
                };
                ensure_eq!(got, expected, "step {}: {:?}", step, op);
                if matches!(expected, Ok(()) | Err(Error::Fault { .. })) {
                    p.pos += n;
                }
            }
            Op::Protect { page, protect } => {
                if let Page::Mapped(_) = state[page] {
                    ensure!(app
                        .protect(pages[page], PAGE_SIZE, protect, AccessMode::User)
                        .is_ok());
                    state[page] = Page::Mapped(protect);
                }
            }
            Op::UserWrite { page, fill } => {
                if state[page] != Page::Gone {
                    // The user writes whatever the protection: the model's own write.
                    if app.write(pages[page], &[fill; 8]).is_ok() {
                        bytes[page][..8].fill(fill);
                    }
                }
            }
            Op::Free { page } => {
                if state[page] != Page::Gone {
                    ensure!(app.free(pages[page], AccessMode::User).is_ok());
                    state[page] = Page::Gone;
                }
            }
            Op::ToggleOther => {
                if in_other.take().is_none() {
                    in_other = Some(other.attach());
                }
            }
            Op::ToggleIrql => {
                if high.take().is_none() {
                    high = Some(raise_irql(DISPATCH_LEVEL));
                }
            }
            Op::Exit => {
                if !exited {
                    app.exit();
                    exited = true;
                    state = [Page::Gone; PAGES];
                }
            }
        }
    }
    drop(high);
    drop(cursor);
    drop(in_other);
    drop(in_app);
    ensure_eq!(app.driver_references(), 0);
    ensure_eq!(other.driver_references(), 0);
    Ok(())
}
