//! Issue #8's benchmarks, on the host backend: what `SecureRegion` costs over the raw routines,
//! how fast its copies are next to a plain `copy_nonoverlapping`, how the model's secure and
//! unsecure scale with the secures already standing, and (issue #14) what a `Reader`'s typed read
//! of a 16-byte header costs over `SecureRegion::read`.
//!
//! A `harness = false` bench: plain `std::time::Instant`, no framework. Every row is a ratio of two
//! measurements taken in this run, interleaved round by round so that load from elsewhere on the
//! machine lands on both sides alike:
//!
//! 1. warm-up: both sides run for a while before anything is timed;
//! 2. calibration: a batch is as many iterations as take at least the batch time;
//! 3. rounds: each round times one batch of each side (alternating which goes first) and keeps
//!    both figures and their ratio;
//! 4. the row shows the median of each side and the median of the per-round ratios, with the
//!    ratios' interquartile range.
//!
//! Usage (`cargo bench` passes `--bench`, which is accepted and ignored):
//!
//! ```text
//! cargo bench -p mmsecure --bench secure -- [--quick] [--tsv]
//! secure --op OP --iters N
//! ```
//!
//! `--quick` is CI's mode: fewer, shorter rounds, the same rows. `--tsv` prints the rows as
//! tab-separated fields for `cargo xtask bench`. `--op` runs N iterations of one measured
//! function and nothing else, for `valgrind --tool=callgrind --toggle-collect=<function>`, which
//! counts the instructions executed inside that function and its callees only (the functions are
//! `#[no_mangle]` so that their names are exact); `cargo xtask bench` does that.

// Benchmarks run on the development toolchain only, never at the MSRV (1.63):
// `std::hint::black_box` is from 1.66.
#![allow(clippy::incompatible_msrv)]

use std::hint::black_box;
use std::process::ExitCode;
use std::ptr;
use std::time::{Duration, Instant};

use mmsecure::bytemuck::AnyBitPattern;
use mmsecure::{capture_unicode_string, ProbeMode, SecureRegion, UserAbi, UserSlice};
use mmsecure_sys::host::{Process, PAGE_READWRITE, PAGE_SIZE};
use mmsecure_sys::{MmSecureVirtualMemory, MmUnsecureVirtualMemory, PVOID, SIZE_T};

/// The copy sizes of row 2.
const COPY_SIZES: [usize; 4] = [64, 4 << 10, 64 << 10, 1 << 20];

/// The standing-secure counts of row 3.
const STANDING: [usize; 3] = [10, 1_000, 100_000];

/// Pages of the allocation that row 3's standing secures share with the measured one.
const STANDING_PAGES: usize = 16;

/// How long and how often each row is measured.
#[derive(Clone, Copy)]
struct Config {
    name: &'static str,
    warm_up: Duration,
    batch: Duration,
    rounds: usize,
}

/// Short batches and many rounds: on a shared machine a batch that another process interrupts is
/// an outlier that the median drops, and the shorter the batch, the fewer batches are hit (a
/// scheduler time slice is milliseconds long).
const FULL: Config = Config {
    name: "full",
    warm_up: Duration::from_millis(100),
    batch: Duration::from_micros(250),
    rounds: 401,
};

const QUICK: Config = Config {
    name: "quick",
    warm_up: Duration::from_millis(10),
    batch: Duration::from_micros(100),
    rounds: 31,
};

// ---------------------------------------------------------------------------------------------
// The measured functions. `#[no_mangle]` gives callgrind an exact name to toggle collection on;
// `#[inline(never)]` keeps each a function of its own in the binary. All take the same arguments,
// so that the cost of the call itself, which `mmsecure_bench_empty` measures, is the same.

/// Nothing: the call and return that every measured function also pays, subtracted from the
/// instruction counts.
#[no_mangle]
#[inline(never)]
pub extern "C" fn mmsecure_bench_empty(address: *const u8, len: usize) -> bool {
    !address.is_null() && len != 0
}

