//! A request's whole life on the guarded path, as a state machine: the host feeds
//! it events (the request's headers, body and trailers, the held body's deadline,
//! the response's headers, body and trailers, the stream's end) and carries out the
//! [`Effect`]s each returns, in order, then goes on or waits as [`Flow`] says.
//!
//! ```text
//! headers ─▶ judged (request::decide) ─▶ handshake answered / refused / passed through
//!               │ a verified push
//!               ▼
//!      replay? ─▶ answered success
//!               │ body to read (safe mode, retries)            no body to read
//!               ▼                                                    │
//!      held until the body is whole ─▶ checked ─▶ refused / retry answered success
//!               │ passed                                             │
//!               ▼                                                    ▼
//!      forwarded (gate headers set) ─▶ response: upstream failure → success,
//!                                       reply sealed, or passed on; the message and
//!                                       its query forgotten unless delivered
//! ```
//!
//! What it needs to know beyond the event it asks through [`Proxy`], only when it
//! needs the answer: each question is a hostcall. Nothing here calls the host.

mod effect;
mod response;
#[cfg(test)]
mod tests;

pub use effect::{unconfigured, Effect, Flow, Level, Note, Step};

use crate::gate::config::Config;
use crate::gate::dedupe::{Entry, Seen, Table};
use crate::gate::header_map::HeaderMap;
use crate::gate::held::BODY_DEADLINE_MS;
use crate::gate::metrics::Counter;
use crate::gate::query::without_safe_mode_params;
use crate::gate::rejection::{Reason, Rejection};
use crate::gate::request::{
    self, is_gate_header, is_plausible_openid, QueryUse, RequestHead, SafePush, SourceOutcome,
    Sources, Verdict,
};
use crate::gate::safe_mode::{self, BodyPlan};
use std::rc::Rc;

/// What the exchange may ask of the proxy while it handles a request.
pub trait Proxy {
    /// The downstream address (`source.address`: `ip:port` or `[v6]:port`).
    fn source_address(&mut self) -> Option<Vec<u8>>;
    /// The sources admitted now.
    fn sources(&mut self) -> Rc<Sources>;
    /// Before refusing `503 unavailable`: the live list, if another worker has loaded
    /// it since this one last looked.
    fn newer_sources(&mut self) -> Option<Rc<Sources>>;
    /// The names of the request's trailers.
    fn request_trailer_names(&mut self) -> Vec<Vec<u8>>;
    /// The request body buffered so far (`size` bytes).
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>>;
    /// The response's `:status`.
    fn response_status(&mut self) -> Option<u32>;
    /// The response body buffered so far (`size` bytes).
    fn response_body(&mut self, size: usize) -> Option<Vec<u8>>;
    /// 16 fresh random bytes (a sealed reply's prefix); `None` if there are none.
    fn random16(&mut self) -> Option<[u8; 16]>;
    /// `response.code_details`: `via_upstream` for a response the backend sent,
    /// Envoy's reason for one it sent itself.
    fn response_details(&mut self) -> Option<Vec<u8>>;
    /// An upstream connection was made for this request.
    fn reached_upstream(&mut self) -> bool;
    /// Records `entry` in `table` at `now`, unless its identity is there already.
    fn record(&mut self, table: Table, entry: Entry, now: u64) -> Seen;
    fn forget(&mut self, table: Table, identity: u64);
}

/// What the exchange is judged against for one event.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub config: &'a Config,
    /// Unix seconds.
    pub now: i64,
}

/// Where a request on the guarded path is.
enum Stage {
    /// Not (yet) judged, passed through, or answered by the gate itself.
    Idle,
    /// Verified on its headers, held until its body has been checked too.
    AwaitingBody {
        plan: BodyPlan,
        openid: Option<String>,
        source: SourceOutcome,
        /// `:path`, to be rewritten without the safe-mode parameters once decrypted.
        path: Vec<u8>,
    },
    /// Sent to the backend. `seal` is set when its reply is to be encrypted.
    Forwarded { seal: Option<SafePush> },
    /// A backend's XML reply being buffered for encryption; `size` bytes so far.
    SealingReply { safe: SafePush, size: usize },
    /// Envoy's own failure reply being turned into `200 success`.
    AnsweringSuccess,
}

/// The table entries a request made: its signed query (replays) and its message
/// (WeChat's retries). Forgotten again unless the request reached the backend, so
/// that WeChat's own second try does.
#[derive(Default)]
struct Recorded {
    query: Option<u64>,
    message: Option<u64>,
}

impl Recorded {
    fn forget(&mut self, proxy: &mut impl Proxy) {
        if let Some(identity) = self.query.take() {
            proxy.forget(Table::Queries, identity);
        }
        if let Some(identity) = self.message.take() {
            proxy.forget(Table::Messages, identity);
        }
    }

