//! The live WeChat callback IP list inside Envoy. Every worker's root context ticks
//! (a short first tick, then every second): it picks up the list from shared data
//! when the shared value changes, and, when a fetch is due, tries to take the fetch
//! lease. The one worker that gets it fetches the token and the list through
//! `dispatch_http_call` to the configured clusters, following `refresh::FetchPlan`,
//! and publishes the result (the list, the token, the success or failure that the
//! account's instances each work their next fetch out from).
//! Failures keep the last good list. Secrets and tokens are never logged.

use super::metrics::Metrics;
use super::proxy;
use super::shared_data::{self, Change};
use gate::allowlist::CallbackAllowlist;
use gate::config::{TokenApi, WechatApi};
use gate::errcodes::{self, Handling};
use gate::metrics::Counter;
use gate::token::plan::{Call as Step, FetchPlan, Next};
use gate::token::shared_list::{decode_shared_list, encode_shared_list};
use gate::token::state::{Instance, RefreshState};
use gate::token::wechat_api::{self, ApiFailure};
use std::time::Duration;

/// The largest API reply read (a callback list is a few KiB).
const MAX_REPLY_BYTES: usize = 1 << 20;

struct InFlight {
    plan: FetchPlan,
    step: Step,
    call_id: u32,
    started_at: i64,
}

pub struct LiveList {
    api: WechatApi,
    /// This instance's part in the account's shared refresh.
    instance: Instance,
    appid: String,
    state_key: String,
    list_key: String,
    list_cas: Option<u32>,
    live: Option<CallbackAllowlist>,
    in_flight: Option<InFlight>,
}

impl LiveList {
    pub fn new(api: WechatApi) -> LiveList {
        let appid = api.appid.clone();
        let prefix = format!("wechat_gate.{appid}.callback_ip");
        let instance = Instance::of(&api);
        LiveList {
            api,
            instance,
            appid,
            state_key: format!("{prefix}.state"),
            list_key: format!("{prefix}.list"),
            list_cas: None,
            live: None,
            in_flight: None,
        }
    }

    /// The last good live list, once there is one.
    pub fn current(&self) -> Option<&CallbackAllowlist> {
        self.live.as_ref()
    }

