//! Testing a driver's own logic on Linux, with mmsecure's host backend.
//!
//! A dispatch routine is mostly glue: it takes the user's buffer pointers and lengths out of the
//! IRP, calls the driver's logic, and completes the IRP with a status. The logic in between, the
//! code that touches the user's bytes, is what deserves tests. Written against `mmsecure` alone,
//! it compiles unchanged for the Windows kernel and for the host, where `mmsecure::host`
//! plays the user process: its allocations and protections, and the hostile moves a real process
//! can make (freeing the buffer, re-protecting it, exiting).
//!
//! - `mod volume` is the driver's logic for one made-up IOCTL, `IOCTL_SET_VOLUME`. It has no
//!   host-only code; in a driver crate it would be a module of its own. The kernel-side glue that
//!   calls it is in `docs/patterns.md`.
//! - `mod tests` tests it, against the user's hostile moves and an in-page error. `cargo test`
//!   runs them (this example has `test = true`), or `cargo test -p mmsecure --example
//!   driver_logic` alone.
//! - `main` walks through a request, a refused one and a pended one:
//!   `cargo run -p mmsecure --example driver_logic`.
//!
//! The driver depends on `mmsecure` alone, with its `derive` feature for the request's
//! `#[derive(AnyBitPattern)]` (`mmsecure = { version = "0.1", features = ["derive"] }`); its
//! tests reach the host model as `mmsecure::host`.

use mmsecure::host::{self, AccessMode, Process, PAGE_READWRITE};

/// The driver's logic. Nothing here knows whether it runs in a kernel or on the host backend.
mod volume {
    use mmsecure::bytemuck::AnyBitPattern;
    use mmsecure::{Error, ProbeMode, ProcessRef, RawRegion, SecureRegion, NTSTATUS, PEPROCESS};

    /// A request as the user program lays it out: the channel, then the level, each a
    /// little-endian `u32`. Any bytes make one (`AnyBitPattern`); only [`Request::parse`] makes
    /// a valid request of it.
    #[derive(Clone, Copy, AnyBitPattern)]
    #[bytemuck(crate = "mmsecure::bytemuck")]
    #[repr(C)]
    pub struct RawRequest {
        channel: u32,
        level: u32,
    }

    /// Bytes of a request.
    pub const REQUEST_LEN: usize = core::mem::size_of::<RawRequest>();
    /// Bytes of a reply: the channel's previous level, a little-endian `u32`.
    pub const REPLY_LEN: usize = 4;
    /// Channels the mixer has.
    pub const CHANNELS: usize = 4;
    /// The highest level a channel takes.
    pub const MAX_LEVEL: u32 = 100;

    /// The driver's state: one level per channel.
    #[derive(Debug, Default)]
    pub struct Mixer {
        levels: [u32; CHANNELS],
    }

    impl Mixer {
        /// The level of `channel`.
        pub fn level(&self, channel: usize) -> u32 {
            self.levels[channel]
        }
    }

