//! One worker's part in the API role: see [`super`]. A caller's call here; the tick,
//! the token fetch and the replies to the root context's calls in [`tick`].

mod tick;

use crate::host::{log, Body, Headers, Host};
use crate::metrics::Metrics;
use crate::shared_data;
use gate::api::call::{Call, Next, Reply};
use gate::api::refusal::Refusal;
use gate::api::ticket::{Ticket, TicketType};
use gate::api::token::{self, TokenFetch, TokenNow};
use gate::api::Answer;
use gate::body::{BodyMode, ByteCount};
use gate::config::ApiConfig;
use gate::metrics::Counter;
use gate::token::state::RefreshState;
use gate::token::Outgoing;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

/// A caller's call, shared with the root context while it waits or is in flight.
pub type SharedCall = Rc<RefCell<Call>>;

/// The most waiting calls a tick sends or answers: hundreds of local replies in one
/// VM call exhaust V8's stack (FIELD-NOTES), so the rest wait for the next tick.
pub const ACTIONS_PER_TICK: usize = 16;
/// The tick while calls wait, a fetch runs or bodies are probed.
pub const BUSY_TICK: Duration = Duration::from_millis(10);

struct Waiter {
    call: SharedCall,
    /// Unix seconds when it began to wait.
    since: i64,
}

/// What a worker's API role keeps from configuration to configuration.
#[derive(Default)]
pub struct DeskState {
    waiting: RefCell<BTreeMap<u32, Waiter>>,
    /// Calls the root context sent: call id → the caller's context and call.
    in_flight: RefCell<HashMap<u32, (u32, SharedCall)>>,
    /// The token fetch this worker holds the lease for: its call id.
    fetch: RefCell<Option<(u32, TokenFetch)>>,
    /// Calls paused on their headers for a body: Envoy's byte count when paused.
    probes: RefCell<BTreeMap<u32, Option<u64>>>,
    /// How the host hands over bodies, once seen.
    body_mode: Cell<Option<BodyMode>>,
}

/// One worker's API role under one configuration.
pub struct ApiDesk<H: Host> {
    pub host: H,
    /// The root context's worker (its tick period).
    pub worker: Rc<crate::worker::Worker<H>>,
    pub config: Rc<ApiConfig>,
    pub metrics: Rc<Metrics<H>>,
    root_id: u32,
    state_key: String,
    state: Rc<DeskState>,
}

impl<H: Host> ApiDesk<H> {
    pub fn new(
        worker: Rc<crate::worker::Worker<H>>,
        config: ApiConfig,
        metrics: Rc<Metrics<H>>,
        root_id: u32,
        state: Rc<DeskState>,
    ) -> Self {
        // The account's one token, whichever role fetches it (gate::token::Refresh).
        let state_key = format!("wechat_gate.{}.callback_ip.state", config.appid());
        ApiDesk {
            host: worker.host.clone(),
            worker,
            config: Rc::new(config),
            metrics,
            root_id,
            state_key,
            state,
        }
    }

    /// What the next configuration takes over.
    pub fn state(&self) -> Rc<DeskState> {
        self.state.clone()
    }

    /// Something waits on the tick.
    pub fn busy(&self) -> bool {
        let s = &self.state;
        !s.waiting.borrow().is_empty()
            || s.fetch.borrow().is_some()
            || !s.probes.borrow().is_empty()
    }

    fn now(&self) -> i64 {
        self.host.unix_seconds()
    }

