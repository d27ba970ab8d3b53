//! One request: gather method, path, source and time, let `verify::decide` judge,
//! then answer locally or forward with the gate's headers set.

use super::admission::{Admission, AdmissionCell};
use super::calls::{self, Body};
use super::dedupe::{self, Seen};
use super::held::{HeldRequests, BODY_DEADLINE_MS};
use super::metrics::Metrics;
use crate::config::{Config, UpstreamFailure};
use crate::push_body::{self, BodyPlan, Reply, ReplySeal};
use crate::verify::{
    self, QueryUse, Reason, Rejection, RequestHead, SafePush, SourceOutcome, Sources, Verdict,
};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::Cell;
use std::rc::Rc;

/// Where a request on the guarded path is.
enum Stage {
    /// Not (yet) judged, passed through, or answered by the gate itself.
    Untouched,
    /// Verified on its headers, held until its body has been checked too.
    AwaitingBody {
        plan: BodyPlan,
        openid: Option<String>,
        source: SourceOutcome,
    },
    /// Sent to the backend. `seal` is set when its reply is to be encrypted.
    Forwarded { seal: Option<SafePush> },
    /// A backend's XML reply being buffered for encryption; `size` bytes so far.
    SealingReply { safe: SafePush, size: usize },
    /// Envoy's own failure reply being turned into `200 success`.
    AnsweringSuccess,
}

pub struct GateHttp {
    context_id: u32,
    config: Option<Rc<Config>>,
    metrics: Option<Rc<Metrics>>,
    admission: Rc<AdmissionCell>,
    held: Rc<HeldRequests>,
    /// Unix seconds, kept by the root context's tick (a hostcall less per request).
    clock: Rc<Cell<i64>>,
    stage: Stage,
    /// The names of the `x-wechat-gate-*` headers the client sent (removed on forward).
    client_gate_headers: Vec<Vec<u8>>,
    /// What this request put in the shared tables, forgotten again if it never reaches
    /// the backend (so WeChat's retry does).
    recorded: Recorded,
}

/// The table entries a request made: its signed query (replays) and its message
/// (WeChat's retries).
#[derive(Default)]
struct Recorded {
    query: Option<u64>,
    message: Option<u64>,
}

impl Recorded {
    /// Forgets both: the request did not reach the backend.
    fn forget(&mut self) {
        if let Some(identity) = self.query.take() {
            dedupe::QUERIES.forget(identity);
        }
        if let Some(identity) = self.message.take() {
            dedupe::MESSAGES.forget(identity);
        }
    }

    /// Keeps both for good: the message reached the backend.
    fn keep(&mut self) {
        *self = Recorded::default();
    }
}

impl GateHttp {
    pub fn new(
        context_id: u32,
        config: Option<Rc<Config>>,
        metrics: Option<Rc<Metrics>>,
        admission: Rc<AdmissionCell>,
        held: Rc<HeldRequests>,
        clock: Rc<Cell<i64>>,
    ) -> Self {
        GateHttp {
            context_id,
            config,
            metrics,
            admission,
            held,
            clock,
            stage: Stage::Untouched,
            client_gate_headers: Vec::new(),
            recorded: Recorded::default(),
        }
    }

    fn reject(&mut self, rejection: &Rejection) -> Action {
        self.stage = Stage::Untouched;
        self.held.release(self.context_id);
        self.recorded.forget();
        if let Some(m) = &self.metrics {
            m.rejected(rejection.reason);
        }
        log::debug!(
            "rejected {} ({}) from {}: {}",
            rejection.reason.name(),
            rejection.reason.status(),
            source_for_log(),
            rejection.detail
        );
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "text/plain; charset=utf-8")];
        headers.extend_from_slice(rejection.headers());
        calls::send_response(
            rejection.reason.status(),
            &headers,
            rejection.body().as_bytes(),
        );
        Action::Pause
    }

    /// Removes every client-sent `x-wechat-gate-*` header and sets the gate's own.
    fn set_gate_headers(&self, openid: Option<&str>, decrypted: bool) -> Result<(), Rejection> {
        for name in &self.client_gate_headers {
            let name =
                std::str::from_utf8(name).map_err(|_| malformed("a header name is not valid"))?;
            if !calls::set_request_header(name, None) {
                return Err(malformed(
                    "a client-sent x-wechat-gate-* header could not be removed",
                ));
            }
        }
        let set = calls::set_request_header("x-wechat-gate-verified", Some("1"))
            && openid.is_none_or(|o| calls::set_request_header("x-wechat-gate-openid", Some(o)))
            && (!decrypted || calls::set_request_header("x-wechat-gate-decrypted", Some("1")));
        if !set {
            return Err(malformed("the gate's headers could not be set"));
        }
        Ok(())
    }
}