    /// Why a request failed. The dispatch routine turns each into an NTSTATUS.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Failure {
        /// A user buffer could not be secured or reached; mmsecure says why.
        Buffer(Error),
        /// The input is shorter than a request, or the output than a reply.
        TooShort,
        /// The request names a channel the mixer does not have.
        NoSuchChannel(u32),
        /// The request asks for a level above [`MAX_LEVEL`].
        LevelTooHigh(u32),
    }

    impl From<Error> for Failure {
        fn from(error: Error) -> Failure {
            Failure::Buffer(error)
        }
    }

    impl From<mmsecure::CursorError> for Failure {
        fn from(error: mmsecure::CursorError) -> Failure {
            Failure::Buffer(error.error())
        }
    }

    impl Failure {
        /// The status the dispatch routine completes the IRP with: mmsecure's table for a
        /// buffer that could not be reached, the driver's own for a request it refuses.
        pub fn to_ntstatus(&self) -> NTSTATUS {
            use mmsecure::status::{STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_PARAMETER};
            match self {
                Failure::Buffer(error) => error.to_ntstatus(),
                Failure::TooShort => STATUS_BUFFER_TOO_SMALL,
                Failure::NoSuchChannel(_) | Failure::LevelTooHigh(_) => STATUS_INVALID_PARAMETER,
            }
        }
    }

    /// A request that passed validation: only ever made from the driver's own copy.
    struct Request {
        channel: usize,
        level: u32,
    }

    impl Request {
        /// Validates a copy of the user's bytes.
        fn parse(raw: RawRequest) -> Result<Request, Failure> {
            let channel = u32::from_le(raw.channel);
            let level = u32::from_le(raw.level);
            let index = usize::try_from(channel)
                .ok()
                .filter(|&c| c < CHANNELS)
                .ok_or(Failure::NoSuchChannel(channel))?;
            if level > MAX_LEVEL {
                return Err(Failure::LevelTooHigh(level));
            }
            Ok(Request {
                channel: index,
                level,
            })
        }
    }

    /// `IOCTL_SET_VOLUME`, a `METHOD_NEITHER` request: `input` and `output` are the user's own
    /// addresses, valid only in the calling process. Sets a channel's level and writes the
    /// previous one to `output`; returns the number of bytes written (the IRP's `Information`).
    ///
    /// Call in the requesting process's context at IRQL <= `APC_LEVEL`, as a top-level driver's
    /// dispatch routine runs.
    pub fn set_volume(
        mixer: &mut Mixer,
        input: *const u8,
        input_len: usize,
        output: *mut u8,
        output_len: usize,
    ) -> Result<usize, Failure> {
        if input_len < REQUEST_LEN || output_len < REPLY_LEN {
            return Err(Failure::TooShort);
        }
        // Copy the request in once (probe, one guarded copy: a buffer the user frees or
        // re-protects meanwhile is a caught fault). The bytes may change after, so everything
        // after this line looks at `raw` only, never at the user's buffer again.
        let raw: RawRequest = mmsecure::read_user(input)?;
        let request = Request::parse(raw)?;

        // Secure the reply's bytes before changing anything: a request whose reply cannot be
        // written changes nothing. The output pointer goes in as the IRP gives it.
        let reply = SecureRegion::new(output, REPLY_LEN, ProbeMode::ReadWrite)?;
        let previous = core::mem::replace(&mut mixer.levels[request.channel], request.level);
        reply.writer().write(&previous.to_le())?;
        Ok(REPLY_LEN)
    }

    /// Why [`PendedReply::complete`] did not complete.
    #[derive(Debug)]
    pub enum Unfinished {
        /// This thread is not where the reply can be written (`error` says why: another process,
        /// or the IRQL): nothing was written, and `reply` is still secured. Complete it again,
        /// attached to its process at `PASSIVE_LEVEL`.
        NotHere {
            /// The pended reply, unchanged.
            reply: PendedReply,
            /// [`Error::WrongProcess`] or [`Error::IrqlTooHigh`].
            error: Error,
        },
        /// The reply could not be written (an in-page error, say); the buffer is unsecured.
        /// Complete the IRP with this failure.
        Failed(Failure),
    }

    /// A reply the driver writes later, once it has the answer: the IRP is pended, and the
    /// output buffer stays secured in between. `Send`: it can wait in a queue and be completed on
    /// another thread.
    #[derive(Debug)]
    pub struct PendedReply {
        region: RawRegion,
    }

    impl PendedReply {
        /// Secures the reply's bytes, in the dispatch routine, in the requester's context.
        pub fn secure(output: *mut u8, output_len: usize) -> Result<PendedReply, Failure> {
            if output_len < REPLY_LEN {
                return Err(Failure::TooShort);
            }
            let region = SecureRegion::new(output, REPLY_LEN, ProbeMode::ReadWrite)?;
            Ok(PendedReply {
                region: region.into_raw(),
            })
        }

        /// The process to attach to before [`complete`](Self::complete). The pended region
        /// holds a reference on it, so the pointer stays valid until completion.
        pub fn eprocess(&self) -> PEPROCESS {
            self.region.eprocess()
        }

        /// A reference of the worker's own on [`process`](Self::process), to hold from before
        /// the attach until after the detach: the attach takes none, and the pended region's
        /// goes when [`complete`](Self::complete) drops it, inside the attach.
        pub fn process_ref(&self) -> Result<ProcessRef, Failure> {
            Ok(self.region.process_ref()?)
        }

        /// Writes the reply and unsecures the buffer; returns the bytes written. Call attached to
        /// [`process`](Self::process), at IRQL <= `APC_LEVEL`, before that process exits.
        ///
        /// In the wrong context (another process, a raised IRQL) nothing is written and the
        /// reply comes back in [`Unfinished::NotHere`], still secured, to complete from the
        /// right one.
        pub fn complete(self, level: u32) -> Result<usize, Unfinished> {
            // Not `?`: `from_raw`'s error holds the raw region, which must not be dropped here
            // (that would leave the secure standing until the process exits).
            let region = match SecureRegion::from_raw(self.region) {
                Ok(region) => region,
                Err(refused) => {
                    return Err(Unfinished::NotHere {
                        error: refused.error(),
                        reply: PendedReply {
                            region: refused.into_raw(),
                        },
                    })
                }
            };
            region
                .writer()
                .write(&level.to_le())
                .map_err(|error| Unfinished::Failed(error.into()))?;
            Ok(REPLY_LEN)
        }

        /// For a request whose process exited first (a process-notify routine or the IRP's
        /// cancellation says so): exit dropped the secure, so there is nothing to unsecure and
        /// no one to reply to. The process reference is released.
        pub fn leak(self) {
            self.region.leak();
        }
    }
}

