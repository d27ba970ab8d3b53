//! What the refresh machine is told ([`Event`]) and what it hands back ([`Turn`]): effects
//! the host carries out and forgets, then at most one question ([`Ask`]) whose answer
//! is the next event. Every hostcall the refresh needs is one of these.

use crate::allowlist::CallbackAllowlist;
use crate::metrics::{Counter, Gauge};
use std::fmt;
use std::time::Duration;

use super::note::Note;

/// The proxy's clock as one event sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    /// Unix seconds.
    pub unix: i64,
    /// 0..=1000: spreads a failed fetch's backoff (see [`super::state::backoff_seconds`]).
    pub jitter: u32,
}

impl Clock {
    /// The clock at `since_epoch`, the proxy's time; its nanoseconds are jitter
    /// enough to spread the retries of many proxies.
    pub fn at(since_epoch: Duration) -> Clock {
        Clock {
            unix: i64::try_from(since_epoch.as_secs()).unwrap_or(0),
            jitter: since_epoch.subsec_nanos() % 1001,
        }
    }
}

/// The values the refresh keeps in the proxy's shared data ([`super::Refresh::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The [`super::state::RefreshState`]: token, schedule, lease.
    State,
    /// The last good callback list ([`super::shared_list`]).
    List,
}

/// A shared value as read: its bytes (`None`: the key does not exist) and CAS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shared {
    pub bytes: Option<Vec<u8>>,
    pub cas: Option<u32>,
}

/// Which value a write may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    /// Whatever is there.
    Any,
    /// Only a missing key: the key was missing when read. (A set on a missing key
    /// succeeds whatever CAS is passed, so the host must pass one no value has.)
    Absent,
    /// Only the value read with this CAS.
    Is(u32),
}

/// How a write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Done,
    /// Another worker wrote since the value was read.
    CasMismatch,
    /// The host refused.
    Failed,
}

/// An HTTP call to one of the configured upstream clusters. `Debug` hides the path
/// and body: they hold the AppSecret or the access token.
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub cluster: String,
    /// `:method`, `:path`, `:authority`, and `content-type` when there is a body.
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = self.headers.iter().find(|(n, _)| *n == ":method");
        f.debug_struct("Outgoing")
            .field("cluster", &self.cluster)
            .field("method", &method.map(|(_, v)| v.as_str()))
            .field("path", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Outgoing {
    /// The value of header `name` (`:path` holds a secret: never log it).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the host tells the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The instance was (re)configured: install what other workers already fetched.
    Started,
    /// The root context's tick.
    Tick(Clock),
    /// The answer to [`Ask::Read`]; `None`: the host refused.
    Read { slot: Slot, value: Option<Shared> },
    /// The answer to [`Ask::Write`].
    Written { slot: Slot, outcome: Written },
    /// The answer to [`Ask::Dispatch`]: the host's id for the call, or why it refused
    /// it (the host's status, for the log).
    Dispatched(Result<u32, String>),
    /// A reply to call `call_id` (made by this root context) has come, with
    /// `body_size` bytes of body.
    Answered {
        call_id: u32,
        body_size: usize,
        clock: Clock,
    },
    /// The answer to [`Ask::ReadReply`]: the reply's `:status` (`None`: none, a reset
    /// or a timeout) and body.
    Reply { status: Option<u32>, body: Vec<u8> },
}

/// A question for the host: its answer is the next [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Read a shared value and its CAS: [`Event::Read`].
    Read(Slot),
    /// Write a shared value: [`Event::Written`].
    Write {
        slot: Slot,
        value: Vec<u8>,
        cas: Cas,
    },
    /// Make an HTTP call: [`Event::Dispatched`] now, [`Event::Answered`] later.
    Dispatch(Outgoing),
    /// Read the reply just announced: its `:status`, and the first `body_bytes` of its
    /// body (`None`: none of it): [`Event::Reply`].
    ReadReply { body_bytes: Option<usize> },
}

/// Something for the host to do and forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Admit this live list (with the static entries) from now on.
    Install(CallbackAllowlist),
    Count(Counter),
    Gauge(Gauge, u64),
    Note(Note),
}

/// What the machine hands back for one event: effects in order, then its question.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Turn {
    pub effects: Vec<Effect>,
    pub ask: Option<Ask>,
}

impl Turn {
    pub(super) fn asking(ask: Ask) -> Turn {
        Turn {
            effects: Vec::new(),
            ask: Some(ask),
        }
    }

    pub(super) fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    pub(super) fn note(&mut self, note: Note) {
        self.effects.push(Effect::Note(note));
    }

    /// These effects, then `next`'s effects and question.
    pub(super) fn then(mut self, next: Turn) -> Turn {
        self.effects.extend(next.effects);
        self.ask = next.ask;
        self
    }
}
