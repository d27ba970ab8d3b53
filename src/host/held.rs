//! The pushes a worker holds on their headers while their bodies arrive, so that a
//! body that never comes (a client that stalls, or a plugin config without
//! `allow_on_headers_stop_iteration`, where Envoy never hands the filter the body)
//! is answered 408 from the root context's tick instead of hanging the stream.
//!
//! A local reply sent from the tick is not sent at once: proxy-wasm-cpp-host queues
//! it until the tick returns, and each queued reply runs that stream's response
//! callbacks, at whose end the host drains the rest of the queue, nested one level
//! deeper (`doAfterVmCallActions` in a `DeferAfterCallActions` destructor). About
//! 300 replies from one tick exhausted V8's stack and left the VM dead, so a tick
//! answers at most [`ANSWERS_PER_TICK`] and the root ticks fast while more are due.

use std::cell::{Cell, RefCell};

/// How long a held push may wait for its body: WeChat sends it with the headers,
/// and gives up on the whole request after 5 s.
pub const BODY_DEADLINE_MS: u64 = 3000;

/// Local replies one tick may queue: each nests the host's queue one level deeper.
pub const ANSWERS_PER_TICK: usize = 16;

#[derive(Default)]
pub struct HeldRequests {
    /// (HTTP context id, deadline in Unix ms), in the order they were held.
    waiting: RefCell<Vec<(u32, u64)>>,
    /// The operator has been told once about the likely missing plugin setting.
    warned: Cell<bool>,
}

impl HeldRequests {
    pub fn hold(&self, context_id: u32, deadline_ms: u64) {
        self.waiting.borrow_mut().push((context_id, deadline_ms));
    }

    pub fn release(&self, context_id: u32) {
        self.waiting
            .borrow_mut()
            .retain(|&(id, _)| id != context_id);
    }

    /// Takes out at most `limit` of the requests whose deadline has passed at
    /// `now_ms`, earliest first.
    pub fn expired(&self, now_ms: u64, limit: usize) -> Vec<u32> {
        let mut waiting = self.waiting.borrow_mut();
        let mut late = Vec::new();
        waiting.retain(|&(id, deadline)| {
            if deadline <= now_ms && late.len() < limit {
                late.push(id);
                false
            } else {
                true
            }
        });
        late
    }

    /// True when some held request's deadline has passed at `now_ms`.
    pub fn any_expired(&self, now_ms: u64) -> bool {
        self.waiting
            .borrow()
            .iter()
            .any(|&(_, deadline)| deadline <= now_ms)
    }

    /// True the first time only.
    pub fn first_warning(&self) -> bool {
        !self.warned.replace(true)
    }
}