fn main() -> Result<(), volume::Failure> {
    let app = Process::new();
    let _in_app = app.attach(); // the dispatch routine runs on the app's thread
    let input = app.allocate(4096, PAGE_READWRITE).expect("allocate");
    let output = app.allocate(4096, PAGE_READWRITE).expect("allocate");
    app.write(input, &request(2, 70)).expect("user write");

    let mut mixer = volume::Mixer::default();
    let written = volume::set_volume(&mut mixer, input, 8, output, 4)?;
    let mut reply = [0u8; 4];
    app.read(output, &mut reply).expect("user read");
    println!(
        "IOCTL_SET_VOLUME(channel 2, level 70): {written} bytes back, previous level {}; \
         channel 2 is now at {}",
        u32::from_le_bytes(reply),
        mixer.level(2)
    );

    app.free(input, AccessMode::User).expect("free");
    let refused = volume::set_volume(&mut mixer, input, 8, output, 4).unwrap_err();
    println!(
        "the same request from a freed buffer: {refused:?}, completed with NTSTATUS {:#010X}",
        refused.to_ntstatus() as u32
    );

    // A pended IRP: the output stays secured while a worker thread finds the answer.
    let pended = volume::PendedReply::secure(output, 4)?;
    let freed = app.free(output, AccessMode::User);
    println!("pended: the user frees the output buffer meanwhile: {freed:?}");
    let keep = pended.process_ref()?; // the worker's own reference, queued with the reply
    assert_eq!(keep.as_ptr(), pended.eprocess());
    let level = mixer.level(2);
    let written = std::thread::spawn(move || {
        // Before attaching, the reply cannot be written here: it comes back, still secured.
        let pended = match pended.complete(level) {
            Err(volume::Unfinished::NotHere { reply, error }) => {
                println!("pended: completed before attaching: {error}; the reply comes back");
                reply
            }
            done => return done,
        };
        let attached = host::attach_eprocess(keep.as_ptr()); // KeStackAttachProcess
        let written = pended.complete(level);
        drop(attached); // KeUnstackDetachProcess, then the reference goes
        drop(keep);
        written
    })
    .join()
    .expect("worker thread");
    let written = match written {
        Ok(written) => written,
        Err(volume::Unfinished::Failed(failure)) => return Err(failure),
        // Attached at PASSIVE_LEVEL, the worker was where the reply can be written.
        Err(volume::Unfinished::NotHere { error, .. }) => unreachable!("{error}"),
    };
    app.read(output, &mut reply).expect("user read");
    println!(
        "pended: a worker thread completed it: {written} bytes, level {}",
        u32::from_le_bytes(reply)
    );

    // The requester exits while another reply is pended: exit drops the secure, and the driver
    // forgets the reply instead of unsecuring in a dead process.
    let orphan = volume::PendedReply::secure(output, 4)?;
    app.exit();
    orphan.leak();
    println!(
        "pended: the process exited first; secures left: {}, misuses: {}",
        app.secure_count(),
        app.misuses().len()
    );
    Ok(())
}

