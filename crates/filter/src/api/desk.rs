//! One worker's part in the API role: see [`super`].

use crate::host::{log, Body, Headers, Host};
use crate::metrics::Metrics;
use crate::shared_data::{self, Change};
use gate::api::call::{Call, Next, Reply};
use gate::api::refusal::Refusal;
use gate::api::ticket::{Ticket, TicketType};
use gate::api::token::{self, FetchStep, TokenFetch, TokenNow};
use gate::api::Answer;
use gate::body::{BodyMode, ByteCount};
use gate::config::ApiConfig;
use gate::metrics::Counter;
use gate::token::state::RefreshState;
use gate::token::{Outgoing, MAX_REPLY_BYTES};
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

/// The largest token reply read.
const TOKEN_REPLY_BYTES: usize = MAX_REPLY_BYTES;

impl<H: Host> ApiDesk<H> {
    // ------------------------------------------------------------ the tick

    /// From the root context's tick: bodies probed, waiting calls sent (or
    /// answered), the token fetched when they need one and no worker is at it.
    pub fn on_tick(&self) {
        self.look_at_probes();
        if self.state.waiting.borrow().is_empty() {
            return;
        }
        let state = self.shared_state();
        let now = self.now();
        let limit = token::lease_seconds(&self.config.api).saturating_add(1);
        let mut acted = 0;
        let mut want_fetch: Option<Option<String>> = None;
        let waiting: Vec<(u32, SharedCall, i64)> = self
            .state
            .waiting
            .borrow()
            .iter()
            .map(|(c, w)| (*c, w.call.clone(), w.since))
            .collect();
        for (ctx, call, since) in waiting {
            if acted >= ACTIONS_PER_TICK {
                break;
            }
            let refused = call.borrow().refused_token().map(str::to_string);
            let now_do = token::decide(&state, now, refused.as_deref(), since);
            let answer = match now_do {
                TokenNow::Use(t) => {
                    self.state.waiting.borrow_mut().remove(&ctx);
                    acted += 1;
                    self.send(ctx, &call, Some(&t), true);
                    continue;
                }
                TokenNow::Fail(detail) => Refusal::NoToken.answer_saying(&detail),
                _ if now > since.saturating_add(limit) => {
                    Refusal::NoToken.answer_saying("no token came in time; see the proxy's log")
                }
                TokenNow::Fetch => {
                    want_fetch.get_or_insert(refused);
                    continue;
                }
                TokenNow::Wait => continue,
            };
            self.state.waiting.borrow_mut().remove(&ctx);
            acted += 1;
            self.answer(ctx, answer, true);
        }
        if let Some(refused) = want_fetch {
            if self.state.fetch.borrow().is_none() {
                self.take_fetch(refused.as_deref());
            }
        }
    }

    /// Takes the token lease (dropping the refused token) and makes the first call.
    fn take_fetch(&self, refused: Option<&str>) {
        let now = self.now();
        let api = &self.config.api;
        let taken = shared_data::update(&self.host, &self.state_key, b"{}", 4, |bytes| {
            let state: RefreshState = serde_json::from_slice(bytes).unwrap_or_default();
            match token::decide(&state, now, refused, i64::MAX) {
                TokenNow::Fetch => {
                    match serde_json::to_vec(&token::leased(&state, api, now, refused)) {
                        Ok(v) => Change::Write(v, true),
                        Err(_) => Change::Keep(false),
                    }
                }
                _ => Change::Keep(false),
            }
        });
        if taken == Some(true) {
            self.dispatch_token(TokenFetch::new(refused));
        }
    }

    /// Makes the fetch's next token call (as the root context).
    fn dispatch_token(&self, mut fetch: TokenFetch) {
        let api = &self.config.api;
        loop {
            let Some(out) = fetch.request(api) else {
                return self.end_fetch(None, Some(gate::api::refusal::no_token_detail(None, "")));
            };
            if let Ok(id) = dispatch(&self.host, &out) {
                if fetch.forcing() {
                    self.metrics.count(Counter::TokenForced);
                }
                *self.state.fetch.borrow_mut() = Some((id, fetch));
                return;
            }
            let state = self.shared_state();
            match fetch.on_reply(api, &state, self.now(), None, b"") {
                FetchStep::Again => continue,
                FetchStep::Failed(detail) => return self.end_fetch(None, Some(detail)),
                FetchStep::Store { .. } => return,
            }
        }
    }

    /// A reply to a call the root context made: the token fetch's, or a waiting
    /// caller's. False if it is neither.
    pub fn on_root_reply(&self, call_id: u32, body_size: usize) -> bool {
        let fetch = self
            .state
            .fetch
            .borrow_mut()
            .take_if(|(id, _)| *id == call_id);
        if let Some((_, mut fetch)) = fetch {
            let status = self.host.status(Headers::CallResponse);
            let body = self
                .host
                .body(Body::CallResponse, body_size.min(TOKEN_REPLY_BYTES))
                .unwrap_or_default();
            let state = self.shared_state();
            let step = fetch.on_reply(&self.config.api, &state, self.now(), status, &body);
            match step {
                FetchStep::Store { token, forced } => {
                    self.metrics.count(Counter::TokenFetches);
                    self.end_fetch(Some((token, forced)), None);
                }
                FetchStep::Again => self.dispatch_token(fetch),
                FetchStep::Failed(detail) => self.end_fetch(None, Some(detail)),
            }
            return true;
        }
        let flight = self.state.in_flight.borrow_mut().remove(&call_id);
        match flight {
            Some((ctx, call)) => {
                self.on_reply(ctx, &call, body_size, true);
                true
            }
            None => false,
        }
    }

    /// The fetch is over: the token stored, or the failure; the lease released;
    /// the waiting calls go on at once.
    fn end_fetch(
        &self,
        token: Option<(gate::token::wechat_api::AccessToken, bool)>,
        failure: Option<String>,
    ) {
        let now = self.now();
        let _ = shared_data::update(&self.host, &self.state_key, b"{}", 8, |bytes| {
            let state: RefreshState = serde_json::from_slice(bytes).unwrap_or_default();
            let next = match (&token, &failure) {
                (Some((t, forced)), _) => token::fetched(&state, t, now, *forced),
                (None, detail) => token::failed(&state, now, detail.clone().unwrap_or_default()),
            };
            match serde_json::to_vec(&next) {
                Ok(v) => Change::Write(v, ()),
                Err(_) => Change::Keep(()),
            }
        });
        let name = &self.config.name;
        if let Some(detail) = &failure {
            log!(
                self.host,
                Warn,
                "wechat-gate API role: no access token for {name}: {detail}"
            );
        }
        if token.as_ref().is_some_and(|(_, forced)| *forced) {
            let today = self.shared_state().forced_today;
            log!(
                self.host,
                Warn,
                "wechat-gate API role: WeChat handed back the token it had refused for {name}; \
                 forced a new one with stable_token force_refresh ({today} today; WeChat \
                 allows 20 a day, the gate asks at most {})",
                gate::token::state::FORCE_REFRESH_PER_DAY
            );
        }
        *self.state.fetch.borrow_mut() = None;
        self.on_tick();
    }
}
