//! A verified push whose body is to be read: held on its headers or streamed
//! ([`crate::body`] says which, and how it waits), its body parts taken in, refused
//! if it never comes; once whole it is checked and released (release.rs).

use super::{malformed, Circumstances, Effect, Exchange, Flow, Note, Proxy, Stage, Step};
use crate::body::{self, BodyPlan, ByteCount, Observation, Probed, Wait, BODY_DEADLINE_MS};
use crate::config::Config;
use crate::query::without_safe_mode_params;
use crate::rejection::{Reason, Rejection};
use crate::request::{self, SourceOutcome};
use crate::safe_mode::SafeModeQuery;
use crate::tables::replay::QueryUse;

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
    pub(super) plan: BodyPlan,
    pub(super) openid: Option<String>,
    pub(super) source: SourceOutcome,
    /// `:path`, to be rewritten without the safe-mode parameters once decrypted.
    pub(super) path: Vec<u8>,
    /// Its headers went on already (stream mode).
    pub(super) streaming: bool,
    /// Its declared `content-length`.
    declared: Option<u64>,
    /// A part of its body has arrived.
    body_seen: bool,
    /// Its signed query, not yet recorded: a held push's is recorded only as it goes
    /// upstream, so that a second use arriving meanwhile is not answered `success`
    /// for a first use that may still fail (a 408) and never reach the backend.
    pub(super) query: Option<QueryUse>,
}

impl Reading {
    /// The body will be read from the decrypted message, so the sender must come
    /// from it, not from the query.
    fn sender_from_message(&self, config: &Config) -> bool {
        self.plan.safe.is_some() && config.safe_mode.is_some() && config.appid.is_some()
    }
}

impl Exchange {
    /// The headers of a verified push: forward at once, or read its body first.
    pub(super) fn on_verified_push(
        &mut self,
        ctx: Circumstances<'_>,
        push: VerifiedPush<'_>,
        proxy: &mut impl Proxy,
    ) -> Step {
        let config = ctx.config;
        if let Err(rejection) =
            body::check_declared(push.declared, push.end_of_stream, config.max_body_bytes)
        {
            return self.reject(rejection, proxy);
        }
        let Some(mut plan) = BodyPlan::for_push(config, push.safe) else {
            return self.forward_unread(ctx, push.openid, push.source, push.query, proxy);
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
            declared: body::declared_length(push.declared),
        };
        let mut first = Vec::new();
        self.stage = Stage::AwaitingBody(reading);
        if push.end_of_stream {
            let mut step = self.on_whole_body(ctx, 0, proxy);
            step.effects.splice(0..0, first);
            return step;
        }
        let wait = match body::wait_for_body(ctx.body_mode, ctx.streamed_unverified, ctx.waiting) {
            Ok(wait) => wait,
            Err(rejection) => return self.reject(rejection, proxy),
        };
        let mut step = match wait {
            Wait::Stream => {
                match self.let_headers_go(ctx, proxy) {
                    Ok(effects) => first.extend(effects),
                    Err(answered) => return answered,
                }
                Step::new(Flow::Continue)
            }
            Wait::Hold => Step::new(Flow::Pause),
            Wait::Probe => Step::new(Flow::Pause).with(Effect::Probe),
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
        ctx: Circumstances<'_>,
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
        if reading.plan.safe.is_some() {
            // A safe-mode body is replaced, so it goes on chunked. (Held, its
            // headers wait and the new length is set with the body: `release`.)
            effects.push(Effect::RemoveRequestHeader(b"content-length".to_vec()));
        }
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

    /// A tick's look at a push held on its headers whose body the filter has not
    /// been handed: `count` is Envoy's byte count for it when held and now
    /// ([`body::probe`] reads it). A push that goes on is let upstream here.
    pub fn on_probe(
        &mut self,
        ctx: Circumstances<'_>,
        count: ByteCount,
        proxy: &mut impl Proxy,
    ) -> Step {
        let step = self.probe(ctx, count, proxy);
        self.follow_sent(step)
    }

    fn probe(&mut self, ctx: Circumstances<'_>, count: ByteCount, proxy: &mut impl Proxy) -> Step {
        let declared = match &self.stage {
            Stage::AwaitingBody(r) if !r.streaming && !r.body_seen => r.declared,
            _ => return Step::new(Flow::Continue).with(Effect::EndProbe),
        };
        let observed = match body::probe(ctx.body_mode, declared, count) {
            // The host hands the body over when it comes.
            Probed::HostHolds => return Step::new(Flow::Pause).with(Effect::EndProbe),
            Probed::Wait { no_count } => {
                let mut step = Step::new(Flow::Pause);
                if no_count {
                    step.push(Effect::Note(Note::NoByteCount));
                }
                return step;
            }
            Probed::Go { observed } => observed,
        };
        let mut step = Step::new(Flow::Continue);
        if let Some(observation) = observed {
            step.push(Effect::Observe(observation));
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
        ctx: Circumstances<'_>,
        size: usize,
        end_of_stream: bool,
        proxy: &mut impl Proxy,
    ) -> Step {
        let step = self.request_body(ctx, size, end_of_stream, proxy);
        self.follow_sent(step)
    }

    fn request_body(
        &mut self,
        ctx: Circumstances<'_>,
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
        let mut step = if let Err(rejection) = body::check_received(size, ctx.config.max_body_bytes)
        {
            self.reject(rejection, proxy)
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
