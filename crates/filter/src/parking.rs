//! Parking carried out through the [`Host`]: [`gate::park`]'s shared data over the
//! host's one CAS loop, a push parked from an HTTP context, and the root context's
//! redeliverer run from its tick, its calls made and their answers handed back. Every
//! decision is the core's (`gate::park`); nothing is decided here.

use super::host::{level_of, Headers, Host};
use super::metrics::Metrics;
use super::shared_data::{self, Change};
use gate::config::Config;
use gate::park::{self, Answer, Area, Effect, Parcel, ParkStep, Redeliverer, TryId};
use std::time::Duration;

/// The proxy's shared data as parking uses it.
pub struct Shared<'a, H: Host>(pub &'a H);

impl<H: Host> park::SharedData for Shared<'_, H> {
    fn read(&mut self, key: &str) -> Option<Vec<u8>> {
        Some(self.0.get_shared(key).ok()?.value.unwrap_or_default())
    }

    fn update(
        &mut self,
        key: &str,
        attempts: usize,
        change: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Option<bool> {
        shared_data::update(self.0, key, &[], attempts, |stored| match change(stored) {
            Some(value) => Change::Write(value, true),
            None => Change::Keep(false),
        })
    }
}

/// Parks `parcel` in `config`'s area (from an HTTP context whose push Envoy could not
/// deliver).
pub fn park(host: &impl Host, config: &Config, parcel: Parcel) -> ParkStep {
    Area::of(config).park(parcel, host.unix_millis(), &mut Shared(host))
}

/// One root context's part in redelivering its account's parked pushes.
pub struct Redelivery {
    area: Area,
    redeliverer: Redeliverer,
    /// The call out, by the id the host gave it.
    call: Option<(u32, TryId)>,
}

impl Redelivery {
    /// `worker`: this root context's id in the lease (random, so unique).
    pub fn new(config: &Config, worker: u64) -> Redelivery {
        Redelivery {
            area: Area::of(config),
            redeliverer: Redeliverer::new(worker),
            call: None,
        }
    }

    pub fn area(&self) -> &Area {
        &self.area
    }

    /// From the tick: the next due push redelivered, if this worker holds the lease.
    pub fn on_tick<H: Host>(&mut self, host: &H, metrics: &Metrics<H>) {
        let effects = self
            .redeliverer
            .on_tick(&self.area, host.unix_millis(), &mut Shared(host));
        self.carry_out(effects, host, metrics);
    }

    /// The answer to an HTTP call; false if the call was not a redelivery.
    pub fn on_response<H: Host>(&mut self, call_id: u32, host: &H, metrics: &Metrics<H>) -> bool {
        let Some((_, id)) = self.call.filter(|(call, _)| *call == call_id) else {
            return false;
        };
        self.call = None;
        // No `:status`: the call was reset or timed out.
        let answer = host
            .status(Headers::CallResponse)
            .map_or(Answer::Failed, Answer::Status);
        self.answered(id, answer, host, metrics);
        true
    }

    fn answered<H: Host>(&mut self, id: TryId, answer: Answer, host: &H, metrics: &Metrics<H>) {
        let jitter = host.now().unwrap_or_default().subsec_nanos() % 1001;
        let effects = self.redeliverer.on_answer(
            &self.area,
            id,
            answer,
            host.unix_millis(),
            jitter,
            &mut Shared(host),
        );
        self.carry_out(effects, host, metrics);
    }

    fn carry_out<H: Host>(&mut self, effects: Vec<Effect>, host: &H, metrics: &Metrics<H>) {
        for effect in effects {
            match effect {
                Effect::Dispatch(call) => {
                    let headers = call
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    let timeout = Duration::from_millis(call.timeout_ms);
                    match host.dispatch_http_call(&call.cluster, headers, Some(&call.body), timeout)
                    {
                        Ok(call_id) => self.call = Some((call_id, call.id)),
                        // A call the host cannot make at all is a failed try.
                        Err(_) => self.answered(call.id, Answer::Failed, host, metrics),
                    }
                }
                other => carry_out_counted(other, host, metrics),
            }
        }
    }
}

/// A parking effect that is a count, a gauge or a log line (a call is only ever the
/// redeliverer's).
pub fn carry_out_counted<H: Host>(effect: Effect, host: &H, metrics: &Metrics<H>) {
    match effect {
        Effect::Count(counter) => metrics.count(counter),
        Effect::Set(gauge, value) => metrics.set(gauge, value),
        Effect::Note(note) => {
            let level = level_of(note.level());
            if host.logs(level) {
                let _ = host.log(level, format_args!("wechat-gate parking: {note}"));
            }
        }
        Effect::Dispatch(_) => {}
    }
}