fn malformed(detail: &'static str) -> Rejection {
    Rejection {
        reason: Reason::Malformed,
        detail: detail.into(),
    }
}

fn source_for_log() -> String {
    calls::property(&["source", "address"])
        .map(|a| String::from_utf8_lossy(&a).into_owned())
        .unwrap_or_else(|| "an unknown source".to_string())
}

impl GateHttp {
    /// Unix seconds: the tick's clock, or the host's before the first tick.
    fn now(&self) -> i64 {
        match self.clock.get() {
            0 => calls::now_unix(),
            t => t,
        }
    }

    fn now_u64(&self) -> u64 {
        u64::try_from(self.now()).unwrap_or(0)
    }

    /// Records a verified push's signed query as used; answers the push if it was
    /// used before (a replay, answered like a retry) or can no longer be checked.
    fn check_replay(&mut self, query: QueryUse) -> Option<Action> {
        match dedupe::QUERIES.check_and_record(query.identity, self.now_u64(), query.expires_at) {
            Seen::New { evicted } => {
                self.recorded.query = Some(query.identity);
                if evicted {
                    self.count(Metrics::replay_evicted);
                    if dedupe::first_eviction_in_this_vm() {
                        log::warn!(
                            "the table of used queries is full ({} entries): the oldest \
                             make room, and a push whose timestamp is as old is refused \
                             (401 stale) instead of being checked for replay",
                            crate::dedupe::QUERIES.entries()
                        );
                    }
                }
                None
            }
            Seen::Duplicate => {
                self.count(Metrics::replayed);
                log::debug!(
                    "a signed query used before, from {}: answered success",
                    source_for_log()
                );
                Some(answer_success())
            }
            Seen::TooOld => Some(self.reject(&Rejection::new(
                Reason::Stale,
                "the timestamp is older than the table of used queries reaches back: \
                 it cannot be checked for replay",
            ))),
            Seen::Unrecorded => {
                log::warn!("the table of used queries could not record a push's query");
                None
            }
        }
    }

    fn count(&self, f: impl FnOnce(&Metrics)) {
        if let Some(m) = &self.metrics {
            f(m);
        }
    }

    /// The headers of a verified push: forward at once, or hold it for its body.
    fn on_verified_push(
        &mut self,
        config: &Config,
        openid: Option<String>,
        source: SourceOutcome,
        safe: Option<SafePush>,
        declared: Option<Vec<u8>>,
        end_of_stream: bool,
    ) -> Action {
        if let Err(rejection) =
            verify::check_body(declared.as_deref(), end_of_stream, config.max_body_bytes)
        {
            return self.reject(&rejection);
        }
        let Some(plan) = BodyPlan::for_push(config, safe) else {
            return self.forward(openid.as_deref(), source, false, None);
        };
        // A safe-mode body is replaced: the length the backend sees is set once known.
        if plan.safe.is_some() && !calls::set_request_header("content-length", None) {
            return self.reject(&malformed("content-length could not be removed"));
        }
        self.stage = Stage::AwaitingBody {
            plan,
            openid,
            source,
        };
        if end_of_stream {
            return self.on_whole_body(config, 0);
        }
        // Held: with `allow_on_headers_stop_iteration` the body still flows in, and
        // nothing (not even the headers) goes upstream until it has been checked.
        // Without it the body never comes: the root context's tick answers 408.
        self.held
            .hold(self.context_id, calls::now_unix_ms() + BODY_DEADLINE_MS);
        Action::Pause
    }

