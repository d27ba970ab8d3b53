//! The filter's Envoy stats ([`crate::gate::metrics`]), defined once per VM. Counters
//! are shared by every worker's VM and add up; a metric the host refused to define
//! does nothing.

use super::proxy;
use crate::gate::metrics::{Counter, Gauge};

pub struct Metrics {
    counters: Vec<Option<u32>>,
    gauges: Vec<Option<u32>>,
}

impl Metrics {
    /// `account`'s metrics (the configuration's `name`).
    pub fn define(account: &str) -> Self {
        Metrics {
            counters: Counter::all()
                .map(|c| proxy::define_metric(false, &c.name(account)))
                .collect(),
            gauges: Gauge::ALL
                .iter()
                .map(|g| proxy::define_metric(true, &g.name(account)))
                .collect(),
        }
    }

    /// Before a configuration names the account: nothing is counted.
    pub fn none() -> Self {
        Metrics {
            counters: Vec::new(),
            gauges: Vec::new(),
        }
    }

    pub fn count(&self, counter: Counter) {
        if let Some(id) = self.counters.get(counter.index()).copied().flatten() {
            proxy::increment_metric(id, 1);
        }
    }

    pub fn set(&self, gauge: Gauge, value: u64) {
        let index = Gauge::ALL.iter().position(|g| *g == gauge);
        if let Some(id) = index.and_then(|i| self.gauges.get(i).copied().flatten()) {
            proxy::record_metric(id, value);
        }
    }

    /// A fetch of the live list succeeded with `entries` entries at `now`.
    pub fn refresh_ok(&self, entries: usize, now: i64) {
        self.count(Counter::RefreshOk);
        self.set(Gauge::AllowlistEntries, u64::try_from(entries).unwrap_or(0));
        self.set(
            Gauge::AllowlistLastSuccessUnix,
            u64::try_from(now).unwrap_or(0),
        );
    }
}
