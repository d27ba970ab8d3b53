//! A verified push on its way to the backend: forwarded at once when its body need
//! not be read, else read and checked first, in one of two ways.
//!
//! - **hold**: the headers wait (`Pause`) while the body arrives; nothing of the
//!   push goes upstream until the whole body has passed. Needs a host that hands a
//!   Wasm filter the body of a paused request (Envoy ≥ 1.35 with
//!   `allow_on_headers_stop_iteration`).
//! - **stream**: the headers (checked: signature, source, freshness, replay) go on at
//!   once with the gate's headers set; the body is buffered in the body phase and
//!   released only once it has passed. A push refused after its headers left is
//!   answered here, and Envoy resets the upstream request before its body is
//!   complete, so the backend never completes it. A body that may change (safe mode)
//!   goes on chunked, never under a length a cut-short body could satisfy.
//!
//! While a worker does not know which its host does, a push is held and probed: a
//! body handed to the filter while held shows the host holds; bytes of it that Envoy
//! counted (`request.total_size`, read from the root's tick) but did not hand over
//! show the host keeps a paused request's body back, and the push is streamed. A
//! client that is slow or stalls sends no byte, shows nothing, and is waited for
//! (408 at the deadline, never upstream): only the host can settle the mode.
//!
//! In stream mode at most [`MAX_STREAMED_UNVERIFIED`] pushes per worker go upstream
//! before their body has arrived; one more waits on its headers, off the backend,
//! until Envoy holds its whole body, and beyond [`MAX_WAITING`] is refused 503.

use super::{
    count_source, malformed, now_u64, Context, Effect, Exchange, Flow, Note, Proxy, Seal, Stage,
    Step,
};
use crate::held::{
    BodyMode, ByteCount, Observation, BODY_DEADLINE_MS, MAX_STREAMED_UNVERIFIED, MAX_WAITING,
};
use crate::metrics::Counter;
use crate::query::without_safe_mode_params;
use crate::rejection::{Reason, Rejection};
use crate::request::{self, is_plausible_openid, SourceOutcome};
use crate::safe_mode::{self, BodyPlan, Checked, SafeModeQuery, Sealed, Verified};
use crate::tables::replay::QueryUse;
use crate::tables::{retry, Seen, Table};

/// A push verified on its headers.
pub(super) struct VerifiedPush<'a> {
    pub(super) openid: Option<String>,
    pub(super) source: SourceOutcome,
    pub(super) safe: Option<SafeModeQuery>,
    /// Its signed query, recorded as used when the push first goes upstream.
    pub(super) query: Option<QueryUse>,
    pub(super) path: &'a [u8],
    pub(super) declared: Option<&'a [u8]>,
    pub(super) end_of_stream: bool,
}

/// A push whose body is being read.
pub(super) struct Reading {
    plan: BodyPlan,
    openid: Option<String>,
    source: SourceOutcome,
    /// `:path`, to be rewritten without the safe-mode parameters once decrypted.
    path: Vec<u8>,
    /// Its headers went on already (stream mode).
    streaming: bool,
    /// Its declared `content-length`.
    declared: Option<u64>,
    /// A part of its body has arrived.
    body_seen: bool,
    /// Its signed query, not yet recorded: a held push's is recorded only as it goes
    /// upstream, so that a second use arriving meanwhile is not answered `success`
    /// for a first use that may still fail (a 408) and never reach the backend.
    query: Option<QueryUse>,
}

impl Reading {
    /// The body will be read from the decrypted message, so the sender must come
    /// from it, not from the query.
    fn sender_from_message(&self, config: &crate::config::Config) -> bool {
        self.plan.safe.is_some() && config.safe_mode.is_some() && config.appid.is_some()
    }
}

