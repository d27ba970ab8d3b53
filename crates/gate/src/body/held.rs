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