/// Secure + unsecure with the raw routines, as a driver without `mmsecure` writes it.
#[no_mangle]
#[inline(never)]
pub extern "C" fn mmsecure_bench_raw(address: *const u8, len: usize) -> bool {
    // SAFETY: the routine validates the range itself and returns NULL for anything it will not
    // secure; it dereferences nothing.
    let handle = unsafe { MmSecureVirtualMemory(address as PVOID, len as SIZE_T, PAGE_READWRITE) };
    if handle.is_null() {
        return false;
    }
    // SAFETY: `handle` was just returned by the secure routine in this process context and is
    // unsecured once.
    unsafe { MmUnsecureVirtualMemory(handle) };
    true
}

/// Secure + drop through `SecureRegion`: the same two routines, with the wrapper's checks.
#[no_mangle]
#[inline(never)]
pub extern "C" fn mmsecure_bench_wrapper(address: *const u8, len: usize) -> bool {
    // The region, if made, is dropped (unsecured) at the end of this statement.
    SecureRegion::new(address, len, ProbeMode::ReadWrite).is_ok()
}

/// Secure + unsecure through `SecureRegion::scope` with an empty body (issue #21): on a thread
/// of the process, as the bench runs it, the scope takes no process reference.
#[no_mangle]
#[inline(never)]
pub extern "C" fn mmsecure_bench_scoped(address: *const u8, len: usize) -> bool {
    SecureRegion::scope(address, len, ProbeMode::ReadWrite, |_| ()).is_ok()
}

/// A 16-byte request header, as a driver reads one (row 4).
#[derive(Clone, Copy, AnyBitPattern)]
#[bytemuck(crate = "mmsecure::bytemuck")]
#[repr(C)]
pub struct Header {
    kind: u32,
    flags: u32,
    len: u64,
}

/// `SecureRegion::read::<Header>(0)` on the region `region` points to (row 4's baseline). The measured
/// functions share one signature, so the region comes in as the address argument.
#[no_mangle]
#[inline(never)]
pub extern "C" fn mmsecure_bench_region_read(region: *const u8, _len: usize) -> bool {
    // SAFETY: row 4 and `run_op` pass a pointer to a live `SecureRegion`.
    let region = unsafe { &*region.cast::<SecureRegion>() };
    black_box(region.read::<Header>(0)).is_ok()
}

/// A reader made on the region `region` points to, and its `read::<Header>()` (row 4).
#[no_mangle]
#[inline(never)]
pub extern "C" fn mmsecure_bench_reader(region: *const u8, _len: usize) -> bool {
    // SAFETY: as for `mmsecure_bench_region_read`.
    let region = unsafe { &*region.cast::<SecureRegion>() };
    let mut reader = region.reader();
    black_box(reader.read::<Header>()).is_ok()
}

/// The C idiom for one 64-byte request (issue #20): `ProbeForRead`'s range check (null, wrap,
/// above the highest user address) and `memcpy` under `__try`, here the same backend's raw
/// guarded copy. No IRQL check: C drivers do not make one.
#[no_mangle]
#[inline(never)]
pub extern "C" fn mmsecure_bench_c_idiom(address: *const u8, _len: usize) -> bool {
    let start = address as usize;
    match start.checked_add(63) {
        Some(last) if start != 0 && last <= mmsecure::highest_user_address() => {}
        _ => return false,
    }
    let mut out = [0u8; 64];
    // SAFETY: a probed user range of the attached process; `out` is ours, 64 bytes.
    let status = unsafe { mmsecure_sys::copy_guarded(out.as_mut_ptr(), start as *const u8, 64) };
    black_box(out);
    status == 0
}

/// `read_user::<[u8; 64]>`: probe and one guarded copy (issue #20). The 64 bytes go to
/// `black_box` and the outcome is returned, as in the C idiom: not the whole `Result`, whose
/// storing (tag, then the bytes one byte on) the C side has no counterpart for.
#[no_mangle]
#[inline(never)]
pub extern "C" fn mmsecure_bench_read_user(address: *const u8, _len: usize) -> bool {
    match mmsecure::read_user::<[u8; 64]>(address) {
        Ok(value) => {
            black_box(value);
            true
        }
        Err(_) => false,
    }
}

/// What `read_user::<[u8; 64]>` was before issue #20: secure, one copy, unsecure.
#[no_mangle]
#[inline(never)]
pub extern "C" fn mmsecure_bench_read_user_secure(address: *const u8, _len: usize) -> bool {
    let value = SecureRegion::new(address, 64, ProbeMode::ReadOnly)
        .and_then(|region| region.read::<[u8; 64]>(0));
    black_box(value).is_ok()
}

