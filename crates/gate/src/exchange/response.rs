//! The response side of an exchange: Envoy's own failure turned into `success`, a
//! message forgotten when it was not delivered, and the reply to a decrypted push
//! sealed for WeChat.

use super::Seal;
use super::{Circumstances, Effect, Exchange, Flow, Note, Proxy, Stage, Step};
use crate::config::{Config, UpstreamFailure};
use crate::metrics::Counter;
use crate::park::{Outcome, Parcel};
use crate::safe_mode::{self, ReplyBody, ReplySeal};

impl Exchange {
    /// The response's headers.
    pub fn on_response_headers(
        &mut self,
        ctx: Circumstances<'_>,
        end_of_stream: bool,
        proxy: &mut impl Proxy,
    ) -> Step {
        if !matches!(self.stage, Stage::Forwarded { .. }) {
            // Passed through, or answered by the gate itself: nothing is asked. Or
            // streamed, its headers went on and the backend answered before the body
            // was whole: the body stays held until it has passed.
            return Step::new(Flow::Continue);
        }
        let Stage::Forwarded { seal } = std::mem::replace(&mut self.stage, Stage::Idle) else {
            return Step::new(Flow::Continue);
        };
        let config = ctx.config;
        let status = proxy.response_status().unwrap_or(0);
        // Only a 5xx can be Envoy's own: the property is read for those alone.
        let origin = if status >= 500 {
            Origin::of(proxy.response_details().as_deref())
        } else {
            Origin::Backend
        };
        let mut parking = Vec::new();
        if origin != Origin::Backend && config.on_upstream_failure == UpstreamFailure::Success {
            // Parked, the gate redelivers it; with parking off it is lost (said in the
            // README); with no room, WeChat's own retries must carry it.
            let parked = if config.parks() {
                let parcel = self.parcel(proxy);
                let step = proxy.park(parcel);
                parking = step.effects.into_iter().map(Effect::Park).collect();
                step.outcome == Outcome::Parked
            } else {
                true
            };
            if parked {
                return self.answer_success(status, end_of_stream, parking);
            }
        }
        self.forwarded_body = None;
        self.sent = None;
        if !(200..300).contains(&status) {
            // Not delivered (or refused by the backend): WeChat's retry, a new query
            // with the same message, must get through. The query itself is used up
            // once the backend may have seen it: the same query with another body
            // must never reach the backend again.
            self.recorded.forget_message(proxy);
            if origin == Origin::EnvoyBeforeSending {
                self.recorded.forget(proxy);
            }
            self.recorded.keep();
            let mut step = Step::new(Flow::Continue);
            step.effects = parking;
            return step;
        }
        self.recorded.keep();
        match seal {
            Some(safe) if !end_of_stream => {
                self.stage = Stage::SealingReply {
                    seal: safe,
                    size: 0,
                };
                // The encrypted reply has another length.
                Step::new(Flow::Continue).with(Effect::RemoveResponseHeader("content-length"))
            }
            _ => Step::new(Flow::Continue),
        }
    }

    /// WeChat is told the push was handled and will not retry it.
    fn answer_success(&mut self, status: u32, end_of_stream: bool, parking: Vec<Effect>) -> Step {
        self.recorded.keep();
        if !end_of_stream {
            self.stage = Stage::AnsweringSuccess;
        }
        let mut step = Step::new(Flow::Continue)
            .with(Effect::Count(Counter::UpstreamFailure))
            .with(Effect::Note(Note::UpstreamFailed { status }))
            .with(Effect::SetResponseHeader(":status", "200"))
            .with(Effect::SetResponseHeader("content-type", "text/plain"))
            .with(Effect::RemoveResponseHeader("content-length"));
        step.effects.extend(parking);
        step
    }

    /// What the backend would have got, for parking: the headers and the body kept as
    /// they went upstream, and the route's cluster (asked of the proxy now).
    fn parcel(&mut self, proxy: &mut impl Proxy) -> Parcel {
        let text = |v: Option<&[u8]>| {
            String::from_utf8(v.unwrap_or_default().to_vec()).unwrap_or_default()
        };
        let sent = self.sent.take().unwrap_or_default();
        Parcel {
            cluster: text(proxy.route_cluster().as_deref()),
            authority: text(sent.get(":authority")),
            path: text(sent.get(":path")),
            headers: sent.into_pairs(),
            body: self.forwarded_body.take().unwrap_or_default(),
        }
    }