    /// Forgets the message only: WeChat's retry (a new query) must be delivered.
    fn forget_message(&mut self, proxy: &mut impl Proxy) {
        if let Some(identity) = self.message.take() {
            proxy.forget(Table::Messages, identity);
        }
    }

    /// Keeps both for good: the message reached the backend.
    fn keep(&mut self) {
        *self = Recorded::default();
    }
}

/// One request's exchange.
pub struct Exchange {
    stage: Stage,
    recorded: Recorded,
    /// The names of client-sent headers a backend could take for the gate's.
    client_gate_headers: Vec<Vec<u8>>,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange::new()
    }
}

impl Exchange {
    pub fn new() -> Exchange {
        Exchange {
            stage: Stage::Idle,
            recorded: Recorded::default(),
            client_gate_headers: Vec::new(),
        }
    }

    /// True while the request waits for its body.
    pub fn is_held(&self) -> bool {
        matches!(self.stage, Stage::AwaitingBody { .. })
    }

    fn reject(&mut self, rejection: Rejection, proxy: &mut impl Proxy) -> Step {
        let was_held = self.is_held();
        self.stage = Stage::Idle;
        self.recorded.forget(proxy);
        let mut step = Step::new(Flow::Pause);
        if was_held {
            step.push(Effect::Release);
        }
        step.push(Effect::Count(Counter::Rejected(rejection.reason)));
        step.with(Effect::Reject(rejection))
    }

    /// The request's headers.
    pub fn on_request_headers(
        &mut self,
        ctx: Context<'_>,
        headers: &HeaderMap,
        end_of_stream: bool,
        proxy: &mut impl Proxy,
    ) -> Step {
        let path = headers.get(":path");
        if !request::guards(path, ctx.config) {
            // Nothing more is asked of the proxy for a request on another path.
            return Step::new(Flow::Continue).with(Effect::Count(Counter::PassedThrough));
        }
        let source = proxy.source_address();
        let head = RequestHead {
            method: headers.get(":method").unwrap_or_default(),
            path,
            source: source.as_deref(),
        };
        let mut verdict = request::decide(&head, ctx.config, &proxy.sources(), ctx.now);
        if is_unavailable(&verdict) {
            if let Some(newer) = proxy.newer_sources() {
                // Another worker has loaded the list since this one last looked.
                verdict = request::decide(&head, ctx.config, &newer, ctx.now);
            }
        }
        match verdict {
            Verdict::PassThrough => {
                Step::new(Flow::Continue).with(Effect::Count(Counter::PassedThrough))
            }
            Verdict::Reject(rejection) => self.reject(rejection, proxy),
            Verdict::Echo {
                echostr,
                source,
                query,
            } => {
                // Recorded so that a handshake's query, which access logs keep, can
                // never carry a push; the echo itself is harmless to repeat.
                if let Some(q) = query {
                    let _ = proxy.record(Table::Queries, q.entry(), now_u64(ctx));
                }
                let mut step = Step::new(Flow::Pause);
                count_source(&mut step, source);
                step.push(Effect::Count(Counter::Handshake));
                step.with(Effect::Reply {
                    status: 200,
                    content_type: "text/plain",
                    body: echostr.into_bytes(),
                })
            }
            Verdict::Forward {
                openid,
                source,
                safe,
                query,
            } => {
                let mut first = Vec::new();
                if let Some(q) = query {
                    match self.check_replay(ctx, q, proxy) {
                        Ok(effects) => first = effects,
                        Err(answered) => return answered,
                    }
                }
                self.client_gate_headers = headers.names_where(is_gate_header);
                let push = VerifiedPush {
                    openid,
                    source,
                    safe,
                    path: path.unwrap_or_default(),
                    declared: headers.get("content-length"),
                    end_of_stream,
                };
                let mut step = self.on_verified_push(ctx, push, proxy);
                step.effects.splice(0..0, first);
                step
            }
        }
    }

    /// Records a verified push's signed query as used. `Err` answers the push: it was
    /// used before (a replay, answered like a retry) or can no longer be checked.
    /// `Ok` holds what goes with the push whatever becomes of it.
    fn check_replay(
        &mut self,
        ctx: Context<'_>,
        query: QueryUse,
        proxy: &mut impl Proxy,
    ) -> Result<Vec<Effect>, Step> {
        match proxy.record(Table::Queries, query.entry(), now_u64(ctx)) {
            Seen::New { evicted } => {
                self.recorded.query = Some(query.identity);
                Ok(if evicted {
                    vec![
                        Effect::Count(Counter::ReplayEvicted),
                        Effect::Note(Note::ReplayTableFull),
                    ]
                } else {
                    Vec::new()
                })
            }
            Seen::Duplicate => Err(Step::new(Flow::Pause)
                .with(Effect::Count(Counter::Replayed))
                .with(Effect::Note(Note::Replayed))
                .success()),
            Seen::TooOld => Err(self.reject(
                Rejection::new(
                    Reason::Stale,
                    "the timestamp is older than the table of used queries reaches back: it \
                     cannot be checked for replay",
                ),
                proxy,
            )),
            Seen::Unrecorded => Ok(vec![
                Effect::Count(Counter::ReplayUnrecorded),
                Effect::Note(Note::ReplayUnrecorded),
            ]),
        }
    }