impl Exchange {
    /// The headers of a verified push: forward at once, or read its body first.
    pub(super) fn on_verified_push(
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
        let Some(mut plan) = BodyPlan::for_push(config, push.safe) else {
            let first = match self.record_query(ctx, push.query, proxy) {
                Ok(effects) => effects,
                Err(answered) => return answered,
            };
            let mut step = Step::new(Flow::Continue);
            step.effects = first;
            step.effects
                .extend(self.gate_headers(push.openid.as_deref(), false));
            return self.forwarded(step, push.source, None);
        };
        plan.authorizer = self.authorizer.clone();
        let reading = Reading {
            plan,
            openid: push.openid,
            source: push.source,
            path: push.path.to_vec(),
            streaming: false,
            body_seen: false,
            query: push.query,
            declared: push
                .declared
                .and_then(|d| std::str::from_utf8(d).ok()?.trim().parse().ok()),
        };
        let mut first = Vec::new();
        // A safe-mode body is replaced: its length is set once known (hold), or it
        // goes on chunked (stream).
        if reading.plan.safe.is_some() {
            first.push(Effect::RemoveRequestHeader(b"content-length".to_vec()));
        }
        self.stage = Stage::AwaitingBody(reading);
        if push.end_of_stream {
            let mut step = self.on_whole_body(ctx, 0, proxy);
            step.effects.splice(0..0, first);
            return step;
        }
        let mut step = match ctx.body_mode {
            BodyMode::Stream if ctx.streamed_unverified < MAX_STREAMED_UNVERIFIED => {
                match self.let_headers_go(ctx, proxy) {
                    Ok(effects) => first.extend(effects),
                    Err(answered) => return answered,
                }
                Step::new(Flow::Continue)
            }
            BodyMode::Hold => Step::new(Flow::Pause),
            // Not known yet, or as many streamed bodies outstanding as a worker may
            // have: the headers wait, off the backend, and the host is watched.
            BodyMode::Unknown | BodyMode::Stream if ctx.waiting < MAX_WAITING => {
                Step::new(Flow::Pause).with(Effect::Probe)
            }
            BodyMode::Unknown | BodyMode::Stream => {
                return self.reject(
                    Rejection::new(
                        Reason::Busy,
                        "this worker already waits on as many push bodies as it may",
                    ),
                    proxy,
                )
            }
        };
        step.effects.splice(0..0, first);
        // Held or buffered, a body that never comes is answered 408.
        step.with(Effect::Hold {
            for_ms: BODY_DEADLINE_MS,
        })
    }

    /// Stream mode: what goes upstream with the headers, before the body is read.
    /// The gate's headers are set now (they cannot be later); the sender is left out
    /// when only the decrypted message could tell it.
    /// Its query is recorded now: `Err` answers a push whose query was used before.
    fn let_headers_go(
        &mut self,
        ctx: Context<'_>,
        proxy: &mut impl Proxy,
    ) -> Result<Vec<Effect>, Step> {
        let query = match &mut self.stage {
            Stage::AwaitingBody(reading) => reading.query.take(),
            _ => return Ok(Vec::new()),
        };
        let mut effects = self.record_query(ctx, query, proxy)?;
        let Stage::AwaitingBody(reading) = &mut self.stage else {
            return Ok(effects);
        };
        reading.streaming = true;
        let openid = if reading.sender_from_message(ctx.config) {
            None
        } else {
            reading.openid.clone()
        };
        let decrypt = reading.plan.decrypt;
        let path = decrypt.then(|| without_safe_mode_params(&reading.path));
        effects.extend(self.gate_headers(openid.as_deref(), decrypt));
        if let Some(path) = path {
            // Envoy refuses a raw non-ASCII path, so this is always UTF-8 already.
            let path = String::from_utf8_lossy(&path).into_owned();
            effects.push(Effect::SetRequestHeader(":path", path));
        }
        effects.push(Effect::Streamed);
        Ok(effects)
    }

    /// Records the push's signed query as used, if it has one not yet recorded.
    fn record_query(
        &mut self,
        ctx: Context<'_>,
        query: Option<QueryUse>,
        proxy: &mut impl Proxy,
    ) -> Result<Vec<Effect>, Step> {
        match query {
            Some(query) => self.check_replay(ctx, query, proxy),
            None => Ok(Vec::new()),
        }
    }

