//! A request's whole life on the guarded path, as a state machine: the host feeds
//! it events (the request's headers, body and trailers, the held body's deadline,
//! the response's headers, body and trailers, the stream's end) and carries out the
//! [`Effect`]s each returns, in order, then goes on or waits as [`Flow`] says.
//!
//! ```text
//! headers ─▶ judged (request::decide) ─▶ refused / passed through
//!               │ a verified handshake or push
//!               ▼
//!      replay? ─▶ answered success
//!               │ a handshake: answered, its query used for good
//!               │ a push: body to read (safe mode, retries)    no body to read
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
//!
//! This file: the headers judged, a handshake answered, refusals, the stream's end.
//! push.rs: a push whose body is read, held or streamed ([`crate::body`] decides);
//! release.rs: a push let go, at once or once its body passed; recorded.rs: what it
//! records in the retry and replay tables; response.rs: the response side;
//! effect.rs: what it hands back.

mod effect;
mod push;
mod recorded;
mod release;
mod response;
mod sent;
#[cfg(test)]
mod tests;

pub use crate::body::{BodyMode, ByteCount, Observation};
pub use effect::{unconfigured, Effect, Flow, Level, Note, Step};
use push::{Reading, VerifiedPush};
use recorded::Recorded;
use sent::SentHead;

use crate::config::Config;
use crate::header_map::HeaderMap;
use crate::metrics::Counter;
use crate::park::{Parcel, ParkStep};
use crate::rejection::{Reason, Rejection};
use crate::request::{self, is_gate_header, Echostr, RequestHead, SourceOutcome, Sources, Verdict};
use crate::safe_mode::SafeModeQuery;
use crate::tables::replay::QueryUse;
use crate::tables::{Entry, Seen, Table};
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
    /// The cluster the request was routed to (`xds.cluster_name`).
    fn route_cluster(&mut self) -> Option<Vec<u8>>;
    /// Parks a push Envoy could not deliver in the account's parking area
    /// ([`crate::park::Area::park`]); what came of it.
    fn park(&mut self, parcel: Parcel) -> ParkStep;
}

/// The circumstances an event is judged in: the configuration, the clock, and what
/// the worker knows of its host and its own load.
#[derive(Clone, Copy)]
pub struct Circumstances<'a> {
    pub config: &'a Config,
    /// Unix seconds.
    pub now: i64,
    /// How this worker's host hands over a push's body, as far as it knows.
    pub body_mode: BodyMode,
    /// Pushes of this worker whose headers went upstream before their body passed.
    pub streamed_unverified: usize,
    /// Pushes of this worker held on their headers with no body handed over yet.
    pub waiting: usize,
    /// The longest `timestamp_tolerance_seconds` of the proxy's gates, as this worker
    /// last read it (0: unknown): how long a used query is remembered.
    pub longest_tolerance: u64,
}

/// Where a request on the guarded path is.
enum Stage {
    /// Not (yet) judged, passed through, or answered by the gate itself.
    Idle,
    /// Verified on its headers; its body is being read and checked.
    AwaitingBody(Reading),
    /// Sent to the backend. `seal` is set when its reply is to be encrypted.
    Forwarded { seal: Option<Seal> },
    /// A backend's XML reply being buffered for encryption; `size` bytes so far.
    SealingReply { seal: Seal, size: usize },
    /// Envoy's own failure reply being turned into `200 success`.
    AnsweringSuccess,
}

/// What a decrypted push's reply is sealed with: its query's timestamp and nonce
/// and the token that signed it, and the key that opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seal {
    query: SafeModeQuery,
    key: usize,
    /// The token that verified the push's `msg_signature`.
    token: usize,
    format: crate::message::Format,
}

/// One request's exchange.
pub struct Exchange {
    stage: Stage,
    recorded: Recorded,
    /// The names of client-sent headers a backend could take for the gate's.
    client_gate_headers: Vec<Vec<u8>>,
    /// Open Platform: the authorizer's AppID from the path.
    authorizer: Option<String>,
    /// The body as it went upstream, kept while the push may yet be parked
    /// ([`Config::parks`]).
    forwarded_body: Option<Vec<u8>>,
    /// Its headers as the gate sent them upstream, likewise.
    sent: Option<SentHead>,
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
            authorizer: None,
            forwarded_body: None,
            sent: None,
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
        ctx: Circumstances<'_>,
        headers: &HeaderMap,
        end_of_stream: bool,
        proxy: &mut impl Proxy,
    ) -> Step {
        let step = self.judge_headers(ctx, headers, end_of_stream, proxy);
        if ctx.config.parks() && matches!(self.stage, Stage::AwaitingBody(_)) {
            let mut sent = SentHead::of(headers);
            sent.follow(&step.effects);
            self.sent = Some(sent);
        }
        step
    }

    /// The request's changes in `step` followed in what may yet be parked.
    fn follow_sent(&mut self, step: Step) -> Step {
        if let Some(sent) = self.sent.as_mut() {
            sent.follow(&step.effects);
        }
        step
    }

    fn judge_headers(
        &mut self,
        ctx: Circumstances<'_>,
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
            } => self.answer_handshake(ctx, echostr, source, query, proxy),
            Verdict::Forward {
                openid,
                source,
                safe,
                query,
                authorizer,
            } => {
                self.client_gate_headers = headers.names_where(is_gate_header);
                self.authorizer = authorizer;
                let push = VerifiedPush {
                    openid,
                    source,
                    safe,
                    query,
                    path: path.unwrap_or_default(),
                    declared: headers.get("content-length"),
                    end_of_stream,
                };
                self.on_verified_push(ctx, push, proxy)
            }
        }
    }

    /// A verified handshake. Its query, which access logs keep, is used like a
    /// push's: used before (by a handshake or a push), it is a replay whatever its
    /// echostr, answered `success`, never echoed (text of the sender's choosing) nor
    /// decrypted (WeCom) again, and it can never carry a push.
    fn answer_handshake(
        &mut self,
        ctx: Circumstances<'_>,
        echostr: Echostr,
        source: SourceOutcome,
        query: Option<QueryUse>,
        proxy: &mut impl Proxy,
    ) -> Step {
        let mut first = Vec::new();
        if let Some(q) = query {
            match self.check_replay(ctx, q, proxy) {
                Ok(effects) => first = effects,
                Err(answered) => return answered,
            }
        }
        let answer = match echostr.open(ctx.config) {
            Ok(answer) => answer,
            Err(rejection) => return self.reject(rejection, proxy),
        };
        // Answered here and now: its query stays used whatever becomes of the
        // stream.
        self.recorded.keep();
        let mut step = Step::new(Flow::Pause);
        step.effects.extend(first);
        count_source(&mut step, source);
        step.push(Effect::Count(Counter::Handshake));
        step.with(Effect::LocalReply {
            status: 200,
            content_type: "text/plain",
            body: answer.into_bytes(),
        })
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

fn now_u64(ctx: Circumstances<'_>) -> u64 {
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
