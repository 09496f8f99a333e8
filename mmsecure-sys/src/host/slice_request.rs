//! Requests without a secure: a wrapper's probed slice of user memory tells the double-fetch
//! detector ([`fetch`](super::fetch)) that its life is one request, as a secure's is
//! ([`report_request_begin`](crate::report_request_begin)).
//!
//! A request is recorded in the process's detector under a token that no secure handle can be
//! (even, below 2^47; handles are tagged in their top bits on 64-bit hosts and odd on 32-bit
//! ones), and counted here: each cursor over one slice holds the request, the last one ends it.

use core::sync::atomic::{AtomicUsize, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::process::ProcessInner;
use super::{lock, object};
use crate::PEPROCESS;

/// Live tokens: the process whose detector holds the request, and how many holders it has. The
/// process is held weakly: a `Process` value counts as a reference on the process object, and
/// the detector must not keep alive an object whose only reference is the slice's own.
static LIVE: Mutex<Option<HashMap<usize, Holders>>> = Mutex::new(None);
/// A live token's process, held weakly, and its count of holders.
type Holders = (Weak<ProcessInner>, usize);
/// The next token's number.
static NEXT: AtomicUsize = AtomicUsize::new(1);

/// Opens a request on `address..address + len` in `process`'s detector: its token, or 0 when
/// `process` names no live process or its detector is off (nothing is recorded then).
pub(crate) fn request_begin(process: PEPROCESS, address: usize, len: usize) -> usize {
    let owner = match object::process_of(process) {
        Some(owner) => owner,
        None => return 0,
    };
    // With the detector off, the request is not tracked, as a secure made then is not (and the
    // slice's copies pay for no table).
    if !owner.inner.fetches.is_enabled() {
        return 0;
    }
    // In u64, so that 32-bit hosts compile it; the truncation there keeps the token even.
    let token = ((NEXT.fetch_add(1, Ordering::Relaxed) as u64 % (1 << 46)) * 2) as usize;
    if token == 0 {
        return 0;
    }
    owner.inner.fetches.opened(token, address, len);
    lock(&LIVE)
        .get_or_insert_with(HashMap::new)
        .insert(token, (Arc::downgrade(&owner.inner), 1));
    token
}

/// One more holder of `token`.
pub(crate) fn request_retain(token: usize) {
    if let Some((_, holders)) = lock(&LIVE).get_or_insert_with(HashMap::new).get_mut(&token) {
        *holders += 1;
    }
}

/// One holder of `token` is done; the last one closes the request.
pub(crate) fn request_end(token: usize) {
    let mut live = lock(&LIVE);
    let table = live.get_or_insert_with(HashMap::new);
    let last = match table.get_mut(&token) {
        Some((_, holders)) => {
            *holders -= 1;
            *holders == 0
        }
        None => false,
    };
    if !last {
        return;
    }
    let removed = table.remove(&token);
    drop(live);
    if let Some(owner) = removed.and_then(|(owner, _)| owner.upgrade()) {
        owner.fetches.closed(token);
    }
}