    /// A tick's look at a push held on its headers whose body the filter has not
    /// been handed: `count` is Envoy's byte count for it when held and now. Bytes
    /// Envoy received and kept back settle stream mode (on a host that holds, Envoy
    /// hands them to the filter at once); once streaming, a push held on its headers
    /// goes upstream when Envoy holds its whole body. A push with no byte yet waits
    /// (408 at the deadline).
    pub fn on_probe(&mut self, ctx: Context<'_>, count: ByteCount, proxy: &mut impl Proxy) -> Step {
        let declared = match &self.stage {
            Stage::AwaitingBody(r) if !r.streaming && !r.body_seen => r.declared,
            _ => return Step::new(Flow::Continue).with(Effect::EndProbe),
        };
        let arrived = count.arrived();
        let go = match ctx.body_mode {
            // The host hands the body over when it comes.
            BodyMode::Hold => return Step::new(Flow::Pause).with(Effect::EndProbe),
            BodyMode::Unknown => arrived > 0,
            // Held past the cap (or from before the mode was known): it goes on once
            // it cannot stall any more. A part is not enough, even with room again:
            // a push that stalls half-way would hold a backend connection after all.
            BodyMode::Stream => declared.is_some_and(|d| d > 0 && arrived >= d),
        };
        if !go {
            let mut step = Step::new(Flow::Pause);
            if count.when_held.is_none() || count.now.is_none() {
                step.push(Effect::Note(Note::NoByteCount));
            }
            return step;
        }
        let mut step = Step::new(Flow::Continue);
        if ctx.body_mode == BodyMode::Unknown {
            step.push(Effect::Observe(Observation::BodyKeptByHost));
        }
        match self.let_headers_go(ctx, proxy) {
            Ok(effects) => step.effects.extend(effects),
            Err(answered) => {
                // Used meanwhile by another push: answered here, never upstream.
                self.stage = Stage::Idle;
                step.effects.push(Effect::Release);
                step.effects.extend(answered.effects);
                step.flow = answered.flow;
                return step;
            }
        }
        step.with(Effect::ResumeRequest)
    }

    /// A part of the request body: `size` bytes so far.
    pub fn on_request_body(
        &mut self,
        ctx: Context<'_>,
        size: usize,
        end_of_stream: bool,
        proxy: &mut impl Proxy,
    ) -> Step {
        let Stage::AwaitingBody(reading) = &mut self.stage else {
            return Step::new(Flow::Continue);
        };
        let mut first = Vec::new();
        if !reading.body_seen {
            reading.body_seen = true;
            if !reading.streaming {
                first.push(Effect::EndProbe);
                first.push(Effect::Observe(Observation::BodyWhileHeld));
            }
        }
        let max = ctx.config.max_body_bytes;
        let mut step = if u64::try_from(size).map_or(true, |n| n > max) {
            self.reject(
                Rejection::new(
                    Reason::TooLarge,
                    format!("body is larger than max_body_bytes ({max})"),
                ),
                proxy,
            )
        } else if !end_of_stream {
            // A body that keeps coming is waited for: the deadline counts from its
            // last part, so only a stall is answered 408.
            Step::new(Flow::Pause).with(Effect::Hold {
                for_ms: BODY_DEADLINE_MS,
            })
        } else {
            let mut step = self.on_whole_body(ctx, size, proxy);
            step.effects.insert(0, Effect::Release);
            step
        };
        step.effects.splice(0..0, first);
        step
    }

    /// The whole body has arrived (`size` bytes): check it, then forward or answer.
    fn on_whole_body(&mut self, ctx: Context<'_>, size: usize, proxy: &mut impl Proxy) -> Step {
        let Stage::AwaitingBody(reading) = std::mem::replace(&mut self.stage, Stage::Idle) else {
            return Step::new(Flow::Continue);
        };
        let Some(body) = proxy.request_body(size) else {
            return self.reject(malformed("the body could not be read"), proxy);
        };
        // A held push's query, verified on its headers, is recorded now that the push
        // is about to go upstream, before its body is judged: a used query is a replay
        // whatever its body.
        let mut first = match self.record_query(ctx, reading.query, proxy) {
            Ok(effects) => effects,
            Err(answered) => return answered,
        };
        let verified = match safe_mode::verify(&body, &reading.plan, ctx.config) {
            Ok(v) => v,
            Err(rejection) => return self.reject(rejection, proxy),
        };
        // WeCom: no signature covers the query alone, so it is recorded against
        // replays only now that msg_signature has verified it, and before anything is
        // decrypted: a used query is a replay whatever its body carries.
        if let Verified::Sealed(Sealed {
            query: Some(query), ..
        }) = &verified
        {
            match self.check_replay(ctx, *query, proxy) {
                Ok(effects) => first.extend(effects),
                Err(answered) => return answered,
            }
        }
        let checked = match safe_mode::open(verified, &reading.plan, ctx.config) {
            Ok(c) => c,
            Err(rejection) => return self.reject(rejection, proxy),
        };
        if let Some(identity) = checked.identity {
            if let Some(answered) = self.check_retry(ctx, identity, proxy) {
                return answered;
            }
        }
        let decrypted = checked.decrypted;
        let mut step = match self.release(reading, checked) {
            Ok(step) => step,
            Err(rejection) => return self.reject(rejection, proxy),
        };
        if decrypted {
            step.push(Effect::Count(Counter::Decrypted));
        }
        step.effects.splice(0..0, first);
        step
    }

