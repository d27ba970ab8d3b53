//! The pushes a worker holds on their headers while their bodies arrive, so that a
//! body that never comes (a client that stalls, or a plugin config without
//! `allow_on_headers_stop_iteration`, where Envoy never hands the filter the body)
//! is answered 408 from the root context's tick instead of hanging the stream.

use std::cell::{Cell, RefCell};

/// How long a held push may wait for its body: WeChat sends it with the headers,
/// and gives up on the whole request after 5 s.
pub const BODY_DEADLINE_MS: u64 = 3000;

#[derive(Default)]
pub struct HeldRequests {
    /// (HTTP context id, deadline in Unix ms).
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

    /// Takes out the requests whose deadline has passed at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> Vec<u32> {
        let mut waiting = self.waiting.borrow_mut();
        let (late, on_time): (Vec<_>, Vec<_>) = waiting
            .iter()
            .partition(|&&(_, deadline)| deadline <= now_ms);
        *waiting = on_time;
        late.into_iter().map(|(id, _)| id).collect()
    }

    /// True the first time only.
    pub fn first_warning(&self) -> bool {
        !self.warned.replace(true)
    }
}