    /// The whole body has arrived (`size` bytes): check it, then forward or answer.
    fn on_whole_body(&mut self, config: &Config, size: usize) -> Action {
        let Stage::AwaitingBody {
            plan,
            openid,
            source,
        } = std::mem::replace(&mut self.stage, Stage::Untouched)
        else {
            return Action::Continue;
        };
        let Some(body) = calls::body(Body::Request, size) else {
            return self.reject(&malformed("the body could not be read"));
        };
        let checked = match push_body::check(&body, &plan, config) {
            Ok(c) => c,
            Err(rejection) => return self.reject(&rejection),
        };
        if let Some(identity) = checked.identity {
            let now = u64::try_from(self.now()).unwrap_or(0);
            let until = now.saturating_add(config.dedupe_seconds);
            match dedupe::MESSAGES.check_and_record(identity, now, until) {
                Seen::Duplicate => {
                    // The message itself was delivered: its query stays used.
                    self.recorded.keep();
                    self.count(Metrics::deduplicated);
                    log::debug!(
                        "a retry of a message forwarded in the last {} s: answered success",
                        config.dedupe_seconds
                    );
                    return answer_success();
                }
                Seen::New { .. } => self.recorded.message = Some(identity),
                Seen::TooOld | Seen::Unrecorded => {}
            }
        }
        if let Some(replacement) = &checked.body_for_backend {
            let length = replacement.len().to_string();
            if !calls::replace_body(Body::Request, size, replacement)
                || !calls::set_request_header("content-length", Some(&length))
            {
                return self.reject(&malformed("the body could not be set"));
            }
        }
        if checked.decrypted {
            // The backend sees a plaintext push: no encrypt_type or msg_signature that
            // would make its own SDK try to decrypt it again.
            let path = calls::request_header(":path")
                .map(|p| crate::query::without_safe_mode_params(&p))
                .and_then(|p| String::from_utf8(p).ok());
            if !path.is_some_and(|p| calls::set_request_header(":path", Some(&p))) {
                return self.reject(&malformed("the path could not be set"));
            }
            self.count(Metrics::decrypted);
        }
        // Once the message has been decrypted the sender comes from it, verified, and
        // only from it: the query's openid is covered by no signature.
        let openid = if checked.message_read {
            checked.sender.filter(|s| verify::is_plausible_openid(s))
        } else {
            openid
        };
        let seal = if checked.decrypted { plan.safe } else { None };
        self.forward(openid.as_deref(), source, checked.decrypted, seal)
    }

    fn forward(
        &mut self,
        openid: Option<&str>,
        source: SourceOutcome,
        decrypted: bool,
        seal: Option<SafePush>,
    ) -> Action {
        if let Err(rejection) = self.set_gate_headers(openid, decrypted) {
            return self.reject(&rejection);
        }
        self.count(|m| {
            m.source(source);
            m.forwarded();
        });
        if source == SourceOutcome::ReportOnly {
            log::debug!(
                "report mode: forwarding a request from unlisted {}",
                source_for_log()
            );
        }
        self.stage = Stage::Forwarded { seal };
        Action::Continue
    }
}

/// True when Envoy itself answered instead of the backend (a route timeout, a
/// refused or reset connection, no healthy host): `response.code_details` is
/// `via_upstream` only for a reply the backend sent.
fn envoy_failed_upstream(status: u32) -> bool {
    status >= 500
        && calls::property(&["response", "code_details"]).is_some_and(|d| d != b"via_upstream")
}

fn response_status() -> Option<u32> {
    calls::response_header(":status").and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
}
impl Context for GateHttp {}

impl Drop for GateHttp {
    fn drop(&mut self) {
        self.held.release(self.context_id);
    }
}

