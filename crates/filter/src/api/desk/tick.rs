//! From the root context: bodies probed, waiting calls sent or answered, and the token
//! fetched (under the token lease) when they need one and no worker is at it.

use super::{dispatch, ApiDesk, SharedCall, ACTIONS_PER_TICK};
use crate::host::{log, Body, Headers, Host};
use crate::shared_data::{self, Change};
use gate::api::refusal::Refusal;
use gate::api::token::{self, FetchStep, TokenFetch, TokenNow};
use gate::metrics::Counter;
use gate::token::state::RefreshState;
use gate::token::MAX_REPLY_BYTES;

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
