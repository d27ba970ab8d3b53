//! Hold or stream: how this worker's host hands a Wasm filter a push's body, learnt
//! from what the host does (never from what a client does), and how a push waits for
//! its body meanwhile.
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

use crate::rejection::{Reason, Rejection};

/// How long a held push may wait for (the rest of) its body: WeChat sends it with the
/// headers, and gives up on the whole request after 5 s. Counted from the headers and
/// again from each part of the body that arrives, so a slow body is waited for and a
/// stalled one is answered 408.
pub const BODY_DEADLINE_MS: u64 = 3000;

/// Pushes a worker lets upstream, in stream mode, whose body has not yet arrived and
/// passed: each holds a backend connection until it does, or until its deadline. A
/// push beyond these waits on its headers, off the backend, until Envoy holds its
/// whole body (a push from WeChat, whose body comes with its headers, goes on at the
/// next tick); one that stalls is answered 408 there and never reaches the backend.
pub const MAX_STREAMED_UNVERIFIED: usize = 16;

/// Pushes a worker holds on their headers with no body yet (see
/// [`super::PROBE_MS`]); one more is refused 503 with `Retry-After` (reason `busy`)
/// rather than held.
pub const MAX_WAITING: usize = 1024;

/// How this host hands a Wasm filter a push's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Not known yet: pushes are held and probed.
    Unknown,
    /// The headers wait while the body arrives (`allow_on_headers_stop_iteration`).
    Hold,
    /// The headers go on first; the gate buffers the body in the body phase.
    Stream,
}

/// What a push showed about the host. Both are the host's own doing, never a
/// client's: a slow or stalled client sends no byte, and so shows nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Its body was handed to the filter while its headers were held: the host holds.
    BodyWhileHeld,
    /// Envoy counted bytes of its body while its headers were held, and did not hand
    /// them to the filter: the host keeps a paused request's body back.
    BodyKeptByHost,
}

/// Envoy's count of a held push's bytes (`request.total_size`: its headers and the
/// body bytes the connection manager has received), when the push was held and now.
/// Envoy counts a body's bytes before any filter sees them, so a count that grew
/// while the filter was handed nothing is the host holding the body back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCount {
    pub when_held: Option<u64>,
    pub now: Option<u64>,
}

impl ByteCount {
    /// Body bytes Envoy has received since the push was held (0: none, or no count).
    pub fn arrived(self) -> u64 {
        match (self.when_held, self.now) {
            (Some(then), Some(now)) => now.saturating_sub(then),
            _ => 0,
        }
    }

    /// Decodes the property's value: a little-endian 64-bit integer.
    pub fn decode(raw: Option<&[u8]>) -> Option<u64> {
        let bytes: [u8; 8] = raw?.try_into().ok()?;
        u64::try_from(i64::from_le_bytes(bytes)).ok()
    }
}

/// What a worker has learnt of its host's body mode.
#[derive(Debug, Clone, Copy)]
pub struct BodyModeLearner {
    mode: BodyMode,
}

impl Default for BodyModeLearner {
    fn default() -> Self {
        BodyModeLearner {
            mode: BodyMode::Unknown,
        }
    }
}

impl BodyModeLearner {
    pub fn mode(&self) -> BodyMode {
        self.mode
    }

    /// Takes one observation in; the mode, when this one settled it. One is enough:
    /// each can only come from the host.
    pub fn observe(&mut self, observation: Observation) -> Option<BodyMode> {
        if self.mode != BodyMode::Unknown {
            return None;
        }
        self.mode = match observation {
            Observation::BodyWhileHeld => BodyMode::Hold,
            Observation::BodyKeptByHost => BodyMode::Stream,
        };
        Some(self.mode)
    }
}

/// How a push whose body is to be read waits for it, decided on its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Its headers go on now; its body is buffered in the body phase.
    Stream,
    /// Its headers wait; the host hands the body over as it comes.
    Hold,
    /// Its headers wait, off the backend, and the host is watched
    /// ([`probe`]): the mode is not known yet, or as many streamed bodies are
    /// outstanding as a worker may have.
    Probe,
}