impl GateHttp {
    /// The stream ended. Whatever it recorded and no response has settled is
    /// forgotten unless the request reached the backend: held and never forwarded
    /// (a 408, a reset), or forwarded but never connected upstream (WeChat hung up
    /// first). Had it reached the backend, a retry or replay stays answered `success`.
    fn forget_unanswered(&mut self) {
        let reached = matches!(self.stage, Stage::Forwarded { .. })
            && calls::property(&["upstream", "address"]).is_some();
        if reached {
            self.recorded.keep();
        } else {
            self.recorded.forget();
        }
        self.stage = Stage::Untouched;
    }
}

fn decide(head: &RequestHead<'_>, config: &Config, admission: &Admission, now: i64) -> Verdict {
    let sources = Sources {
        allow: &admission.allow,
        live_list_ready: admission.live_list_ready,
    };
    verify::decide(head, config, sources, now)
}

fn is_unavailable(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Reject(r) if r.reason == Reason::Unavailable)
}

/// `200 success`: WeChat takes the push as handled and shows the user nothing.
fn answer_success() -> Action {
    calls::send_response(200, &[("content-type", "text/plain")], b"success");
    Action::Pause
}

impl HttpContext for GateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            calls::send_response(503, &[], b"wechat-gate: not configured\n");
            return Action::Pause;
        };
        // One hostcall for the whole header map, one for the source; nothing more for
        // a request on another path.
        let Some(headers) = calls::request_headers() else {
            return self.reject(&malformed("request headers could not be read"));
        };
        let path = headers.get(":path");
        if !verify::guards(path, &config) {
            self.count(Metrics::passed_through);
            return Action::Continue;
        }
        let source = calls::property(&["source", "address"]);
        let head = RequestHead {
            method: headers.get(":method").unwrap_or_default(),
            path,
            source: source.as_deref(),
        };
        let mut admission = self.admission.current();
        let mut verdict = decide(&head, &config, &admission, self.now());
        if is_unavailable(&verdict) && self.admission.catch_up() {
            // Another worker has loaded the list since this one last ticked.
            admission = self.admission.current();
            verdict = decide(&head, &config, &admission, self.now());
        }
        match verdict {
            Verdict::PassThrough => {
                self.count(Metrics::passed_through);
                Action::Continue
            }
            Verdict::Reject(rejection) => self.reject(&rejection),
            Verdict::Echo {
                echostr,
                source,
                query,
            } => {
                // Recorded so that a handshake's query, which access logs keep, can
                // never carry a push; the echo itself is harmless to repeat.
                if let Some(q) = query {
                    let _ =
                        dedupe::QUERIES.check_and_record(q.identity, self.now_u64(), q.expires_at);
                }
                self.count(|m| {
                    m.source(source);
                    m.handshake();
                });
                calls::send_response(200, &[("content-type", "text/plain")], echostr.as_bytes());
                Action::Pause
            }
            Verdict::Forward {
                openid,
                source,
                safe,
                query,
            } => {
                if let Some(q) = query {
                    if let Some(answered) = self.check_replay(q) {
                        return answered;
                    }
                }
                self.client_gate_headers = headers.names_where(verify::is_gate_header);
                let declared = headers.get("content-length").map(<[u8]>::to_vec);
                self.on_verified_push(&config, openid, source, safe, declared, end_of_stream)
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.stage, Stage::AwaitingBody { .. }) {
            return Action::Continue;
        }
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        if u64::try_from(body_size).map_or(true, |n| n > config.max_body_bytes) {
            return self.reject(&Rejection::new(
                Reason::TooLarge,
                format!(
                    "body is larger than max_body_bytes ({})",
                    config.max_body_bytes
                ),
            ));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.held.release(self.context_id);
        self.on_whole_body(&config, body_size)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if matches!(self.stage, Stage::AwaitingBody { .. }) {
            return self.reject(&malformed("a push has no trailers"));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        match std::mem::replace(&mut self.stage, Stage::Untouched) {
            Stage::Forwarded { seal } => {
                let status = response_status().unwrap_or(0);
                let envoy_failed = envoy_failed_upstream(status);
                if envoy_failed && config.on_upstream_failure == UpstreamFailure::Success {
                    // WeChat is told the push was handled and will not retry it.
                    self.recorded.keep();
                    self.count(Metrics::upstream_failure);
                    log::info!(
                        "the backend did not answer a verified push (Envoy replied {status}); \
                         answering WeChat `success`"
                    );
                    let replaced = calls::set_response_header(":status", Some("200"))
                        && calls::set_response_header("content-type", Some("text/plain"))
                        && calls::set_response_header("content-length", None);
                    if replaced && !end_of_stream {
                        self.stage = Stage::AnsweringSuccess;
                    }
                    return Action::Continue;
                }
                if !(200..300).contains(&status) {
                    // Not delivered (or refused by the backend): WeChat's retry must get
                    // through, so neither the message nor its query counts as used.
                    self.recorded.forget();
                    return Action::Continue;
                }
                self.recorded.keep();
                if let Some(safe) = seal {
                    if !end_of_stream {
                        // The encrypted reply has another length.
                        let _ = calls::set_response_header("content-length", None);
                        self.stage = Stage::SealingReply { safe, size: 0 };
                    }
                }
                Action::Continue
            }
            Stage::AwaitingBody { .. } => {
                // Answered by the gate while held (408 from the tick): nothing to do.
                Action::Continue
            }
            other => {
                self.stage = other;
                Action::Continue
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &mut self.stage {
            Stage::AnsweringSuccess => {
                if !end_of_stream {
                    return Action::Pause;
                }
                let _ = calls::replace_body(Body::Response, body_size, b"success");
                self.stage = Stage::Untouched;
                Action::Continue
            }
            Stage::SealingReply { size, .. } => {
                *size = body_size;
                if !end_of_stream {
                    return Action::Pause;
                }
                self.finish_reply();
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_log(&mut self) {
        self.forget_unanswered();
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the body: whatever was buffered is sealed now, never let go as
        // it is.
        match self.stage {
            Stage::SealingReply { .. } => self.finish_reply(),
            Stage::AnsweringSuccess => {
                let _ = calls::replace_body(Body::Response, usize::MAX, b"success");
                self.stage = Stage::Untouched;
            }
            _ => {}
        }
        Action::Continue
    }
}

impl GateHttp {
    /// The buffered reply is complete: seal it, or if that cannot be done, replace
    /// it with `success` (a plaintext reply never goes out).
    fn finish_reply(&mut self) {
        let Stage::SealingReply { safe, size } =
            std::mem::replace(&mut self.stage, Stage::Untouched)
        else {
            return;
        };
        if !self.seal_reply(&safe, size) {
            log::error!("a backend reply could not be sealed; answering `success` instead");
            let _ = calls::replace_body(Body::Response, size, b"success");
        }
    }

    /// Encrypts the backend's buffered XML reply in place; false if it could not.
    fn seal_reply(&self, safe: &SafePush, size: usize) -> bool {
        let Some(config) = &self.config else {
            return false;
        };
        let (Some(safe_mode), Some(appid)) = (&config.safe_mode, &config.appid) else {
            return false;
        };
        let Some(body) = calls::body(Body::Response, size) else {
            return false;
        };
        // Never a predictable prefix: without randomness the reply cannot be sealed.
        let Some(random) = calls::random16() else {
            return false;
        };
        let seal = ReplySeal {
            token: config.token.expose(),
            key: &safe_mode.key,
            appid,
            timestamp: &safe.timestamp,
            nonce: &safe.nonce,
        };
        match push_body::seal_reply(&body, &seal, &random) {
            Reply::AsIs => true,
            Reply::Encrypted(envelope) => {
                let sealed = calls::replace_body(Body::Response, size, envelope.as_bytes());
                if sealed {
                    self.count(Metrics::reply_encrypted);
                }
                sealed
            }
        }
    }
}