/// `capture_unicode_string` of 64 characters: a 16-byte structure at `address`, the string
/// after it (see `capture_page`).
#[no_mangle]
#[inline(never)]
pub extern "C" fn mmsecure_bench_capture(address: *const u8, _len: usize) -> bool {
    let mut out = [0u16; 64];
    let captured = capture_unicode_string(address, UserAbi::Native, &mut out).map(|s| s.len());
    black_box(captured) == Ok(64)
}

/// A measured function.
type Op = extern "C" fn(*const u8, usize) -> bool;

// ---------------------------------------------------------------------------------------------
// Timing.

/// Runs `op` `iters` times and returns the nanoseconds per iteration.
fn time_batch(iters: u64, op: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        op();
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// The number of iterations of `op` that take at least `batch`, after running it for `warm_up`.
fn calibrate(config: &Config, op: &mut dyn FnMut()) -> u64 {
    let start = Instant::now();
    while start.elapsed() < config.warm_up {
        op();
    }
    let mut iters = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..iters {
            op();
        }
        let took = start.elapsed();
        if took >= config.batch {
            return iters;
        }
        // Aim a little past the batch time, and at most grow 100x per try.
        let wanted = config.batch.as_nanos() as f64 * 1.2 / took.as_nanos().max(1) as f64;
        iters = ((iters as f64 * wanted.min(100.0)).ceil() as u64).max(iters + 1);
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The value at fraction `q` of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at]
}

/// Two sides timed round by round: medians in ns per iteration, and the per-round ratios
/// `measured / baseline`.
struct Pair {
    baseline_ns: f64,
    measured_ns: f64,
    ratio: f64,
    ratio_low: f64,
    ratio_high: f64,
}

fn compare(config: &Config, baseline: &mut dyn FnMut(), measured: &mut dyn FnMut()) -> Pair {
    let iters_baseline = calibrate(config, baseline);
    let iters_measured = calibrate(config, measured);
    let mut base = Vec::with_capacity(config.rounds);
    let mut meas = Vec::with_capacity(config.rounds);
    let mut ratios = Vec::with_capacity(config.rounds);
    for round in 0..config.rounds {
        let (b, m) = if round % 2 == 0 {
            let b = time_batch(iters_baseline, baseline);
            (b, time_batch(iters_measured, measured))
        } else {
            let m = time_batch(iters_measured, measured);
            (time_batch(iters_baseline, baseline), m)
        };
        base.push(b);
        meas.push(m);
        ratios.push(m / b);
    }
    let ratio = median(&mut ratios);
    Pair {
        baseline_ns: median(&mut base),
        measured_ns: median(&mut meas),
        ratio,
        ratio_low: quantile(&ratios, 0.25),
        ratio_high: quantile(&ratios, 0.75),
    }
}

/// One side timed in rounds: the median ns per iteration.
fn measure(config: &Config, op: &mut dyn FnMut()) -> f64 {
    let iters = calibrate(config, op);
    let mut times: Vec<f64> = (0..config.rounds).map(|_| time_batch(iters, op)).collect();
    median(&mut times)
}

// ---------------------------------------------------------------------------------------------
// Rows.

/// What a row's ratio should be.
#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
    None,
}

impl Goal {
    fn text(self) -> String {
        match self {
            Goal::AtMost(limit) => format!("<= {limit:.2}x"),
            Goal::AtLeast(limit) => format!(">= {limit:.2}x"),
            Goal::None => "-".to_owned(),
        }
    }

    fn verdict(self, ratio: f64) -> &'static str {
        match self {
            Goal::AtMost(limit) if ratio <= limit => "met",
            Goal::AtLeast(limit) if ratio >= limit => "met",
            Goal::None => "",
            _ => "MISSED",
        }
    }

    /// `kind<TAB>limit` for `--tsv`.
    fn tsv(self) -> String {
        match self {
            Goal::AtMost(limit) => format!("at_most\t{limit}"),
            Goal::AtLeast(limit) => format!("at_least\t{limit}"),
            Goal::None => "none\t0".to_owned(),
        }
    }
}