    /// Records a message against WeChat's retries; answers it if it is one.
    fn check_retry(
        &mut self,
        ctx: Context<'_>,
        identity: u64,
        proxy: &mut impl Proxy,
    ) -> Option<Step> {
        let now = now_u64(ctx);
        let entry = retry::entry(identity, now, ctx.config.dedupe_seconds);
        match proxy.record(Table::Retry, entry, now) {
            Seen::Duplicate => {
                // The message itself was delivered: its query stays used.
                self.recorded.keep();
                Some(
                    Step::new(Flow::Pause)
                        .with(Effect::Count(Counter::Deduplicated))
                        .with(Effect::Note(Note::Deduplicated {
                            window_seconds: ctx.config.dedupe_seconds,
                        }))
                        .success(),
                )
            }
            Seen::New { .. } => {
                self.recorded.message = Some(identity);
                None
            }
            Seen::TooOld | Seen::Unrecorded => None,
        }
    }

    /// A body that passed: sent on (replaced where it changes). Held, the push's
    /// headers are set now; streamed, they went on already.
    fn release(&mut self, reading: Reading, checked: Checked) -> Result<Step, Rejection> {
        let mut step = Step::new(Flow::Continue);
        if let Some(replacement) = checked.body_for_backend {
            if !reading.streaming {
                step.push(Effect::SetRequestHeader(
                    "content-length",
                    replacement.len().to_string(),
                ));
            }
            step.push(Effect::ReplaceRequestBody(replacement));
        }
        if !reading.streaming {
            if checked.decrypted {
                // The backend sees a plaintext push: no encrypt_type or msg_signature
                // that would make its own SDK try to decrypt it again.
                let path = String::from_utf8(without_safe_mode_params(&reading.path))
                    .map_err(|_| malformed("the path could not be set"))?;
                step.push(Effect::SetRequestHeader(":path", path));
            }
            // Once the message has been decrypted the sender comes from it, verified,
            // and only from it: the query's openid is covered by no signature.
            let openid = if checked.message_read {
                checked.sender.filter(|s| is_plausible_openid(s))
            } else {
                reading.openid.clone()
            };
            step.effects
                .extend(self.gate_headers(openid.as_deref(), checked.decrypted));
        }
        let seal = match reading.plan.safe {
            Some(query) if checked.decrypted => Some(Seal {
                query,
                key: checked.key,
                token: checked.token,
                format: checked.format,
            }),
            _ => None,
        };
        Ok(self.forwarded(step, reading.source, seal))
    }

    /// Every client-sent header a backend could take for the gate's removed, and the
    /// gate's own set.
    fn gate_headers(&mut self, openid: Option<&str>, decrypted: bool) -> Vec<Effect> {
        let mut effects: Vec<Effect> = std::mem::take(&mut self.client_gate_headers)
            .into_iter()
            .map(Effect::RemoveRequestHeader)
            .collect();
        effects.push(Effect::SetRequestHeader(
            "x-wechat-gate-verified",
            "1".to_string(),
        ));
        if let Some(openid) = openid {
            effects.push(Effect::SetRequestHeader(
                "x-wechat-gate-openid",
                openid.to_string(),
            ));
        }
        if decrypted {
            effects.push(Effect::SetRequestHeader(
                "x-wechat-gate-decrypted",
                "1".to_string(),
            ));
        }
        if let Some(authorizer) = self.authorizer.clone() {
            effects.push(Effect::SetRequestHeader(
                "x-wechat-gate-authorizer-appid",
                authorizer,
            ));
        }
        effects
    }

    /// The push goes on: counted, and from now on its response is the gate's concern.
    fn forwarded(&mut self, mut step: Step, source: SourceOutcome, seal: Option<Seal>) -> Step {
        count_source(&mut step, source);
        step.push(Effect::Count(Counter::Forwarded));
        if source == SourceOutcome::ReportOnly {
            step.push(Effect::Note(Note::ReportOnly));
        }
        self.stage = Stage::Forwarded { seal };
        step
    }

    /// A held push with trailers is refused; on a forwarded one, trailers a backend
    /// could merge into its headers lose any name it could take for the gate's.
    pub fn on_request_trailers(&mut self, proxy: &mut impl Proxy) -> Step {
        if self.is_held() {
            return self.reject(malformed("a push has no trailers"), proxy);
        }
        let mut step = Step::new(Flow::Continue);
        if matches!(self.stage, Stage::Forwarded { .. }) {
            for name in proxy.request_trailer_names() {
                if request::is_gate_header(&name) {
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
}