    /// The headers of a verified push: forward at once, or hold it for its body.
    fn on_verified_push(
        &mut self,
        ctx: Context<'_>,
        push: VerifiedPush<'_>,
        proxy: &mut impl Proxy,
    ) -> Step {
        let config = ctx.config;
        if let Err(rejection) =
            request::check_body(push.declared, push.end_of_stream, config.max_body_bytes)
        {
            return self.reject(rejection, proxy);
        }
        let Some(plan) = BodyPlan::for_push(config, push.safe) else {
            return self.forward(push.openid.as_deref(), push.source, false, None);
        };
        let mut first = Step::new(Flow::Pause);
        // A safe-mode body is replaced: the length the backend sees is set once known.
        if plan.safe.is_some() {
            first.push(Effect::RemoveRequestHeader(b"content-length".to_vec()));
        }
        self.stage = Stage::AwaitingBody {
            plan,
            openid: push.openid,
            source: push.source,
            path: push.path.to_vec(),
        };
        let mut step = if push.end_of_stream {
            self.on_whole_body(ctx, 0, proxy)
        } else {
            // Held: with `allow_on_headers_stop_iteration` the body still flows in,
            // and nothing (not even the headers) goes upstream until it has been
            // checked. Without it the body never comes: the deadline answers 408.
            Step::new(Flow::Pause).with(Effect::Hold {
                for_ms: BODY_DEADLINE_MS,
            })
        };
        step.effects.splice(0..0, first.effects);
        step
    }

    /// A part of the request body: `size` bytes so far.
    pub fn on_request_body(
        &mut self,
        ctx: Context<'_>,
        size: usize,
        end_of_stream: bool,
        proxy: &mut impl Proxy,
    ) -> Step {
        if !self.is_held() {
            return Step::new(Flow::Continue);
        }
        let max = ctx.config.max_body_bytes;
        if u64::try_from(size).map_or(true, |n| n > max) {
            return self.reject(
                Rejection::new(
                    Reason::TooLarge,
                    format!("body is larger than max_body_bytes ({max})"),
                ),
                proxy,
            );
        }
        if !end_of_stream {
            return Step::new(Flow::Pause);
        }
        let mut step = self.on_whole_body(ctx, size, proxy);
        step.effects.insert(0, Effect::Release);
        step
    }

    /// The whole body has arrived (`size` bytes): check it, then forward or answer.
    fn on_whole_body(&mut self, ctx: Context<'_>, size: usize, proxy: &mut impl Proxy) -> Step {
        let Stage::AwaitingBody {
            plan,
            openid,
            source,
            path,
        } = std::mem::replace(&mut self.stage, Stage::Idle)
        else {
            return Step::new(Flow::Continue);
        };
        let Some(body) = proxy.request_body(size) else {
            return self.reject(malformed("the body could not be read"), proxy);
        };
        let checked = match safe_mode::check(&body, &plan, ctx.config) {
            Ok(c) => c,
            Err(rejection) => return self.reject(rejection, proxy),
        };
        if let Some(identity) = checked.identity {
            let now = now_u64(ctx);
            let until = now.saturating_add(ctx.config.dedupe_seconds);
            let entry = Entry {
                identity,
                stamp: now,
                expires_at: until,
            };
            match proxy.record(Table::Messages, entry, now) {
                Seen::Duplicate => {
                    // The message itself was delivered: its query stays used.
                    self.recorded.keep();
                    return Step::new(Flow::Pause)
                        .with(Effect::Count(Counter::Deduplicated))
                        .with(Effect::Note(Note::Deduplicated {
                            window_seconds: ctx.config.dedupe_seconds,
                        }))
                        .success();
                }
                Seen::New { .. } => self.recorded.message = Some(identity),
                Seen::TooOld | Seen::Unrecorded => {}
            }
        }
        let mut first = Vec::new();
        if let Some(replacement) = checked.body_for_backend {
            first.push(Effect::SetRequestHeader(
                "content-length",
                replacement.len().to_string(),
            ));
            first.push(Effect::ReplaceRequestBody(replacement));
        }
        if checked.decrypted {
            // The backend sees a plaintext push: no encrypt_type or msg_signature that
            // would make its own SDK try to decrypt it again.
            let Ok(path) = String::from_utf8(without_safe_mode_params(&path)) else {
                return self.reject(malformed("the path could not be set"), proxy);
            };
            first.push(Effect::SetRequestHeader(":path", path));
            first.push(Effect::Count(Counter::Decrypted));
        }
        // Once the message has been decrypted the sender comes from it, verified, and
        // only from it: the query's openid is covered by no signature.
        let openid = if checked.message_read {
            checked.sender.filter(|s| is_plausible_openid(s))
        } else {
            openid
        };
        let seal = if checked.decrypted { plan.safe } else { None };
        let mut step = self.forward(openid.as_deref(), source, checked.decrypted, seal);
        step.effects.splice(0..0, first);
        step
    }