/// One line of the table: two figures in `unit` and their ratio.
struct Row {
    /// A stable name for tools.
    id: String,
    what: String,
    baseline_name: &'static str,
    baseline: f64,
    measured_name: &'static str,
    measured: f64,
    /// `ns` (lower is better) or `GB/s` (higher is better).
    unit: &'static str,
    ratio: f64,
    ratio_low: f64,
    ratio_high: f64,
    goal: Goal,
}

/// Row 1: secure + drop through `SecureRegion` against the raw pair, on the same page.
fn secure_drop_row(config: &Config) -> Row {
    let process = Process::new();
    process.set_double_fetch_detection(false); // measure the crate, not the model's detector
    let _in_process = process.attach();
    let page = allocate(&process, PAGE_SIZE);
    let pair = compare(
        config,
        &mut || assert!(mmsecure_bench_raw(black_box(page), black_box(PAGE_SIZE))),
        &mut || {
            assert!(mmsecure_bench_wrapper(
                black_box(page),
                black_box(PAGE_SIZE)
            ))
        },
    );
    Row {
        id: "secure_drop".to_owned(),
        what: "secure + drop, 1 page".to_owned(),
        baseline_name: "raw pair",
        baseline: pair.baseline_ns,
        measured_name: "SecureRegion",
        measured: pair.measured_ns,
        unit: "ns",
        ratio: pair.ratio,
        ratio_low: pair.ratio_low,
        ratio_high: pair.ratio_high,
        goal: Goal::AtMost(1.05),
    }
}

/// Row 1b: `SecureRegion::scope` against the raw pair, both on a thread of the process (in its
/// own context, not attached), where the scope needs no process reference (issue #21).
fn scoped_row(config: &Config) -> Row {
    let process = Process::new();
    process.set_double_fetch_detection(false);
    let page = allocate(&process, PAGE_SIZE) as usize;
    let config = *config;
    let pair = process.run_thread(move || {
        let page = page as *const u8;
        compare(
            &config,
            &mut || assert!(mmsecure_bench_raw(black_box(page), black_box(PAGE_SIZE))),
            &mut || assert!(mmsecure_bench_scoped(black_box(page), black_box(PAGE_SIZE))),
        )
    });
    Row {
        id: "secure_scoped".to_owned(),
        what: "secure + end of scope, 1 page".to_owned(),
        baseline_name: "raw pair",
        baseline: pair.baseline_ns,
        measured_name: "SecureRegion::scope",
        measured: pair.measured_ns,
        unit: "ns",
        ratio: pair.ratio,
        ratio_low: pair.ratio_low,
        ratio_high: pair.ratio_high,
        goal: Goal::AtMost(1.03),
    }
}

/// A plain buffer of `len` bytes starting on a page boundary, as the model's user memory does,
/// so that alignment is not what the copy rows compare.
struct Plain {
    bytes: Vec<u8>,
    offset: usize,
    len: usize,
}

impl Plain {
    fn new(len: usize, fill: u8) -> Plain {
        let bytes = vec![fill; len + PAGE_SIZE];
        let offset = bytes.as_ptr().align_offset(PAGE_SIZE);
        Plain { bytes, offset, len }
    }

    fn slice(&self, len: usize) -> &[u8] {
        &self.bytes[self.offset..self.offset + len.min(self.len)]
    }

    fn slice_mut(&mut self, len: usize) -> &mut [u8] {
        let len = len.min(self.len);
        &mut self.bytes[self.offset..self.offset + len]
    }
}