    /// One tick. Returns true when the local copy of the list changed.
    pub fn on_tick(&mut self, now: i64, metrics: &Metrics) -> bool {
        let changed = self.pick_up_shared_list();
        // Envoy answers every call (a timeout is an answer), but never wait forever.
        let lease = i64::try_from(self.lease_seconds()).unwrap_or(i64::MAX);
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| now.saturating_sub(f.started_at) > lease)
        {
            log::warn!("callback IP list: a call got no answer within the lease; giving it up");
            self.in_flight = None;
        }
        if self.in_flight.is_none() {
            if let Some(state) = self.take_lease(now) {
                let token = state.usable_token(now).is_some();
                let force_allowed =
                    self.api.token_api == TokenApi::Stable && state.may_force_token(now);
                let (plan, first) =
                    FetchPlan::start(self.api.upstreams.len(), token, force_allowed);
                return self.advance(plan, Next::Call(first), now, metrics) || changed;
            }
        }
        changed
    }

    /// A reply to a call this root context made. Returns true when the list changed.
    pub fn on_response(
        &mut self,
        call_id: u32,
        body_size: usize,
        now: i64,
        metrics: &Metrics,
    ) -> bool {
        if self.in_flight.as_ref().is_none_or(|f| f.call_id != call_id) {
            return false;
        }
        let Some(InFlight { mut plan, step, .. }) = self.in_flight.take() else {
            return false;
        };
        let status = proxy::call_response_status();
        let body = if body_size > MAX_REPLY_BYTES {
            None
        } else {
            proxy::call_response_body(body_size)
        };
        let body = body.unwrap_or_default();
        let next = match step {
            Step::Token { force, .. } => {
                let result = wechat_api::parse_token_reply(status, &body);
                match &result {
                    Ok(token) => {
                        self.update_state(|s| s.with_token(token, now, force));
                    }
                    Err(failure) => self.log_failure(step, failure),
                }
                plan.after_token(step, &result)
            }
            Step::List { .. } => {
                let result = wechat_api::parse_callback_ip_reply(status, &body);
                match &result {
                    Err(failure) if failure.is_refused_list() => {
                        self.refused(step, failure, metrics)
                    }
                    Err(failure) => self.log_failure(step, failure),
                    Ok(_) => {}
                }
                let next = plan.after_list(step, result);
                if plan.drop_token {
                    self.update_state(RefreshState::without_token);
                }
                next
            }
        };
        self.advance(plan, next, now, metrics)
    }

    /// Runs the plan until a call is in flight or the fetch is over.
    fn advance(
        &mut self,
        mut plan: FetchPlan,
        mut next: Next,
        now: i64,
        metrics: &Metrics,
    ) -> bool {
        loop {
            match next {
                Next::Call(step) => match self.dispatch(step, now) {
                    Ok(call_id) => {
                        self.in_flight = Some(InFlight {
                            plan,
                            step,
                            call_id,
                            started_at: now,
                        });
                        return false;
                    }
                    Err(failure) => {
                        self.log_failure(step, &failure);
                        next = match step {
                            Step::Token { .. } => plan.after_token(step, &Err(failure)),
                            Step::List { .. } => plan.after_list(step, Err(failure)),
                        };
                    }
                },
                Next::Done(ips) => {
                    if let Some(json) = encode_shared_list(&ips, now) {
                        shared_data::overwrite(&self.list_key, &json);
                    }
                    let refresh = self.api.refresh_seconds;
                    self.update_state(|s| s.succeeded(now));
                    let cluster = self.cluster_name(plan.upstream());
                    if !ips.skipped.is_empty() {
                        log::warn!(
                            "callback IP list: skipped {} entries that are not addresses: {:?}",
                            ips.skipped.len(),
                            ips.skipped
                        );
                    }
                    log::info!("callback IP list: {} entries from cluster {cluster}; next refresh in {refresh} s", ips.entries.len());
                    metrics.refresh_ok(ips.entries.len(), now);
                    return self.pick_up_shared_list();
                }
                Next::GaveUp(failure) => {
                    let (jitter, settings) = (jitter(), self.instance.settings);
                    let state = self.update_state(|s| s.failed(now, jitter, settings));
                    let retry = state.map_or(0, |s| {
                        s.next_due(&self.instance).max(now).saturating_sub(now)
                    });
                    let kept = if self.live.is_some() {
                        "last good"
                    } else {
                        "static"
                    };
                    if failure.is_refused_list() {
                        log::debug!("callback IP list: list refused; keeping the {kept} list; next try in {retry} s");
                    } else {
                        log::warn!(
                            "callback IP list: every upstream failed (last: {failure}); keeping the {kept} list; next try in {retry} s"
                        );
                    }
                    metrics.count(Counter::RefreshFailed);
                    return false;
                }
            }
        }
    }

    fn dispatch(&self, step: Step, now: i64) -> Result<u32, ApiFailure> {
        let (index, call) = match step {
            Step::Token { upstream, force } => (
                upstream,
                match self.api.token_api {
                    TokenApi::Stable => {
                        wechat_api::stable_token_call(&self.appid, self.api.secret.expose(), force)
                    }
                    TokenApi::Wecom => {
                        wechat_api::wecom_token_call(&self.appid, self.api.secret.expose())
                    }
                    TokenApi::Classic => {
                        wechat_api::classic_token_call(&self.appid, self.api.secret.expose())
                    }
                },
            ),
            Step::List { upstream } => {
                let state = self.read_state().unwrap_or_default();
                let token = state.usable_token(now).ok_or(ApiFailure::Errcode {
                    code: 40001,
                    message: "no usable access token".into(),
                })?;
                (upstream, wechat_api::callback_ip_call(token))
            }
        };
        let upstream = self.api.upstreams.get(index).ok_or(ApiFailure::Transport)?;
        let mut headers = vec![
            (":method", call.method),
            (":path", call.path.as_str()),
            (":authority", upstream.authority.as_str()),
        ];
        if call.body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let timeout = Duration::from_millis(self.api.timeout_ms);
        proxy::dispatch(&upstream.cluster, headers, call.body.as_deref(), timeout).map_err(
            |status| {
                log::warn!(
                    "callback IP list: cannot call cluster {} ({status:?}): is it defined?",
                    upstream.cluster
                );
                ApiFailure::Transport
            },
        )
    }

    /// A list refused for its contents: counted every time, logged once per failure
    /// streak (the shared state remembers), then at debug.
    fn refused(&self, step: Step, failure: &ApiFailure, metrics: &Metrics) {
        metrics.count(Counter::ListRefused);
        let cluster = match step {
            Step::List { upstream } | Step::Token { upstream, .. } => self.cluster_name(upstream),
        };
        let first = self
            .update_state_with(RefreshState::note_refusal)
            .unwrap_or(true);
        if first {
            log::warn!(
                "callback IP list: getcallbackip from cluster {cluster}: {failure}; keeping the {} list \
                 (counted in wechat_gate.allowlist.list_refused; not logged again until a good list)",
                if self.live.is_some() { "last good" } else { "static" }
            );
        } else {
            log::debug!("callback IP list: getcallbackip from cluster {cluster}: {failure}");
        }
    }

    fn log_failure(&self, step: Step, failure: &ApiFailure) {
        let (what, index) = match step {
            Step::Token { upstream, .. } => ("access token", upstream),
            Step::List { upstream } => ("getcallbackip", upstream),
        };
        let hint = match failure {
            ApiFailure::Errcode { code, message } => match errcodes::lookup(*code) {
                Some(e) => match e.handling {
                    Handling::NewToken if matches!(step, Step::List { .. }) => {
                        ": the token is dropped and a new one fetched".to_string()
                    }
                    Handling::Retry => format!(": {}, retrying", e.meaning),
                    Handling::NewToken | Handling::Operator => {
                        format!(": {}: {}", e.meaning, e.todo(message))
                    }
                },
                None => String::new(),
            },
            _ => String::new(),
        };
        log::warn!(
            "callback IP list: {what} from cluster {} failed: {failure}{hint}",
            self.cluster_name(index)
        );
    }

    fn cluster_name(&self, index: usize) -> &str {
        self.api
            .upstreams
            .get(index)
            .map_or("?", |u| u.cluster.as_str())
    }

    /// Installs the shared list if it changed since we last looked (also right after
    /// a reconfiguration, so a new root context does not start blind).
    pub fn pick_up_shared_list(&mut self) -> bool {
        let Some((Some(bytes), cas)) = proxy::shared_get(&self.list_key) else {
            return false;
        };
        if cas.is_some() && cas == self.list_cas {
            return false;
        }
        self.list_cas = cas;
        let Some(list) = decode_shared_list(&bytes) else {
            return false;
        };
        self.live = Some(list);
        true
    }

    /// The shared-data key the list is published under.
    pub fn list_key(&self) -> &str {
        &self.list_key
    }

    fn read_state(&self) -> Option<RefreshState> {
        serde_json::from_slice(&shared_data::read(&self.state_key)?).ok()
    }

    /// Takes the fetch lease if a fetch is due and nobody holds it.
    fn take_lease(&self, now: i64) -> Option<RefreshState> {
        let seed = serde_json::to_vec(&RefreshState::default()).ok()?;
        // One try: a conflict means another worker just took it.
        shared_data::update(&self.state_key, &seed, 1, |bytes| {
            // A state that does not parse (written by another version) is started
            // afresh, under the same CAS, rather than blocking every fetch forever.
            let state: RefreshState = serde_json::from_slice(bytes).unwrap_or_default();
            if !state.is_due(now, &self.instance) {
                return Change::Keep(None);
            }
            let leased = state.leased(now, self.lease_seconds());
            match serde_json::to_vec(&leased) {
                Ok(json) => Change::Write(json, Some(leased)),
                Err(_) => Change::Keep(None),
            }
        })
        .flatten()
    }

    /// Long enough for every call of one fetch to time out: per upstream at most a
    /// token (and its busy retry), a list (and its retry), a renewed token and a list.
    fn lease_seconds(&self) -> u64 {
        let calls = 6 * self.api.upstreams.len() as u64;
        calls.saturating_mul(self.api.timeout_ms) / 1000 + 5
    }

    /// Read-modify-write of the shared state, retried on a CAS conflict.
    fn update_state(&self, change: impl Fn(&RefreshState) -> RefreshState) -> Option<RefreshState> {
        self.update_state_with(|s| {
            let next = change(s);
            (next.clone(), next)
        })
    }

    /// Read-modify-write of the shared state, retried on a CAS conflict; returns what
    /// `change` says about the write that took.
    fn update_state_with<T>(
        &self,
        change: impl Fn(&RefreshState) -> (RefreshState, T),
    ) -> Option<T> {
        let seed = serde_json::to_vec(&RefreshState::default()).ok()?;
        shared_data::update(&self.state_key, &seed, 8, |bytes| {
            let current: RefreshState = serde_json::from_slice(bytes).unwrap_or_default();
            let (next, said) = change(&current);
            match serde_json::to_vec(&next) {
                Ok(json) => Change::Write(json, Some(said)),
                Err(_) => Change::Keep(None),
            }
        })
        .flatten()
    }
}

/// The list published under `list_key`, if any worker has fetched one.
pub fn read_shared_list(list_key: &str) -> Option<CallbackAllowlist> {
    decode_shared_list(&shared_data::read(list_key)?)
}

/// 0..=1000 from the clock's nanoseconds: enough to spread retries of many proxies.
fn jitter() -> u32 {
    proxy::now().subsec_nanos() % 1001
}
