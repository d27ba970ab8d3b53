//! The pushes a worker holds on their headers while their bodies arrive, so that a
//! body that never comes (a client that stalls, or a plugin config without
//! `allow_on_headers_stop_iteration`, where Envoy never hands the filter the body)
//! is answered 408 from the root context's tick instead of hanging the stream.
//! Pure: the host keeps one of these per worker and feeds it the clock.
//!
//! A local reply sent from the tick is not sent at once: proxy-wasm-cpp-host queues
//! it until the tick returns, and each queued reply runs that stream's response
//! callbacks, at whose end the host drains the rest of the queue, nested one level
//! deeper (`doAfterVmCallActions` in a `DeferAfterCallActions` destructor). About
//! 300 replies from one tick exhausted V8's stack and left the VM dead, so a tick
//! answers at most [`ANSWERS_PER_TICK`] and the root ticks fast while more are due.

use std::cell::RefCell;
use std::time::Duration;

/// How long a held push may wait for (the rest of) its body: WeChat sends it with the
/// headers, and gives up on the whole request after 5 s. Counted from the headers and
/// again from each part of the body that arrives, so a slow body is waited for and a
/// stalled one is answered 408.
pub const BODY_DEADLINE_MS: u64 = 3000;

/// Local replies one tick may queue: each nests the host's queue one level deeper.
pub const ANSWERS_PER_TICK: usize = 16;

/// Of a tick's [`ANSWERS_PER_TICK`], what the 408s may take while pushes wait on
/// their headers: the rest is kept for letting waiting pushes go, so a push from
/// WeChat held behind a crowd of stalled ones is not kept waiting until every one
/// of them has been answered.
pub fn deadlines_per_tick(probing: bool) -> usize {
    if probing {
        ANSWERS_PER_TICK - 4
    } else {
        ANSWERS_PER_TICK
    }
}

/// How often a held push whose body has not reached the filter is looked at again
/// (the root context ticks this fast while any waits).
pub const PROBE_MS: u64 = 10;

/// Held pushes one tick looks at (a hostcall each): a crowd of stalled clients costs
/// a bounded amount of work per tick, and each is looked at again in turn.
pub const PROBES_PER_TICK: usize = 64;

/// Pushes a worker lets upstream, in stream mode, whose body has not yet arrived and
/// passed: each holds a backend connection until it does, or until its deadline. A
/// push beyond these waits on its headers, off the backend, until Envoy holds its
/// whole body (a push from WeChat, whose body comes with its headers, goes on at the
/// next tick); one that stalls is answered 408 there and never reaches the backend.
pub const MAX_STREAMED_UNVERIFIED: usize = 16;

/// Pushes a worker holds on their headers with no body yet (see [`PROBE_MS`]); one
/// more is refused 503 with `Retry-After` (reason `busy`) rather than held.
pub const MAX_WAITING: usize = 1024;

/// How this host hands a Wasm filter a push's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Not known yet: pushes are held and probed.
    Unknown,
    /// The headers wait while the body arrives (`allow_on_headers_stop_iteration`).
    Hold,
    /// The headers go on first; the gate buffers the body in the body phase.
    Stream,
}

/// What a push showed about the host. Both are the host's own doing, never a
/// client's: a slow or stalled client sends no byte, and so shows nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Its body was handed to the filter while its headers were held: the host holds.
    BodyWhileHeld,
    /// Envoy counted bytes of its body while its headers were held, and did not hand
    /// them to the filter: the host keeps a paused request's body back.
    BodyKeptByHost,
}

/// Envoy's count of a held push's bytes (`request.total_size`: its headers and the
/// body bytes the connection manager has received), when the push was held and now.
/// Envoy counts a body's bytes before any filter sees them, so a count that grew
/// while the filter was handed nothing is the host holding the body back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCount {
    pub when_held: Option<u64>,
    pub now: Option<u64>,
}

impl ByteCount {
    /// Body bytes Envoy has received since the push was held (0: none, or no count).
    pub fn arrived(self) -> u64 {
        match (self.when_held, self.now) {
            (Some(then), Some(now)) => now.saturating_sub(then),
            _ => 0,
        }
    }