/// Row 2: `SecureRegion::read_slice` / `write_slice` against `copy_nonoverlapping` between plain buffers,
/// and against the backend's own guarded copy (`mmsecure_sys::copy_guarded`) between the same
/// user and driver buffers: what hand-written FFI on the same backend pays. On the host the first
/// includes the model's page checks (its MMU); the second leaves only what the crate adds (the
/// bounds, the IRQL and the process check).
fn copy_rows(config: &Config) -> Vec<Row> {
    let largest = COPY_SIZES[COPY_SIZES.len() - 1];
    let process = Process::new();
    // The rows re-read one buffer on purpose: the model's double-fetch detector would report
    // every read and measure itself. Off, it costs each copy one load.
    process.set_double_fetch_detection(false);
    let _in_process = process.attach();
    let user = allocate(&process, largest);
    let region = match SecureRegion::new(user, largest, ProbeMode::ReadWrite) {
        Ok(region) => region,
        Err(error) => panic!("securing the copy buffer failed: {error}"),
    };
    region
        .write_slice(0, Plain::new(largest, 0x5A).slice(largest))
        .expect("fill the user buffer");
    let source = Plain::new(largest, 0xA5);
    let mut plain_destination = Plain::new(largest, 0);
    let mut driver_buffer = Plain::new(largest, 0);
    // The raw guarded copy's own driver buffer, so that both sides of a pair can borrow theirs.
    let mut raw_driver_buffer = Plain::new(largest, 0);

    let mut rows = Vec::new();
    for len in COPY_SIZES {
        for write in [false, true] {
            for guarded in [false, true] {
                let mut memcpy = || {
                    let src = black_box(source.slice(len));
                    let dst = black_box(plain_destination.slice_mut(len));
                    // SAFETY: both slices are `len` bytes of distinct buffers.
                    unsafe { ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr(), src.len()) };
                    black_box(dst);
                };
                let mut raw_guarded = || {
                    let driver = black_box(raw_driver_buffer.slice_mut(len));
                    let (dst, src) = if write {
                        (black_box(user), driver.as_ptr())
                    } else {
                        (driver.as_mut_ptr(), black_box(user) as *const u8)
                    };
                    // SAFETY: `user` is `largest` bytes of committed read-write user memory of
                    // the attached process; `driver` is `len` bytes of the driver's own.
                    let status = unsafe { mmsecure_sys::copy_guarded(dst, src, len) };
                    assert_eq!(status, 0);
                    black_box(driver);
                };
                let baseline: &mut dyn FnMut() = if guarded {
                    &mut raw_guarded
                } else {
                    &mut memcpy
                };
                let pair = if write {
                    compare(config, baseline, &mut || {
                        let data = black_box(source.slice(len));
                        black_box(&region)
                            .write_slice(black_box(0), data)
                            .expect("write inside the region");
                    })
                } else {
                    compare(config, baseline, &mut || {
                        let out = black_box(driver_buffer.slice_mut(len));
                        black_box(&region)
                            .read_slice(black_box(0), out)
                            .expect("read inside the region");
                        black_box(out);
                    })
                };
                let gbps = |ns: f64| len as f64 / ns;
                let (id, what) = if write {
                    ("write", "SecureRegion::write_slice")
                } else {
                    ("read", "SecureRegion::read_slice")
                };
                rows.push(Row {
                    id: format!("{id}_{len}{}", if guarded { "_vs_guarded" } else { "" }),
                    what: format!("{what}, {}", size_name(len)),
                    baseline_name: if guarded {
                        "copy_guarded"
                    } else {
                        "copy_nonoverlapping"
                    },
                    baseline: gbps(pair.baseline_ns),
                    measured_name: if write { "write" } else { "read" },
                    measured: gbps(pair.measured_ns),
                    unit: "GB/s",
                    // Throughput ratio: the inverse of the time ratio.
                    ratio: 1.0 / pair.ratio,
                    ratio_low: 1.0 / pair.ratio_high,
                    ratio_high: 1.0 / pair.ratio_low,
                    goal: if len >= 4096 {
                        Goal::AtLeast(0.95)
                    } else {
                        Goal::None
                    },
                });
            }
        }
    }
    drop(region);
    rows
}

/// A process with `standing` secures already on the allocation `address` lies in, each one page
/// of it: the per-allocation, per-process and global tables all hold `standing` entries. Returns
/// the process and the measured page.
fn with_standing(standing: usize) -> (Process, *mut u8) {
    let process = Process::new();
    process.set_double_fetch_detection(false); // as in row 1
    let base = allocate(&process, STANDING_PAGES * PAGE_SIZE);
    {
        let _in_process = process.attach();
        for i in 0..standing {
            let page = base.wrapping_add((i % STANDING_PAGES) * PAGE_SIZE);
            // SAFETY: the routine validates the range itself; the handle is deliberately kept
            // standing until the process is dropped, which forgets it.
            let handle = unsafe {
                MmSecureVirtualMemory(page as PVOID, PAGE_SIZE as SIZE_T, PAGE_READWRITE)
            };
            assert!(!handle.is_null(), "standing secure {i} refused");
        }
    }
    assert_eq!(process.secure_count(), standing);
    (process, base)
}