/// How a push waits for its body on a worker whose host is in `mode`, with
/// `streamed_unverified` pushes upstream before their body passed and `waiting`
/// held on their headers with no body yet. `Err`: the worker is full (503 `busy`).
pub fn wait_for_body(
    mode: BodyMode,
    streamed_unverified: usize,
    waiting: usize,
) -> Result<Wait, Rejection> {
    match mode {
        BodyMode::Stream if streamed_unverified < MAX_STREAMED_UNVERIFIED => Ok(Wait::Stream),
        BodyMode::Hold => Ok(Wait::Hold),
        BodyMode::Unknown | BodyMode::Stream if waiting < MAX_WAITING => Ok(Wait::Probe),
        BodyMode::Unknown | BodyMode::Stream => Err(Rejection::new(
            Reason::Busy,
            "this worker already waits on as many push bodies as it may",
        )),
    }
}

/// What a tick's look at a push held on its headers, whose body the filter has not
/// been handed, says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    /// The host holds: it hands the body over when it comes. Stop looking.
    HostHolds,
    /// Not yet: it goes on waiting (408 at the deadline). `no_count`: the host gave
    /// no byte count, so its mode cannot be learnt from this push.
    Wait { no_count: bool },
    /// Its headers go on now, `observed` being what it showed about the host.
    Go { observed: Option<Observation> },
}

/// Looks at a held push with no body handed over: `count` is Envoy's byte count for
/// it when held and now, `declared` its `content-length`. Bytes Envoy received and
/// kept back settle stream mode (on a host that holds, Envoy hands them to the
/// filter at once); once streaming, a push held on its headers goes upstream when
/// Envoy holds its whole body. A push with no byte yet waits.
pub fn probe(mode: BodyMode, declared: Option<u64>, count: ByteCount) -> Probed {
    let arrived = count.arrived();
    let go = match mode {
        BodyMode::Hold => return Probed::HostHolds,
        BodyMode::Unknown => arrived > 0,
        // Held past the cap (or from before the mode was known): it goes on once
        // it cannot stall any more. A part is not enough, even with room again:
        // a push that stalls half-way would hold a backend connection after all.
        BodyMode::Stream => declared.is_some_and(|d| d > 0 && arrived >= d),
    };
    if !go {
        return Probed::Wait {
            no_count: count.when_held.is_none() || count.now.is_none(),
        };
    }
    Probed::Go {
        observed: (mode == BodyMode::Unknown).then_some(Observation::BodyKeptByHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_observation_of_the_host_settles_the_mode_for_good() {
        let mut l = BodyModeLearner::default();
        assert_eq!(l.mode(), BodyMode::Unknown);
        assert_eq!(l.observe(Observation::BodyWhileHeld), Some(BodyMode::Hold));
        assert_eq!(l.observe(Observation::BodyKeptByHost), None);
        assert_eq!(l.mode(), BodyMode::Hold, "settled for good");
        let mut l = BodyModeLearner::default();
        assert_eq!(
            l.observe(Observation::BodyKeptByHost),
            Some(BodyMode::Stream)
        );
        assert_eq!(l.observe(Observation::BodyWhileHeld), None);
        assert_eq!(l.mode(), BodyMode::Stream);
    }

    #[test]
    fn the_byte_count_is_what_envoy_received_since_the_push_was_held() {
        let count = |when_held, now| ByteCount { when_held, now }.arrived();
        assert_eq!(count(Some(277), Some(307)), 30);
        assert_eq!(count(Some(277), Some(277)), 0, "a slow client: nothing yet");
        assert_eq!(count(Some(277), Some(261)), 0, "headers shrank: nothing");
        assert_eq!(count(None, Some(307)), 0, "no count: no evidence");
        assert_eq!(count(Some(277), None), 0);
        assert_eq!(
            ByteCount::decode(Some(&[21, 1, 0, 0, 0, 0, 0, 0])),
            Some(277)
        );
        assert_eq!(ByteCount::decode(Some(&[21, 1, 0])), None);
        assert_eq!(ByteCount::decode(Some(&[255; 8])), None, "negative");
        assert_eq!(ByteCount::decode(None), None);
    }
}
