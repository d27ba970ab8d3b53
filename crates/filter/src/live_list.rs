//! The live WeChat callback IP list inside Envoy: the executor of
//! [`gate::token::Refresh`], which makes every decision (when to fetch, the lease,
//! the calls and their upstreams, the token, the backoff, the log lines). The root
//! context hands it its tick and the replies to the calls it made; each [`Turn`]'s
//! effects are carried out (a list installed, counted, logged) and its question
//! answered by one hostcall in [`LiveList::carry_out`], the only place here that calls
//! the host, and fed back until the machine asks nothing more.
//!
//! [`Turn`]: gate::token::Turn

use super::host::{level_of, Body, Headers, Host, Refused};
use super::metrics::Metrics;
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
    pub fn pick_up_shared_list<H: Host>(&mut self, host: &H, metrics: &Metrics<H>) -> bool {
        self.run(host, Event::Started, metrics)
    }

    /// One tick at `now`, the proxy's time. Returns true when the local copy of the
    /// list changed.
    pub fn on_tick<H: Host>(&mut self, host: &H, now: Duration, metrics: &Metrics<H>) -> bool {
        self.run(host, Event::Tick(Clock::at(now)), metrics)
    }

    /// A reply to a call this root context made. Returns true when the list changed.
    pub fn on_response<H: Host>(
        &mut self,
        host: &H,
        call_id: u32,
        body_size: usize,
        now: Duration,
        metrics: &Metrics<H>,
    ) -> bool {
        let answered = Event::Answered {
            call_id,
            body_size,
            clock: Clock::at(now),
        };
        self.run(host, answered, metrics)
    }

    /// Hands the machine `event`, then the answer to each question it asks.
    fn run<H: Host>(&mut self, host: &H, event: Event, metrics: &Metrics<H>) -> bool {
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
                    Effect::Note(note) => {
                        let level = level_of(note.level());
                        if host.logs(level) {
                            let _ = host.log(level, format_args!("{note}"));
                        }
                    }
                }
            }
            next = turn.ask.map(|ask| self.carry_out(host, ask));
        }
        changed
    }

    /// The machine's question, answered by the host: every hostcall of the refresh.
    fn carry_out(&self, host: &impl Host, ask: Ask) -> Event {
        match ask {
            Ask::Read(slot) => Event::Read {
                slot,
                value: host
                    .get_shared(self.refresh.key(slot))
                    .ok()
                    .map(|s| Shared {
                        bytes: s.value,
                        cas: s.cas,
                    }),
            },
            Ask::Write { slot, value, cas } => {
                let cas = match cas {
                    Cas::Any => None,
                    Cas::Absent => Some(shared_data::ONLY_IF_ABSENT),
                    Cas::Is(cas) => Some(cas),
                };
                let outcome = match host.set_shared(self.refresh.key(slot), &value, cas) {
                    Ok(()) => Written::Done,
                    Err(Refused::CAS_MISMATCH) => Written::CasMismatch,
                    Err(_) => Written::Failed,
                };
                Event::Written { slot, outcome }
            }
            Ask::Dispatch(call) => {
                let headers = call.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let sent = host.dispatch_http_call(
                    &call.cluster,
                    headers,
                    call.body.as_deref(),
                    call.timeout,
                );
                Event::Dispatched(sent.map_err(|status| format!("{status:?}")))
            }
            Ask::ReadReply { body_bytes } => Event::Reply {
                status: host.status(Headers::CallResponse),
                body: body_bytes
                    .and_then(|n| host.body(Body::CallResponse, n))
                    .unwrap_or_default(),
            },
        }
    }
}

/// The list published under `list_key`, if any worker has fetched one.
pub fn read_shared_list(host: &impl Host, list_key: &str) -> Option<CallbackAllowlist> {
    decode_shared_list(&shared_data::read(host, list_key)?)
}