/// Row 3: the raw secure + unsecure pair with 10, 1 000 and 100 000 secures standing, each
/// against the 10 row. Measured one count after another, never two processes at once: the
/// model's global handle table would otherwise hold the other processes' secures too.
fn standing_rows(config: &Config) -> Vec<Row> {
    let mut times = Vec::new();
    for standing in STANDING {
        let (process, page) = with_standing(standing);
        let _in_process = process.attach();
        let ns = measure(config, &mut || {
            assert!(mmsecure_bench_raw(black_box(page), black_box(PAGE_SIZE)));
        });
        times.push((standing, ns));
    }
    let first = times[0].1;
    times
        .iter()
        .map(|&(standing, ns)| Row {
            id: format!("standing_{standing}"),
            what: format!("model secure + unsecure, {standing} standing"),
            baseline_name: "10 standing",
            baseline: first,
            measured_name: "this many",
            measured: ns,
            unit: "ns",
            ratio: ns / first,
            ratio_low: ns / first,
            ratio_high: ns / first,
            goal: if standing == STANDING[STANDING.len() - 1] {
                Goal::AtMost(3.0)
            } else {
                Goal::None
            },
        })
        .collect()
}

/// A process with a page secured for row 4, this thread attached, the double-fetch detector off
/// (the row re-reads one header on purpose, and measures what the crate costs).
fn header_region() -> (Process, SecureRegion, mmsecure_sys::host::Attach) {
    let process = Process::new();
    process.set_double_fetch_detection(false);
    let attach = process.attach();
    let page = allocate(&process, PAGE_SIZE);
    let region = match SecureRegion::new(page, PAGE_SIZE, ProbeMode::ReadOnly) {
        Ok(region) => region,
        Err(error) => panic!("securing the header page failed: {error}"),
    };
    (process, region, attach)
}

/// Row 4: a reader's `read::<Header>()` of a 16-byte header against `SecureRegion::read::<Header>(0)`.
fn reader_row(config: &Config) -> Row {
    let (_process, region, _in_process) = header_region();
    let region_ptr = &region as *const SecureRegion as *const u8;
    let pair = compare(
        config,
        &mut || assert!(mmsecure_bench_region_read(black_box(region_ptr), 16)),
        &mut || assert!(mmsecure_bench_reader(black_box(region_ptr), 16)),
    );
    Row {
        id: "reader_header".to_owned(),
        what: "read a 16-byte header".to_owned(),
        baseline_name: "SecureRegion::read",
        baseline: pair.baseline_ns,
        measured_name: "Reader::read",
        measured: pair.measured_ns,
        unit: "ns",
        ratio: pair.ratio,
        ratio_low: pair.ratio_low,
        ratio_high: pair.ratio_high,
        goal: Goal::AtMost(1.05),
    }
}

/// A process with a page holding a native `UNICODE_STRING` of 64 characters at its start (the
/// string at offset 64), this thread attached, the detector off.
fn capture_page() -> (Process, *mut u8, mmsecure_sys::host::Attach) {
    let process = Process::new();
    process.set_double_fetch_detection(false);
    let attach = process.attach();
    let page = allocate(&process, PAGE_SIZE);
    let text = page.wrapping_add(64);
    let mut header = [0u8; 16];
    header[0..2].copy_from_slice(&128u16.to_ne_bytes());
    header[2..4].copy_from_slice(&128u16.to_ne_bytes());
    header[8..16].copy_from_slice(&(text as u64).to_ne_bytes());
    process.write(page, &header).expect("write the structure");
    process.write(text, &[b'a'; 128]).expect("write the string");
    (process, page, attach)
}

