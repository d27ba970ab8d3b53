//! A verified push let go to the backend: at once when its body need not be read,
//! else once the whole body has passed its checks ([`crate::body`]): recorded against
//! replays and retries, sent on (replaced where it changes) with the gate's headers,
//! and its reply sealed later if it was decrypted.

use super::push::Reading;
use super::{
    count_source, malformed, Circumstances, Effect, Exchange, Flow, Note, Proxy, Seal, Stage, Step,
};
use crate::body::{self, Checked};
use crate::metrics::Counter;
use crate::query::without_safe_mode_params;
use crate::rejection::Rejection;
use crate::request::{is_plausible_openid, SourceOutcome};
use crate::tables::replay::QueryUse;

impl Exchange {
    /// A push whose body need not be read: forwarded on its headers, as it streams.
    pub(super) fn forward_unread(
        &mut self,
        ctx: Circumstances<'_>,
        openid: Option<String>,
        source: SourceOutcome,
        query: Option<QueryUse>,
        proxy: &mut impl Proxy,
    ) -> Step {
        let first = match self.record_query(ctx, query, proxy) {
            Ok(effects) => effects,
            Err(answered) => return answered,
        };
        let mut step = Step::new(Flow::Continue);
        step.effects = first;
        step.effects
            .extend(self.gate_headers(openid.as_deref(), false));
        self.forwarded(step, source, None)
    }

    /// The whole body has arrived (`size` bytes): check it, then forward or answer.
    pub(super) fn on_whole_body(
        &mut self,
        ctx: Circumstances<'_>,
        size: usize,
        proxy: &mut impl Proxy,
    ) -> Step {
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
        let verified = match body::verify(&body, &reading.plan, ctx.config) {
            Ok(v) => v,
            Err(rejection) => return self.reject(rejection, proxy),
        };
        // WeCom: no signature covers the query alone, so it is recorded against
        // replays only now that msg_signature has verified it, and before anything is
        // decrypted: a used query is a replay whatever its body carries.
        if let Some(query) = verified.query_verified_by_body() {
            match self.check_replay(ctx, query, proxy) {
                Ok(effects) => first.extend(effects),
                Err(answered) => return answered,
            }
        }
        let checked = match body::open(verified, &reading.plan, ctx.config) {
            Ok(c) => c,
            Err(rejection) => return self.reject(rejection, proxy),
        };
        if let Some(identity) = checked.identity {
            if let Some(answered) = self.check_retry(ctx, identity, proxy) {
                return answered;
            }
        }
        let decrypted = checked.decrypted;
        if ctx.config.parks() {
            self.forwarded_body = Some(checked.body_for_backend.clone().unwrap_or(body));
        }
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
    pub(super) fn gate_headers(&mut self, openid: Option<&str>, decrypted: bool) -> Vec<Effect> {
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
}