    /// A part of the response body: `size` bytes so far.
    pub fn on_response_body(
        &mut self,
        ctx: Circumstances<'_>,
        size: usize,
        end_of_stream: bool,
        proxy: &mut impl Proxy,
    ) -> Step {
        match &mut self.stage {
            Stage::AnsweringSuccess => {
                if !end_of_stream {
                    return Step::new(Flow::Pause);
                }
                self.stage = Stage::Idle;
                Step::new(Flow::Continue).with(Effect::ReplaceResponseBody(b"success".to_vec()))
            }
            Stage::SealingReply { size: seen, .. } => {
                *seen = size;
                if !end_of_stream {
                    return Step::new(Flow::Pause);
                }
                self.finish_reply(ctx.config, proxy)
            }
            _ => Step::new(Flow::Continue),
        }
    }

    /// Response trailers end the body: whatever was buffered is sealed now, never let
    /// go as it is.
    pub fn on_response_trailers(&mut self, ctx: Circumstances<'_>, proxy: &mut impl Proxy) -> Step {
        match self.stage {
            Stage::SealingReply { .. } => self.finish_reply(ctx.config, proxy),
            Stage::AnsweringSuccess => {
                self.stage = Stage::Idle;
                Step::new(Flow::Continue).with(Effect::ReplaceResponseBody(b"success".to_vec()))
            }
            _ => Step::new(Flow::Continue),
        }
    }

    /// The buffered reply is complete: seal it, or if that cannot be done, replace it
    /// with `success` (a plaintext reply never goes out).
    fn finish_reply(&mut self, config: &Config, proxy: &mut impl Proxy) -> Step {
        let Stage::SealingReply {
            seal: sealing,
            size,
        } = std::mem::replace(&mut self.stage, Stage::Idle)
        else {
            return Step::new(Flow::Continue);
        };
        match seal(config, &sealing, size, proxy) {
            Some(ReplyBody::AsIs) => Step::new(Flow::Continue),
            Some(ReplyBody::Encrypted(envelope)) => Step::new(Flow::Continue)
                .with(Effect::ReplaceResponseBody(envelope.into_bytes()))
                .with(Effect::Count(Counter::ReplyEncrypted)),
            None => Step::new(Flow::Continue)
                .with(Effect::Note(Note::SealFailed))
                .with(Effect::ReplaceResponseBody(b"success".to_vec())),
        }
    }
}

/// Who made a response, as far as delivery goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The backend answered (`via_upstream`): it had the request.
    Backend,
    /// Envoy answered and never sent the request (no connection, no healthy host,
    /// no route, overflow): it is as if it never came.
    EnvoyBeforeSending,
    /// Envoy answered after the request may have reached the backend (a timeout, a
    /// reset): the backend may have seen it.
    EnvoyAfterSending,
}

impl Origin {
    fn of(details: Option<&[u8]>) -> Origin {
        const NEVER_SENT: [&[u8]; 8] = [
            b"connection_failure",
            b"connection_timeout",
            b"no_healthy_upstream",
            b"overflow",
            b"route_not_found",
            b"cluster_not_found",
            b"maintenance_mode",
            b"no_cluster",
        ];
        match details {
            Some(b"via_upstream") => Origin::Backend,
            Some(d)
                if NEVER_SENT
                    .iter()
                    .any(|n| d.windows(n.len()).any(|w| w == *n)) =>
            {
                Origin::EnvoyBeforeSending
            }
            _ => Origin::EnvoyAfterSending,
        }
    }
}

/// The sealed form of the backend's buffered reply; `None` if it cannot be sealed.
fn seal(config: &Config, sealing: &Seal, size: usize, proxy: &mut impl Proxy) -> Option<ReplyBody> {
    let query = &sealing.query;
    let (Some(safe_mode), Some(appid)) = (&config.safe_mode, &config.appid) else {
        return None;
    };
    let body = proxy.response_body(size)?;
    // Never a predictable prefix: without randomness the reply cannot be sealed.
    let random = proxy.random16()?;
    let seal = ReplySeal {
        format: sealing.format,
        token: config.token.get(sealing.token)?.expose(),
        key: safe_mode.keys.get(sealing.key)?,
        appid,
        timestamp: &query.timestamp,
        nonce: &query.nonce,
    };
    Some(safe_mode::seal_reply(&body, &seal, &random))
}