/// Issue #20's rows: `read_user::<[u8; 64]>` against the C idiom and against the secure-based
/// path it replaced; a slice reader of 4 KiB against `copy_nonoverlapping`; a capture.
fn user_rows(config: &Config) -> Vec<Row> {
    let (process, page, _in_process) = capture_page();
    let ns_row =
        |id: &str, what: &str, base: &'static str, meas: &'static str, pair: Pair, goal| Row {
            id: id.to_owned(),
            what: what.to_owned(),
            baseline_name: base,
            baseline: pair.baseline_ns,
            measured_name: meas,
            measured: pair.measured_ns,
            unit: "ns",
            ratio: pair.ratio,
            ratio_low: pair.ratio_low,
            ratio_high: pair.ratio_high,
            goal,
        };
    let idiom = compare(
        config,
        &mut || assert!(mmsecure_bench_c_idiom(black_box(page), 64)),
        &mut || assert!(mmsecure_bench_read_user(black_box(page), 64)),
    );
    let secure = compare(
        config,
        &mut || assert!(mmsecure_bench_read_user_secure(black_box(page), 64)),
        &mut || assert!(mmsecure_bench_read_user(black_box(page), 64)),
    );
    let capture = compare(
        config,
        &mut || assert!(mmsecure_bench_c_idiom(black_box(page), 64)),
        &mut || assert!(mmsecure_bench_capture(black_box(page), 64)),
    );
    let len = 4096;
    let mut plain = Plain::new(len, 0);
    let mut driver = Plain::new(len, 0);
    // The reader reads on through 256 KiB of user memory, 4 KiB a time, as a request's payload
    // is read; a new slice is made when it is used up (once every 64 reads), so the row weighs
    // the reader's copies, as the SecureRegion rows do, with the slice's making amortized. The
    // baseline walks 256 KiB of a plain buffer the same way: the same copies, without the checks.
    let span = 256 << 10;
    let source = Plain::new(span, 0xA5);
    let mut at = 0;
    let user = allocate(&process, span);
    let new_reader = || UserSlice::new(user, span).expect("a user range").reader();
    let mut slice_reader = new_reader();
    let reader = compare(
        config,
        &mut || {
            if at + len > span {
                at = 0;
            }
            let src = black_box(&source.slice(span)[at..at + len]);
            let dst = black_box(plain.slice_mut(len));
            // SAFETY: both slices are `len` bytes of distinct buffers.
            unsafe { ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr(), len) };
            black_box(dst);
            at += len;
        },
        &mut || {
            if slice_reader.len() < len {
                slice_reader = new_reader();
            }
            let out = black_box(driver.slice_mut(len));
            slice_reader.read_slice(out).expect("read 4 KiB");
            black_box(out);
        },
    );
    vec![
        ns_row(
            "user_read_64",
            "read_user::<[u8; 64]>",
            "C idiom",
            "read_user",
            idiom,
            Goal::AtMost(1.05),
        ),
        ns_row(
            "user_read_secure_64",
            "read_user::<[u8; 64]> vs the secure path",
            "secure path",
            "read_user",
            secure,
            Goal::None,
        ),
        Row {
            id: "user_slice_reader_4096".to_owned(),
            what: "UserSlice reader, 4 KiB".to_owned(),
            baseline_name: "copy_nonoverlapping",
            baseline: len as f64 / reader.baseline_ns,
            measured_name: "UserSlice",
            measured: len as f64 / reader.measured_ns,
            unit: "GB/s",
            ratio: 1.0 / reader.ratio,
            ratio_low: 1.0 / reader.ratio_high,
            ratio_high: 1.0 / reader.ratio_low,
            goal: Goal::AtLeast(0.95),
        },
        ns_row(
            "user_capture_64",
            "capture_unicode_string, 64 chars",
            "C idiom 64 B",
            "capture",
            capture,
            Goal::None,
        ),
    ]
}

fn allocate(process: &Process, len: usize) -> *mut u8 {
    match process.allocate(len, PAGE_READWRITE) {
        Ok(address) => address,
        Err(status) => panic!("the model refused to allocate {len} bytes: {status:?}"),
    }
}

fn size_name(len: usize) -> String {
    match len {
        len if len >= 1 << 20 && len % (1 << 20) == 0 => format!("{} MiB", len >> 20),
        len if len >= 1 << 10 && len % (1 << 10) == 0 => format!("{} KiB", len >> 10),
        len => format!("{len} B"),
    }
}

// ---------------------------------------------------------------------------------------------
// Output.

