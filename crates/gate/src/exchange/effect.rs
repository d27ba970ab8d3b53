//! What an exchange hands back for the host to do: [`Effect`]s in order, then a
//! [`Flow`]; and the log lines ([`Note`]) it asks for.

use crate::body::BODY_DEADLINE_MS;
use crate::metrics::Counter;
use crate::rejection::Rejection;
use std::fmt;

/// What the host does with the request once the effects are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

/// One thing for the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer with this (`content-type` given); the backend never sees the request.
    LocalReply {
        status: u32,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Refuse: the rejection's status, headers and plain-text body, and its debug line.
    Reject(Rejection),
    RemoveRequestHeader(Vec<u8>),
    RemoveRequestTrailer(Vec<u8>),
    SetRequestHeader(&'static str, String),
    /// Replace the whole buffered request body.
    ReplaceRequestBody(Vec<u8>),
    SetResponseHeader(&'static str, &'static str),
    RemoveResponseHeader(&'static str),
    /// Replace the whole buffered response body.
    ReplaceResponseBody(Vec<u8>),
    /// The request waits for its body: answer it 408 if the body is not whole in time.
    Hold {
        for_ms: u64,
    },
    /// It no longer waits.
    Release,
    /// Its body is awaited while the headers are held and the host may keep it back:
    /// note Envoy's byte count for it now (`request.total_size`), and from each tick
    /// tell the exchange the count then ([`super::Exchange::on_probe`]).
    Probe,
    /// Stop doing that.
    EndProbe,
    /// Its headers went upstream before its body passed (stream mode): it counts
    /// against the worker's [`crate::body::MAX_STREAMED_UNVERIFIED`] until
    /// released.
    Streamed,
    /// Let the held headers go on (`proxy_continue_stream`).
    ResumeRequest,
    /// What the push showed about the host's body mode.
    Observe(crate::body::Observation),
    Count(Counter),
    Note(Note),
    /// What parking a push asked for: its counts, gauge and log lines.
    Park(crate::park::Effect),
}

/// A log line: what happened, at which level. The host says the `once` ones once
/// per VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Deduplicated { window_seconds: u64 },
    Replayed,
    ReportOnly,
    UpstreamFailed { status: u32 },
    SealFailed,
    ReplayTableFull,
    ReplayUnrecorded,
    BodyNeverCame,
    // The host gave no byte count for a held push: its body mode cannot be learnt.
    NoByteCount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Note {
    pub fn level(&self) -> Level {
        match self {
            Note::Deduplicated { .. } | Note::Replayed | Note::ReportOnly => Level::Debug,
            Note::UpstreamFailed { .. } => Level::Info,
            // A stalled client is the client's doing (WeChat sends the body with the
            // headers): worth a warning once, not an error.
            Note::ReplayTableFull | Note::ReplayUnrecorded | Note::BodyNeverCame => Level::Warn,
            Note::NoByteCount => Level::Error,
            Note::SealFailed => Level::Error,
        }
    }

    /// Said once per VM (a hint for the operator, not a line per request): which of
    /// the host's once-bits it owns, each note its own. `None`: said every time.
    pub fn once_index(&self) -> Option<u32> {
        match self {
            Note::BodyNeverCame => Some(0),
            Note::ReplayUnrecorded => Some(1),
            Note::ReplayTableFull => Some(2),
            Note::NoByteCount => Some(3),
            Note::Deduplicated { .. }
            | Note::Replayed
            | Note::ReportOnly
            | Note::UpstreamFailed { .. }
            | Note::SealFailed => None,
        }
    }

    /// The line; `source` (the downstream address, a hostcall) is asked only by the
    /// notes that name it.
    pub fn line(&self, source: impl FnOnce() -> String) -> String {
        match self {
            Note::Replayed => format!(
                "a signed query used before, from {}: answered success",
                source()
            ),
            Note::ReportOnly => format!(
                "report mode: forwarding a request from unlisted {}",
                source()
            ),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Deduplicated { window_seconds } => write!(
                f,
                "a retry of a message forwarded in the last {window_seconds} s: answered success"
            ),
            Note::Replayed => f.write_str("a signed query used before: answered success"),
            Note::ReportOnly => f.write_str("report mode: forwarding a request from an unlisted source"),
            Note::UpstreamFailed { status } => write!(
                f,
                "the backend did not answer a verified push (Envoy replied {status}); answering \
                 WeChat `success`"
            ),
            Note::SealFailed => {
                f.write_str("a backend reply could not be sealed; answering `success` instead")
            }
            Note::ReplayTableFull => write!(
                f,
                "the table of used queries is full ({} entries): the oldest make room, and a push \
                 whose timestamp is as old is refused (401 stale) instead of being checked for replay",
                crate::tables::replay::SHAPE.entries()
            ),
            Note::ReplayUnrecorded => f.write_str(
                "the table of used queries could not record a push's query (shared data \
                 refused or stayed contended): it was forwarded unrecorded; counted in \
                 wechat_gate.replay_table.unrecorded",
            ),
            Note::BodyNeverCame => write!(
                f,
                "a push's body did not reach the gate within {BODY_DEADLINE_MS} ms of its headers: \
                 answered 408 (the client stalled; WeChat sends the body with the headers)"
            ),
            Note::NoByteCount => f.write_str(
                "the host gives no byte count for a held push (request.total_size): the gate \
                 cannot tell whether it keeps bodies back, so a push it holds waits for its \
                 body, and on a host without allow_on_headers_stop_iteration is answered 408",
            ),
        }
    }
}

/// The effects of one event, and what the request does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub effects: Vec<Effect>,
    pub flow: Flow,
}

impl Step {
    pub(super) fn new(flow: Flow) -> Step {
        Step {
            effects: Vec::new(),
            flow,
        }
    }

    pub(super) fn with(mut self, effect: Effect) -> Step {
        self.effects.push(effect);
        self
    }

    pub(super) fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    /// `200 success`: WeChat takes the push as handled and shows the user nothing.
    pub(super) fn success(mut self) -> Step {
        self.push(Effect::LocalReply {
            status: 200,
            content_type: "text/plain",
            body: b"success".to_vec(),
        });
        self.flow = Flow::Pause;
        self
    }
}

/// The answer when the filter has no configuration (it fails closed).
pub fn unconfigured() -> Step {
    Step::new(Flow::Pause).with(Effect::LocalReply {
        status: 503,
        content_type: "text/plain",
        body: b"wechat-gate: not configured\n".to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each note. The match below stops compiling when a note is added, until
    /// it is listed here too.
    fn every_note() -> Vec<Note> {
        let every = vec![
            Note::Deduplicated { window_seconds: 1 },
            Note::Replayed,
            Note::ReportOnly,
            Note::UpstreamFailed { status: 502 },
            Note::SealFailed,
            Note::ReplayTableFull,
            Note::ReplayUnrecorded,
            Note::BodyNeverCame,
            Note::NoByteCount,
        ];
        for note in &every {
            match note {
                Note::Deduplicated { .. }
                | Note::Replayed
                | Note::ReportOnly
                | Note::UpstreamFailed { .. }
                | Note::SealFailed
                | Note::ReplayTableFull
                | Note::ReplayUnrecorded
                | Note::BodyNeverCame
                | Note::NoByteCount => {}
            }
        }
        every
    }

    #[test]
    fn every_once_note_has_its_own_bit() {
        let mut taken = 0u32;
        for note in every_note() {
            if let Some(index) = note.once_index() {
                assert!(index < u32::BITS, "{note:?}: index {index} has no bit");
                let bit = 1u32 << index;
                assert_eq!(taken & bit, 0, "{note:?} shares bit {index}");
                taken |= bit;
            }
        }
    }
}