    /// Decodes the property's value: a little-endian 64-bit integer.
    pub fn decode(raw: Option<&[u8]>) -> Option<u64> {
        let bytes: [u8; 8] = raw?.try_into().ok()?;
        u64::try_from(i64::from_le_bytes(bytes)).ok()
    }
}

/// What a worker has learnt of its host's body mode.
#[derive(Debug, Clone, Copy)]
pub struct BodyModeLearner {
    mode: BodyMode,
}

impl Default for BodyModeLearner {
    fn default() -> Self {
        BodyModeLearner {
            mode: BodyMode::Unknown,
        }
    }
}

impl BodyModeLearner {
    pub fn mode(&self) -> BodyMode {
        self.mode
    }

    /// Takes one observation in; the mode, when this one settled it. One is enough:
    /// each can only come from the host.
    pub fn observe(&mut self, observation: Observation) -> Option<BodyMode> {
        if self.mode != BodyMode::Unknown {
            return None;
        }
        self.mode = match observation {
            Observation::BodyWhileHeld => BodyMode::Hold,
            Observation::BodyKeptByHost => BodyMode::Stream,
        };
        Some(self.mode)
    }
}

/// How often the root context ticks: every 10 ms while more held pushes are due than
/// one tick may answer; every 100 ms while the live list is awaited (so no worker
/// waits long to install a list another has loaded); else every second, and never
/// longer: the worker's counts are handed to Envoy from the tick, so its stats are
/// exact within a second.
pub fn tick_period(backlog: bool, awaiting_live_list: bool) -> Duration {
    match (backlog, awaiting_live_list) {
        (true, _) => Duration::from_millis(10),
        (false, true) => Duration::from_millis(100),
        (false, false) => Duration::from_secs(1),
    }
}

/// The held requests of one worker: (HTTP context id, what the host needs to act on
/// it, deadline in Unix ms), in the order they were held.
pub struct HeldRequests<T> {
    waiting: RefCell<Vec<(u32, T, u64)>>,
}

impl<T> Default for HeldRequests<T> {
    fn default() -> Self {
        HeldRequests {
            waiting: RefCell::new(Vec::new()),
        }
    }
}

impl<T> HeldRequests<T> {
    pub fn hold(&self, context_id: u32, handle: T, deadline_ms: u64) {
        self.waiting
            .borrow_mut()
            .push((context_id, handle, deadline_ms));
    }

    pub fn release(&self, context_id: u32) {
        self.waiting
            .borrow_mut()
            .retain(|(id, _, _)| *id != context_id);
    }

    /// Takes out at most `limit` of the requests whose deadline has passed at
    /// `now_ms`, earliest first.
    pub fn expired(&self, now_ms: u64, limit: usize) -> Vec<(u32, T)> {
        let mut waiting = self.waiting.borrow_mut();
        let mut late = Vec::new();
        let mut kept = Vec::with_capacity(waiting.len());
        for (id, handle, deadline) in waiting.drain(..) {
            if deadline <= now_ms && late.len() < limit {
                late.push((id, handle));
            } else {
                kept.push((id, handle, deadline));
            }
        }
        *waiting = kept;
        late
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.borrow().is_empty()
    }

    pub fn len(&self) -> usize {
        self.waiting.borrow().len()
    }

    /// Takes out the first `limit` requests, whatever their deadline: one tick's
    /// share of the probes. Put back at the end ([`Self::hold`]), they come round
    /// again after the others.
    pub fn take_front(&self, limit: usize) -> Vec<(u32, T, u64)> {
        let mut waiting = self.waiting.borrow_mut();
        let n = limit.min(waiting.len());
        waiting.drain(..n).collect()
    }