    fn shared_state(&self) -> RefreshState {
        shared_data::read(&self.host, &self.state_key)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    // ------------------------------------------------------------ a call's life

    /// Starts `call` for the caller on context `ctx`.
    pub fn start(&self, ctx: u32, call: &SharedCall, from_root: bool) {
        let ticket = call.borrow().ticket();
        if let Some(t) = ticket {
            if let Some(cached) = self.cached_ticket(t) {
                self.metrics.count(Counter::TicketHits);
                let answer = call
                    .borrow()
                    .answer_from(self.config.appid(), &cached, self.now());
                self.answer(ctx, answer, from_root);
                return;
            }
        }
        if call.borrow().needs_token() {
            self.with_token(ctx, call, self.now(), from_root);
        } else {
            self.send(ctx, call, None, from_root);
        }
    }

    /// Sends `call` with the shared token, or makes it wait for one.
    fn with_token(&self, ctx: u32, call: &SharedCall, since: i64, from_root: bool) {
        let refused = call.borrow().refused_token().map(str::to_string);
        match token::decide(&self.shared_state(), self.now(), refused.as_deref(), since) {
            TokenNow::Use(t) => self.send(ctx, call, Some(&t), from_root),
            TokenNow::Fail(detail) => {
                self.answer(ctx, Refusal::NoToken.answer_saying(&detail), from_root)
            }
            TokenNow::Wait | TokenNow::Fetch => {
                let waiter = Waiter {
                    call: call.clone(),
                    since,
                };
                self.state.waiting.borrow_mut().insert(ctx, waiter);
            }
        }
    }

    /// Sends `call` to its current upstream (the next, if the host refuses).
    fn send(&self, ctx: u32, call: &SharedCall, token: Option<&str>, from_root: bool) {
        let api = &self.config.api;
        loop {
            let Some(out) = call.borrow_mut().request(api, token) else {
                let answer = Refusal::Unreachable.answer_saying("no upstream could be reached");
                return self.answer(ctx, answer, from_root);
            };
            match dispatch(&self.host, &out) {
                Ok(id) => {
                    if from_root {
                        self.state
                            .in_flight
                            .borrow_mut()
                            .insert(id, (ctx, call.clone()));
                    }
                    return;
                }
                Err(()) if call.borrow_mut().next_upstream(api) => {
                    self.metrics.count(Counter::ApiFailedOver);
                }
                Err(()) => {
                    let answer = Refusal::Unreachable.answer_saying("no upstream could be reached");
                    return self.answer(ctx, answer, from_root);
                }
            }
        }
    }

    /// WeChat's reply to `call` (read on the context the host handed it to).
    pub fn on_reply(&self, ctx: u32, call: &SharedCall, body_size: usize, from_root: bool) {
        let max = usize::try_from(self.config.max_body_bytes).unwrap_or(usize::MAX);
        if body_size > max {
            let detail = "WeChat's reply is larger than max_body_bytes";
            return self.answer(ctx, Refusal::Unreachable.answer_saying(detail), from_root);
        }
        let host = &self.host;
        let text = |name: &str| {
            host.header(Headers::CallResponse, name)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let reply = Reply {
            status: host.status(Headers::CallResponse),
            content_type: text("content-type"),
            disposition: text("content-disposition"),
            body: host.body(Body::CallResponse, body_size).unwrap_or_default(),
        };
        let now = self.now();
        let next = call.borrow_mut().on_reply(&self.config.api, &reply, now);
        let name = &self.config.name;
        match next {
            Next::Answer { answer, ticket } => {
                if let (Some(t), Some(ty)) = (ticket, call.borrow().ticket()) {
                    self.store_ticket(ty, &t);
                }
                if answer.outcome == gate::api::Outcome::Unanswered {
                    let body = String::from_utf8_lossy(&answer.body);
                    let call = call.borrow();
                    log!(
                        host,
                        Warn,
                        "wechat-gate API role {name}: {call:?}: {} {body}",
                        answer.status
                    );
                }
                self.answer(ctx, answer, from_root);
            }
            Next::NewToken => {
                log!(host, Info, "wechat-gate API role {name}: WeChat refused the access token; getting another and sending the call once more");
                self.metrics.count(Counter::ApiTokenRetried);
                self.with_token(ctx, call, now, from_root);
            }
            Next::FailOver => {
                log!(host, Debug, "wechat-gate API role {name}: an upstream failed before the call was sent; the next one");
                self.metrics.count(Counter::ApiFailedOver);
                if call.borrow().needs_token() {
                    self.with_token(ctx, call, now, from_root);
                } else {
                    self.send(ctx, call, None, from_root);
                }
            }
        }
    }

    /// Answers the caller on context `ctx` (from the root context: acting on it).
    pub fn answer(&self, ctx: u32, answer: Answer, from_root: bool) {
        self.metrics.count(Counter::ApiCall(answer.outcome));
        if from_root && self.host.act_on(ctx).is_err() {
            return;
        }
        let headers: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        let _ = self
            .host
            .send_response(answer.status, &headers, &answer.body);
        if from_root {
            let _ = self.host.act_on(self.root_id);
        }
    }

    /// The caller on `ctx` is gone: nothing more is done for it.
    pub fn forget(&self, ctx: u32) {
        self.state.waiting.borrow_mut().remove(&ctx);
        self.state.probes.borrow_mut().remove(&ctx);
    }

    // ------------------------------------------------------------ tickets

    fn cached_ticket(&self, ty: TicketType) -> Option<Ticket> {
        let bytes = shared_data::read(&self.host, &ty.key(self.config.appid()))?;
        Ticket::usable(&bytes, self.now())
    }

    fn store_ticket(&self, ty: TicketType, ticket: &Ticket) {
        self.metrics.count(Counter::TicketFetches);
        let _ = self
            .host
            .set_shared(&ty.key(self.config.appid()), &ticket.encode(), None);
    }

    // ------------------------------------------------------------ bodies

    /// How the host hands over bodies, if seen.
    pub fn body_mode(&self) -> Option<BodyMode> {
        self.state.body_mode.get()
    }

    /// A call paused on its headers waits for its body; Envoy's byte count now.
    pub fn probe(&self, ctx: u32, count: Option<u64>) {
        self.state.probes.borrow_mut().insert(ctx, count);
    }

    /// The body came to a call: if it was paused on its headers, the host holds
    /// headers for the body.
    pub fn body_came(&self, ctx: u32) {
        if self.state.probes.borrow_mut().remove(&ctx).is_some() {
            self.state.body_mode.set(Some(BodyMode::Hold));
        }
    }

    /// Probed calls whose body Envoy has received but not handed over: the host
    /// streams (no `allow_on_headers_stop_iteration`), so their headers go on.
    fn look_at_probes(&self) {
        let probes: Vec<(u32, Option<u64>)> = self
            .state
            .probes
            .borrow()
            .iter()
            .map(|(c, n)| (*c, *n))
            .collect();
        for (ctx, when_held) in probes.into_iter().take(ACTIONS_PER_TICK) {
            if self.host.act_on(ctx).is_err() {
                self.state.probes.borrow_mut().remove(&ctx);
                continue;
            }
            let count = ByteCount {
                when_held,
                now: ByteCount::decode(self.host.property(&["request", "total_size"]).as_deref()),
            };
            if count.arrived() > 0 {
                self.state.probes.borrow_mut().remove(&ctx);
                self.state.body_mode.set(Some(BodyMode::Stream));
                let _ = self.host.resume_request();
            }
        }
        let _ = self.host.act_on(self.root_id);
    }
}

/// Makes the call; `Err` if the host refuses it.
fn dispatch(host: &impl Host, out: &Outgoing) -> Result<u32, ()> {
    let headers = out.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    host.dispatch_http_call(&out.cluster, headers, out.body.as_deref(), out.timeout)
        .map_err(|_| ())
}
