//! The account's access token and WeChat's callback IP list, kept fresh by a machine
//! of the exchange's kind: the host feeds [`Refresh`] events (its tick, what it read
//! from shared data, how a write went, a call's reply) and carries out the [`Turn`]
//! each returns: effects (install a list, count, log), then at most one [`Ask`] (read
//! or write a shared value, make a call, read a reply) whose answer is the next event.
//! Every decision is here: when a fetch is due and who makes it (a lease in shared
//! data), which upstream and call comes next, when a token is dropped, when a call is
//! given up, the backoff, the log lines.
//!
//! ```text
//! tick ─▶ read the shared list ─▶ changed: install it (whichever worker fetched it)
//!      ─▶ read the state ─▶ due, no lease: write it leased (CAS) ─▶ mismatch: lost
//!                                            │ taken
//!         a token (none usable) ─▶ getcallbackip, upstream after upstream (plan)
//!                                            │
//!         list published, state: success ◀──┴──▶ state: one more failure, backoff
//! ```
//!
//! [`state`] holds the shared value's rules, [`plan`] the walk through one fetch,
//! [`wechat_api`] WeChat's calls and replies, [`shared_list`] the published list.
//! The API role's refused tokens (callers waiting for one fetch per proxy) and tickets
//! are to be further events, slots, calls and effects of this machine.

mod fetch;
mod note;
pub mod plan;
pub mod shared_list;
pub mod state;
#[cfg(test)]
mod tests;
mod turn;
mod txn;
pub mod wechat_api;

pub use note::{Kept, Note};
pub use turn::{Ask, Cas, Clock, Effect, Event, Outgoing, Shared, Slot, Turn, Written};

use crate::config::WechatApi;
use plan::{Call, FetchPlan};
use state::Instance;
use txn::{StateWrite, Txn};

/// The largest API reply read (a callback list is a few KiB).
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// One filter instance's refresh of its account's token and callback list, on one
/// worker. Workers and instances of one account share the refresh through shared data.
pub struct Refresh {
    api: WechatApi,
    /// This instance's part in the account's shared refresh.
    instance: Instance,
    state_key: String,
    list_key: String,
    /// The clock of the event being handled.
    clock: Clock,
    /// The CAS of the shared list last installed (or found damaged).
    list_cas: Option<u32>,
    /// A live list has been installed: a failed fetch keeps it.
    has_list: bool,
    /// The fetch this worker holds the lease for.
    fetch: Option<Fetch>,
    /// The answer the machine waits for.
    waiting: Waiting,
}

/// The fetch in progress on this worker.
struct Fetch {
    plan: FetchPlan,
    /// The call being made.
    call: Call,
    /// The host's id for it, once dispatched.
    call_id: Option<u32>,
    /// When it was asked for: it is given up a lease later.
    started_at: i64,
}

/// The answer the machine waits for (the host gives it within the same callback,
/// except a call's reply, which comes as [`Event::Answered`]).
enum Waiting {
    Nothing,
    /// The shared list; then the lease, unless only picking up.
    List {
        then_lease: bool,
    },
    /// A transaction on the shared state: its read.
    StateRead {
        txn: Txn,
        attempts: u8,
    },
    /// Its write.
    StateWrite(Box<StateWrite>),
    /// The published list's write; then the state's success.
    ListWrite {
        txn: Txn,
    },
    /// The call's id.
    Dispatch,
    /// The reply's status and body.
    Reply,
}

impl Refresh {
    pub fn new(api: WechatApi) -> Refresh {
        let prefix = format!("wechat_gate.{}.callback_ip", api.appid);
        Refresh {
            instance: Instance::of(&api),
            api,
            state_key: format!("{prefix}.state"),
            list_key: format!("{prefix}.list"),
            clock: Clock::default(),
            list_cas: None,
            has_list: false,
            fetch: None,
            waiting: Waiting::Nothing,
        }
    }

    /// The shared-data key of `slot`.
    pub fn key(&self, slot: Slot) -> &str {
        match slot {
            Slot::State => &self.state_key,
            Slot::List => &self.list_key,
        }
    }

    /// The machine's answer to `event`.
    pub fn on(&mut self, event: Event) -> Turn {
        let waiting = std::mem::replace(&mut self.waiting, Waiting::Nothing);
        match (waiting, event) {
            (_, Event::Started) => self.read_list(false),
            (_, Event::Tick(clock)) => {
                self.clock = clock;
                self.read_list(true)
            }
            (
                Waiting::List { then_lease },
                Event::Read {
                    slot: Slot::List,
                    value,
                },
            ) => self.on_list(then_lease, value),
            (
                Waiting::StateRead { txn, attempts },
                Event::Read {
                    slot: Slot::State,
                    value,
                },
            ) => self.on_state_read(txn, attempts, value),
            (
                Waiting::StateWrite(write),
                Event::Written {
                    slot: Slot::State,
                    outcome,
                },
            ) => self.on_state_written(*write, outcome),
            (
                Waiting::ListWrite { txn },
                Event::Written {
                    slot: Slot::List, ..
                },
            ) => self.transact(txn),
            (Waiting::Dispatch, Event::Dispatched(result)) => self.on_dispatched(result),
            (
                Waiting::Nothing,
                Event::Answered {
                    call_id,
                    body_size,
                    clock,
                },
            ) => self.on_answered(call_id, body_size, clock),
            (Waiting::Reply, Event::Reply { status, body }) => self.on_reply(status, &body),
            // An answer to nothing asked: the host broke the contract; wait on.
            (waiting, _) => {
                self.waiting = waiting;
                Turn::default()
            }
        }
    }

    /// Long enough for every call of one fetch to time out: per upstream at most a
    /// token (and its busy retry), a list (and its retry), a renewed token and a list.
    fn lease_seconds(&self) -> u64 {
        let calls = 6 * self.api.upstreams.len() as u64;
        calls.saturating_mul(self.api.timeout_ms) / 1000 + 5
    }

    fn kept(&self) -> Kept {
        if self.has_list {
            Kept::LastGood
        } else {
            Kept::Static
        }
    }

    fn cluster(&self, upstream: usize) -> String {
        self.api
            .upstreams
            .get(upstream)
            .map_or("?", |u| u.cluster.as_str())
            .to_string()
    }
}