/// The bytes a user program sends.
fn request(channel: u32, level: u32) -> [u8; 8] {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&channel.to_le_bytes());
    bytes[4..].copy_from_slice(&level.to_le_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::volume::{Failure, Mixer, PendedReply, MAX_LEVEL};
    use super::*;
    use mmsecure::host::{PAGE_NOACCESS, PAGE_READONLY};
    use mmsecure::status::{
        STATUS_ACCESS_VIOLATION, STATUS_BUFFER_TOO_SMALL, STATUS_IN_PAGE_ERROR,
    };
    use mmsecure::Error;

    /// A user process with an input and an output page, and this thread in its context.
    struct App {
        process: Process,
        input: *mut u8,
        output: *mut u8,
        _in_process: mmsecure::host::Attach,
    }

    fn app() -> App {
        let process = Process::new();
        let _in_process = process.attach();
        let input = process.allocate(4096, PAGE_READWRITE).unwrap();
        let output = process.allocate(4096, PAGE_READWRITE).unwrap();
        App {
            process,
            input,
            output,
            _in_process,
        }
    }

    fn reply(app: &App) -> u32 {
        let mut bytes = [0u8; 4];
        app.process.read(app.output, &mut bytes).unwrap();
        u32::from_le_bytes(bytes)
    }

    #[test]
    fn applies_a_valid_request_and_replies_with_the_previous_level() {
        let app = app();
        let mut mixer = Mixer::default();
        app.process.write(app.input, &request(1, 40)).unwrap();
        assert_eq!(
            volume::set_volume(&mut mixer, app.input, 8, app.output, 4),
            Ok(4)
        );
        app.process.write(app.input, &request(1, 55)).unwrap();
        assert_eq!(
            volume::set_volume(&mut mixer, app.input, 8, app.output, 4),
            Ok(4)
        );
        assert_eq!(reply(&app), 40);
        assert_eq!(mixer.level(1), 55);
        // Every secure was dropped in its process: the user may free both buffers again.
        assert!(app.process.free(app.input, AccessMode::User).is_ok());
        assert!(app.process.free(app.output, AccessMode::User).is_ok());
        assert!(app.process.misuses().is_empty());
    }

    #[test]
    fn refuses_short_buffers_before_securing_anything() {
        let app = app();
        let mut mixer = Mixer::default();
        let short_input = volume::set_volume(&mut mixer, app.input, 7, app.output, 4);
        let short_output = volume::set_volume(&mut mixer, app.input, 8, app.output, 3);
        assert_eq!(short_input, Err(Failure::TooShort));
        assert_eq!(short_output, Err(Failure::TooShort));
    }

    #[test]
    fn refuses_a_kernel_address_for_input() {
        let app = app();
        let mut mixer = Mixer::default();
        let kernel = 0xFFFF_F780_0000_0000_usize as *const u8;
        assert_eq!(
            volume::set_volume(&mut mixer, kernel, 8, app.output, 4),
            Err(Failure::Buffer(Error::NotUserRange))
        );
    }

    #[test]
    fn refuses_an_input_buffer_the_user_freed() {
        let app = app();
        let mut mixer = Mixer::default();
        app.process.free(app.input, AccessMode::User).unwrap();
        assert_eq!(
            volume::set_volume(&mut mixer, app.input, 8, app.output, 4),
            Err(Failure::Buffer(Error::Fault {
                code: mmsecure::status::STATUS_ACCESS_VIOLATION
            }))
        );
    }

    #[test]
    fn refuses_an_unreadable_input_buffer() {
        let app = app();
        let mut mixer = Mixer::default();
        app.process
            .protect(app.input, 4096, PAGE_NOACCESS, AccessMode::User)
            .unwrap();
        assert_eq!(
            volume::set_volume(&mut mixer, app.input, 8, app.output, 4),
            Err(Failure::Buffer(Error::Fault {
                code: mmsecure::status::STATUS_ACCESS_VIOLATION
            }))
        );
    }

    #[test]
    fn a_read_only_output_buffer_changes_nothing() {
        let app = app();
        let mut mixer = Mixer::default();
        app.process.write(app.input, &request(3, 9)).unwrap();
        app.process
            .protect(app.output, 4096, PAGE_READONLY, AccessMode::User)
            .unwrap();
        assert_eq!(
            volume::set_volume(&mut mixer, app.input, 8, app.output, 4),
            Err(Failure::Buffer(Error::Refused))
        );
        assert_eq!(mixer.level(3), 0);
    }

    #[test]
    fn an_in_page_error_during_the_copy_fails_the_request_and_changes_nothing() {
        let app = app();
        let mut mixer = Mixer::default();
        app.process.write(app.input, &request(2, 50)).unwrap();
        // The page cannot be read back in: the copy raises, and the guard returns the code.
        app.process.inject_fault(app.input, 8, STATUS_IN_PAGE_ERROR);
        assert_eq!(
            volume::set_volume(&mut mixer, app.input, 8, app.output, 4),
            Err(Failure::Buffer(Error::Fault {
                code: STATUS_IN_PAGE_ERROR
            }))
        );
        assert_eq!(mixer.level(2), 0);
        assert!(app.process.misuses().is_empty());
    }

    #[test]
    fn validates_the_copy_of_the_request() {
        let app = app();
        let mut mixer = Mixer::default();
        app.process.write(app.input, &request(4, 10)).unwrap();
        assert_eq!(
            volume::set_volume(&mut mixer, app.input, 8, app.output, 4),
            Err(Failure::NoSuchChannel(4))
        );
        app.process
            .write(app.input, &request(0, MAX_LEVEL + 1))
            .unwrap();
        assert_eq!(
            volume::set_volume(&mut mixer, app.input, 8, app.output, 4),
            Err(Failure::LevelTooHigh(MAX_LEVEL + 1))
        );
        assert_eq!(mixer.level(0), 0);
    }

    #[test]
    fn a_pended_reply_stays_secured_until_another_thread_completes_it() {
        let app = app();
        let pended = PendedReply::secure(app.output, 4).unwrap();
        assert_eq!(pended.eprocess(), app.process.eprocess());

        // While the IRP waits, the user can neither free the output nor make it read-only.
        assert!(app.process.free(app.output, AccessMode::User).is_err());
        assert!(app
            .process
            .protect(app.output, 4096, PAGE_READONLY, AccessMode::User)
            .is_err());

        // A worker thread completes it, attached to the requester (KeStackAttachProcess).
        let process = app.process.clone();
        let written = std::thread::spawn(move || {
            let _attached = process.attach();
            pended.complete(33)
        })
        .join()
        .unwrap();
        assert_eq!(written.ok(), Some(4));
        assert_eq!(reply(&app), 33);
        assert!(app.process.free(app.output, AccessMode::User).is_ok());
        assert!(app.process.misuses().is_empty());
    }

    #[test]
    fn a_pended_reply_completed_in_the_wrong_context_comes_back_still_secured() {
        let app = app();
        app.process.set_strict(true); // an abandoned secure would stop this test
        let pended = PendedReply::secure(app.output, 4).unwrap();
        let process = app.process.clone();
        let written = std::thread::spawn(move || {
            // The worker forgot to attach: the reply is refused and handed back...
            let pended = match pended.complete(12) {
                Err(volume::Unfinished::NotHere { reply, error }) => {
                    assert_eq!(error, Error::WrongProcess);
                    reply
                }
                other => panic!("completed outside the process: {other:?}"),
            };
            assert_eq!(process.secure_count(), 1);
            // ...and completes once it is attached.
            let _attached = process.attach();
            pended.complete(12).ok()
        })
        .join()
        .unwrap();
        assert_eq!(written, Some(4));
        assert_eq!(reply(&app), 12);
        assert_eq!(app.process.secure_count(), 0);
        assert!(app.process.misuses().is_empty());
    }

    /// The worker's recipe (docs/rules.md §2) when the pended region's reference is the last
    /// but the worker's: the requester exited and its handles are closed before the worker
    /// runs. The region's drop, inside the attach, releases its reference; the worker's keeps
    /// the process object until after the detach (attached by pointer, the model stops a
    /// worker that has none: `tests/process_ref.rs`).
    #[test]
    fn a_pended_reply_completed_after_every_other_reference_went_follows_the_recipe() {
        let app = app();
        let pended = PendedReply::secure(app.output, 4).unwrap();
        let keep = pended.process_ref().unwrap();
        let App {
            process,
            _in_process,
            ..
        } = app;
        process.exit();
        drop(_in_process);
        drop(process); // the last `Process`: only the region's and the worker's references stand
        let written = std::thread::spawn(move || {
            let attached = host::attach_eprocess(keep.as_ptr());
            let result = pended.complete(7);
            drop(attached);
            drop(keep); // the last reference, after the detach
            result
        })
        .join()
        .unwrap();
        // The process exited: the copy faulted, and the late unsecure returned.
        let fault = Failure::Buffer(Error::Fault {
            code: STATUS_ACCESS_VIOLATION,
        });
        assert!(
            matches!(&written, Err(volume::Unfinished::Failed(failure)) if *failure == fault),
            "{written:?}"
        );
    }

    #[test]
    fn a_pended_reply_abandoned_after_its_process_exited_unsecures_nothing() {
        let app = app();
        let pended = PendedReply::secure(app.output, 4).unwrap();
        app.process.exit();
        assert_eq!(app.process.secure_count(), 0); // exit dropped the secure
        pended.leak();
        assert!(app.process.misuses().is_empty());
    }

    #[test]
    fn each_request_byte_is_read_once_in_the_whole_dispatch() {
        let app = app();
        app.process.set_strict(true); // a double fetch would fail this test where it happens
        let mut mixer = Mixer::default();
        app.process.write(app.input, &request(1, 20)).unwrap();
        let dispatch = app.process.begin_request(); // one IRP, across all its regions
        assert_eq!(
            volume::set_volume(&mut mixer, app.input, 8, app.output, 4),
            Ok(4)
        );
        drop(dispatch);
        assert!(app.process.double_fetches().is_empty());
    }

    #[test]
    fn failures_map_to_the_kernel_s_statuses() {
        let app = app();
        let mut mixer = Mixer::default();
        let short = volume::set_volume(&mut mixer, app.input, 7, app.output, 4).unwrap_err();
        assert_eq!(short.to_ntstatus(), STATUS_BUFFER_TOO_SMALL);
        app.process.free(app.input, AccessMode::User).unwrap();
        let freed = volume::set_volume(&mut mixer, app.input, 8, app.output, 4).unwrap_err();
        assert_eq!(freed.to_ntstatus(), STATUS_ACCESS_VIOLATION);
    }
}
