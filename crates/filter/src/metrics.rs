//! The filter's Envoy stats ([`gate::metrics`]), defined once per VM. Counters
//! are shared by every worker's VM and add up; a metric the host refused to define
//! does nothing.
//!
//! A count is not a hostcall: each worker keeps its counts and hands them to Envoy in
//! one hostcall per counter that moved, at the end of its last open stream (so a
//! quiet worker's stats are exact at once) and from the root context's tick (at least
//! once a second, so a busy one's are exact within a second).

use super::host::{log, Host, MetricKind};
use gate::metrics::{Counter, Gauge};
use std::cell::RefCell;

pub struct Metrics<H: Host> {
    host: H,
    counters: Vec<Option<u32>>,
    gauges: Vec<Option<u32>>,
    /// Counts not yet handed to Envoy, by [`Counter::index`].
    pending: RefCell<Vec<u64>>,
}

impl<H: Host> Metrics<H> {
    /// `account`'s metrics (the configuration's `name`).
    pub fn define(host: H, account: &str) -> Self {
        let counters: Vec<Option<u32>> = Counter::all()
            .map(|c| define(&host, MetricKind::Counter, &c.name(account)))
            .collect();
        Metrics {
            pending: RefCell::new(vec![0; counters.len()]),
            counters,
            gauges: Gauge::ALL
                .iter()
                .map(|g| define(&host, MetricKind::Gauge, &g.name(account)))
                .collect(),
            host,
        }
    }

    /// Before a configuration names the account: nothing is counted.
    pub fn none(host: H) -> Self {
        Metrics {
            host,
            counters: Vec::new(),
            gauges: Vec::new(),
            pending: RefCell::new(Vec::new()),
        }
    }

    /// Counts one, to be handed to Envoy by the next [`Metrics::flush`].
    pub fn count(&self, counter: Counter) {
        if let Some(n) = self.pending.borrow_mut().get_mut(counter.index()) {
            *n += 1;
        }
    }

    /// Hands Envoy every count kept since the last flush.
    pub fn flush(&self) {
        let mut pending = self.pending.borrow_mut();
        for (n, id) in pending.iter_mut().zip(&self.counters) {
            if *n == 0 {
                continue;
            }
            if let Some(id) = id {
                let _ = self
                    .host
                    .increment_metric(*id, i64::try_from(*n).unwrap_or(i64::MAX));
            }
            *n = 0;
        }
    }

    pub fn set(&self, gauge: Gauge, value: u64) {
        if let Some(id) = self.gauges.get(gauge as usize).copied().flatten() {
            let _ = self.host.record_metric(id, value);
        }
    }
}

/// Defines one metric; `None` (logged) if the host refuses.
fn define(host: &impl Host, kind: MetricKind, name: &str) -> Option<u32> {
    match host.define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(refused) => {
            log!(
                host,
                Error,
                "could not define metric {name}: status {}",
                refused.0
            );
            None
        }
    }
}

impl<H: Host> Drop for Metrics<H> {
    /// Metrics replaced by a configuration for another account: the last of its
    /// streams hands in what they counted.
    fn drop(&mut self) {
        self.flush();
    }
}