fn print_table(config: &Config, rows: &[Row]) {
    println!(
        "mmsecure benchmarks, host backend, {} mode: median of {} rounds of >= {:?} batches",
        config.name, config.rounds, config.batch
    );
    println!(
        "{:<44} {:>26} {:>26} {:>8} {:>15} {:>9} {:>7}",
        "row", "baseline", "measured", "ratio", "ratio IQR", "goal", ""
    );
    for row in rows {
        let figure = |name: &str, value: f64| format!("{name} {value:.2} {}", row.unit);
        println!(
            "{:<44} {:>26} {:>26} {:>7.3}x {:>15} {:>9} {:>7}",
            row.what,
            figure(row.baseline_name, row.baseline),
            figure(row.measured_name, row.measured),
            row.ratio,
            format!("{:.3}-{:.3}", row.ratio_low, row.ratio_high),
            row.goal.text(),
            row.goal.verdict(row.ratio),
        );
    }
    println!(
        "ratios: secure + drop = SecureRegion time / raw time; copies = throughput / \
         copy_nonoverlapping's; standing = time / time with 10 standing; header = \
         Reader::read time / SecureRegion::read time"
    );
}

fn print_tsv(rows: &[Row]) {
    for row in rows {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            row.id,
            row.what,
            row.baseline_name,
            row.baseline,
            row.measured_name,
            row.measured,
            row.unit,
            row.ratio,
            row.ratio_low,
            row.ratio_high,
            row.goal.tsv(),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// `--op`: one measured function, N times, for callgrind.

/// Runs `op` on `page` `iters` times.
#[inline(never)]
fn repeat(op: Op, page: *mut u8, iters: u64) {
    for _ in 0..iters {
        assert!(op(black_box(page), black_box(PAGE_SIZE)));
    }
}

fn run_op(name: &str, iters: u64) -> Result<(), String> {
    let header_op: Option<Op> = match name {
        "region-read" => Some(mmsecure_bench_region_read),
        "reader" => Some(mmsecure_bench_reader),
        _ => None,
    };
    if let Some(op) = header_op {
        let (_process, region, _in_process) = header_region();
        repeat(op, &region as *const SecureRegion as *mut u8, iters);
        return Ok(());
    }
    let user_op: Option<Op> = match name {
        "c-idiom" => Some(mmsecure_bench_c_idiom),
        "read-user" => Some(mmsecure_bench_read_user),
        "read-user-secure" => Some(mmsecure_bench_read_user_secure),
        "capture" => Some(mmsecure_bench_capture),
        _ => None,
    };
    if let Some(op) = user_op {
        let (_process, page, _in_process) = capture_page();
        repeat(op, page, iters);
        return Ok(());
    }
    if name == "scoped" || name == "raw-own-thread" {
        let op: Op = if name == "scoped" {
            mmsecure_bench_scoped
        } else {
            mmsecure_bench_raw
        };
        let (process, page) = with_standing(0);
        let page = page as usize;
        process.run_thread(move || repeat(op, page as *mut u8, iters));
        return Ok(());
    }
    let (op, standing): (Op, usize) = match name {
        "empty" => (mmsecure_bench_empty, 0),
        "raw" => (mmsecure_bench_raw, 0),
        "wrapper" => (mmsecure_bench_wrapper, 0),
        other => match other.strip_prefix("standing-").map(str::parse::<usize>) {
            Some(Ok(standing)) => (mmsecure_bench_raw, standing),
            _ => {
                return Err(format!(
                    "unknown op `{other}` (empty, raw, wrapper, scoped, raw-own-thread, \
                     region-read, reader, c-idiom, read-user, read-user-secure, capture, \
                     standing-<count>)"
                ))
            }
        },
    };
    let (process, page) = with_standing(standing);
    let _in_process = process.attach();
    repeat(op, page, iters);
    Ok(())
}

fn main() -> ExitCode {
    let mut config = FULL;
    let mut tsv = false;
    let mut op = None;
    let mut iters = 10_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--quick" => config = QUICK,
            "--tsv" => tsv = true,
            "--op" => op = args.next(),
            "--iters" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => iters = n,
                None => {
                    eprintln!("--iters needs a number");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!(
                    "unknown argument `{other}`: usage: secure [--quick] [--tsv] | \
                     --op OP [--iters N]"
                );
                return ExitCode::from(2);
            }
        }
    }
    if let Some(op) = op {
        return match run_op(&op, iters) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{message}");
                ExitCode::from(2)
            }
        };
    }

    let mut rows = vec![secure_drop_row(&config), scoped_row(&config)];
    rows.extend(copy_rows(&config));
    rows.extend(standing_rows(&config));
    rows.push(reader_row(&config));
    rows.extend(user_rows(&config));
    if tsv {
        print_tsv(&rows);
    } else {
        print_table(&config, &rows);
    }
    ExitCode::SUCCESS
}