    /// True when some held request's deadline has passed at `now_ms`.
    pub fn any_expired(&self, now_ms: u64) -> bool {
        self.waiting
            .borrow()
            .iter()
            .any(|&(_, _, deadline)| deadline <= now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_limit_is_taken_per_call_earliest_first() {
        let held = HeldRequests::default();
        for id in 1..=40 {
            held.hold(id, (), 1000 + u64::from(id));
        }
        held.release(3);
        assert!(!held.any_expired(1000));
        let ids = |v: Vec<(u32, ())>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(held.expired(1000, ANSWERS_PER_TICK)), Vec::<u32>::new());
        let first = ids(held.expired(2000, ANSWERS_PER_TICK));
        assert_eq!(first, (1..=17).filter(|&i| i != 3).collect::<Vec<_>>());
        assert!(held.any_expired(2000), "more are due: the host ticks fast");
        assert_eq!(held.expired(2000, ANSWERS_PER_TICK).len(), 16);
        assert_eq!(
            ids(held.expired(2000, ANSWERS_PER_TICK)),
            vec![34, 35, 36, 37, 38, 39, 40]
        );
        assert!(!held.any_expired(u64::MAX));
    }

    #[test]
    fn one_observation_of_the_host_settles_the_mode_for_good() {
        let mut l = BodyModeLearner::default();
        assert_eq!(l.mode(), BodyMode::Unknown);
        assert_eq!(l.observe(Observation::BodyWhileHeld), Some(BodyMode::Hold));
        assert_eq!(l.observe(Observation::BodyKeptByHost), None);
        assert_eq!(l.mode(), BodyMode::Hold, "settled for good");
        let mut l = BodyModeLearner::default();
        assert_eq!(
            l.observe(Observation::BodyKeptByHost),
            Some(BodyMode::Stream)
        );
        assert_eq!(l.observe(Observation::BodyWhileHeld), None);
        assert_eq!(l.mode(), BodyMode::Stream);
    }

    #[test]
    fn the_byte_count_is_what_envoy_received_since_the_push_was_held() {
        let count = |when_held, now| ByteCount { when_held, now }.arrived();
        assert_eq!(count(Some(277), Some(307)), 30);
        assert_eq!(count(Some(277), Some(277)), 0, "a slow client: nothing yet");
        assert_eq!(count(Some(277), Some(261)), 0, "headers shrank: nothing");
        assert_eq!(count(None, Some(307)), 0, "no count: no evidence");
        assert_eq!(count(Some(277), None), 0);
        assert_eq!(
            ByteCount::decode(Some(&[21, 1, 0, 0, 0, 0, 0, 0])),
            Some(277)
        );
        assert_eq!(ByteCount::decode(Some(&[21, 1, 0])), None);
        assert_eq!(ByteCount::decode(Some(&[255; 8])), None, "negative");
        assert_eq!(ByteCount::decode(None), None);
    }

    #[test]
    fn probes_come_round_in_turn() {
        let held = HeldRequests::default();
        for id in 1..=5 {
            held.hold(id, (), 0);
        }
        let first: Vec<u32> = held.take_front(2).into_iter().map(|(id, ..)| id).collect();
        assert_eq!(first, [1, 2]);
        held.hold(1, (), 0);
        let next: Vec<u32> = held.take_front(10).into_iter().map(|(id, ..)| id).collect();
        assert_eq!(next, [3, 4, 5, 1]);
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn waiting_pushes_keep_a_share_of_the_tick() {
        assert_eq!(deadlines_per_tick(false), ANSWERS_PER_TICK);
        assert!(deadlines_per_tick(true) < ANSWERS_PER_TICK);
        assert!(deadlines_per_tick(true) > 0);
    }

    #[test]
    fn a_backlog_ticks_fastest_then_a_missing_list_then_once_a_second() {
        assert_eq!(tick_period(true, true), Duration::from_millis(10));
        assert_eq!(tick_period(true, false), Duration::from_millis(10));
        assert_eq!(tick_period(false, true), Duration::from_millis(100));
        assert_eq!(tick_period(false, false), Duration::from_secs(1));
    }

    #[test]
    fn a_request_not_yet_due_stays_held() {
        let held = HeldRequests::default();
        held.hold(1, "one", 5000);
        held.hold(2, "two", 1000);
        assert_eq!(held.expired(2000, 16), vec![(2, "two")]);
        assert!(!held.any_expired(2000));
        assert_eq!(held.expired(5000, 16), vec![(1, "one")]);
    }
}
