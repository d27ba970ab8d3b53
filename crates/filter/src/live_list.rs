//! The live WeChat callback IP list inside Envoy: the executor of
//! [`gate::token::Refresh`], which makes every decision (when to fetch, the lease,
//! the calls and their upstreams, the token, the backoff, the log lines). The root
//! context hands it its tick and the replies to the calls it made; each [`Turn`]'s
//! effects are carried out (a list installed, counted, logged) and its question
//! answered by one hostcall in [`LiveList::carry_out`], the only place here that calls
//! the host, and fed back until the machine asks nothing more.
//!
//! [`Turn`]: gate::token::Turn

use super::metrics::Metrics;
use super::proxy::{self, Write};
use super::shared_data;
use gate::allowlist::CallbackAllowlist;
use gate::config::WechatApi;
use gate::token::shared_list::decode_shared_list;
use gate::token::{Ask, Cas, Clock, Effect, Event, Refresh, Shared, Slot, Written};
use std::time::Duration;

pub struct LiveList {
    refresh: Refresh,
    /// The last good live list, once there is one.
    live: Option<CallbackAllowlist>,
}

impl LiveList {
    pub fn new(api: WechatApi) -> LiveList {
        LiveList {
            refresh: Refresh::new(api),
            live: None,
        }
    }

    /// The last good live list, once there is one.
    pub fn current(&self) -> Option<&CallbackAllowlist> {
        self.live.as_ref()
    }

    /// The shared-data key the list is published under.
    pub fn list_key(&self) -> &str {
        self.refresh.key(Slot::List)
    }

    /// Installs the list other workers (or the previous configuration) already
    /// fetched. Returns true when the local copy of the list changed.
    pub fn pick_up_shared_list(&mut self, metrics: &Metrics) -> bool {
        self.run(Event::Started, metrics)
    }

    /// One tick at `now`, the proxy's time. Returns true when the local copy of the
    /// list changed.
    pub fn on_tick(&mut self, now: Duration, metrics: &Metrics) -> bool {
        self.run(Event::Tick(Clock::at(now)), metrics)
    }

    /// A reply to a call this root context made. Returns true when the list changed.
    pub fn on_response(
        &mut self,
        call_id: u32,
        body_size: usize,
        now: Duration,
        metrics: &Metrics,
    ) -> bool {
        let answered = Event::Answered {
            call_id,
            body_size,
            clock: Clock::at(now),
        };
        self.run(answered, metrics)
    }

    /// Hands the machine `event`, then the answer to each question it asks.
    fn run(&mut self, event: Event, metrics: &Metrics) -> bool {
        let mut changed = false;
        let mut next = Some(event);
        while let Some(event) = next.take() {
            let turn = self.refresh.on(event);
            for effect in turn.effects {
                match effect {
                    Effect::Install(list) => {
                        self.live = Some(list);
                        changed = true;
                    }
                    Effect::Count(counter) => metrics.count(counter),
                    Effect::Gauge(gauge, value) => metrics.set(gauge, value),
                    Effect::Note(note) => log::log!(proxy::log_level(note.level()), "{note}"),
                }
            }
            next = turn.ask.map(|ask| self.carry_out(ask));
        }
        changed
    }

    /// The machine's question, answered by the host: every hostcall of the refresh.
    fn carry_out(&self, ask: Ask) -> Event {
        match ask {
            Ask::Read(slot) => Event::Read {
                slot,
                value: proxy::shared_get(self.refresh.key(slot))
                    .map(|(bytes, cas)| Shared { bytes, cas }),
            },
            Ask::Write { slot, value, cas } => {
                let cas = match cas {
                    Cas::Any => None,
                    Cas::Absent => Some(shared_data::ONLY_IF_ABSENT),
                    Cas::Is(cas) => Some(cas),
                };
                let outcome = match proxy::shared_set(self.refresh.key(slot), &value, cas) {
                    Write::Done => Written::Done,
                    Write::CasMismatch => Written::CasMismatch,
                    Write::Failed => Written::Failed,
                };
                Event::Written { slot, outcome }
            }
            Ask::Dispatch(call) => {
                let headers = call.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let sent =
                    proxy::dispatch(&call.cluster, headers, call.body.as_deref(), call.timeout);
                Event::Dispatched(sent.map_err(|status| format!("{status:?}")))
            }
            Ask::ReadReply { body_bytes } => Event::Reply {
                status: proxy::call_response_status(),
                body: body_bytes
                    .and_then(proxy::call_response_body)
                    .unwrap_or_default(),
            },
        }
    }
}

/// The list published under `list_key`, if any worker has fetched one.
pub fn read_shared_list(list_key: &str) -> Option<CallbackAllowlist> {
    decode_shared_list(&shared_data::read(list_key)?)
}