    /// Sends the push on: every client-sent gate header removed, the gate's own set.
    fn forward(
        &mut self,
        openid: Option<&str>,
        source: SourceOutcome,
        decrypted: bool,
        seal: Option<SafePush>,
    ) -> Step {
        let mut step = Step::new(Flow::Continue);
        for name in std::mem::take(&mut self.client_gate_headers) {
            step.push(Effect::RemoveRequestHeader(name));
        }
        step.push(Effect::SetRequestHeader(
            "x-wechat-gate-verified",
            "1".to_string(),
        ));
        if let Some(openid) = openid {
            step.push(Effect::SetRequestHeader(
                "x-wechat-gate-openid",
                openid.to_string(),
            ));
        }
        if decrypted {
            step.push(Effect::SetRequestHeader(
                "x-wechat-gate-decrypted",
                "1".to_string(),
            ));
        }
        count_source(&mut step, source);
        step.push(Effect::Count(Counter::Forwarded));
        if source == SourceOutcome::ReportOnly {
            step.push(Effect::Note(Note::ReportOnly));
        }
        self.stage = Stage::Forwarded { seal };
        step
    }

    /// Request trailers: a push has none, so a held push with trailers is refused.
    /// A held push with trailers is refused; on a forwarded one, trailers a backend
    /// could merge into its headers lose any name it could take for the gate's.
    pub fn on_request_trailers(&mut self, proxy: &mut impl Proxy) -> Step {
        if self.is_held() {
            return self.reject(malformed("a push has no trailers"), proxy);
        }
        let mut step = Step::new(Flow::Continue);
        if matches!(self.stage, Stage::Forwarded { .. }) {
            for name in proxy.request_trailer_names() {
                if is_gate_header(&name) {
                    step.push(Effect::RemoveRequestTrailer(name));
                }
            }
        }
        step
    }

    /// A held push's body did not arrive in time.
    pub fn on_body_deadline(&mut self, proxy: &mut impl Proxy) -> Step {
        if !self.is_held() {
            return Step::new(Flow::Continue);
        }
        let mut step = self.reject(
            Rejection::new(
                Reason::BodyTimeout,
                "the body did not reach the gate in time",
            ),
            proxy,
        );
        step.push(Effect::Note(Note::BodyNeverCame));
        step
    }

    /// The host could not carry out an effect on the request (a header or the body
    /// could not be set): refuse rather than forward a request half changed.
    pub fn on_effect_refused(&mut self, what: &'static str, proxy: &mut impl Proxy) -> Step {
        self.reject(malformed(what), proxy)
    }

    /// The stream ended. Whatever it recorded and no response has settled is
    /// forgotten unless the request reached the backend: held and never forwarded
    /// (a 408, a reset), or forwarded but never connected upstream (WeChat hung up
    /// first). Had it reached the backend, a retry or replay stays answered `success`.
    pub fn on_stream_end(&mut self, proxy: &mut impl Proxy) {
        let reached = matches!(self.stage, Stage::Forwarded { .. }) && proxy.reached_upstream();
        if reached {
            self.recorded.keep();
        } else {
            self.recorded.forget(proxy);
        }
        self.stage = Stage::Idle;
    }
}

/// A push verified on its headers.
struct VerifiedPush<'a> {
    openid: Option<String>,
    source: SourceOutcome,
    safe: Option<SafePush>,
    path: &'a [u8],
    declared: Option<&'a [u8]>,
    end_of_stream: bool,
}

fn now_u64(ctx: Context<'_>) -> u64 {
    u64::try_from(ctx.now).unwrap_or(0)
}

fn is_unavailable(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Reject(r) if r.reason == Reason::Unavailable)
}

fn count_source(step: &mut Step, source: SourceOutcome) {
    if let Some(counter) = Counter::of_source(source) {
        step.push(Effect::Count(counter));
    }
}

fn malformed(detail: &'static str) -> Rejection {
    Rejection::new(Reason::Malformed, detail)
}
