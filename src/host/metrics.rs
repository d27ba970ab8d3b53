//! The filter's Envoy stats, defined once per VM with fixed names. Counters are
//! shared by every worker's VM and add up.

use crate::verify::{Reason, SourceOutcome};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

pub struct Metrics {
    handshake: Option<u32>,
    forwarded: Option<u32>,
    passed_through: Option<u32>,
    source_report_only: Option<u32>,
    rejected: [Option<u32>; Reason::ALL.len()],
}

fn counter(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::error!("could not define metric {name}: {status:?}");
            None
        }
    }
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Metrics {
    pub fn define() -> Self {
        Metrics {
            handshake: counter("wechat_gate.handshake"),
            forwarded: counter("wechat_gate.forwarded"),
            passed_through: counter("wechat_gate.passed_through"),
            source_report_only: counter("wechat_gate.source_report_only"),
            rejected: Reason::ALL.map(|r| counter(&format!("wechat_gate.rejected.{}", r.name()))),
        }
    }

    pub fn handshake(&self) {
        bump(self.handshake);
    }

    pub fn forwarded(&self) {
        bump(self.forwarded);
    }

    pub fn passed_through(&self) {
        bump(self.passed_through);
    }

    pub fn rejected(&self, reason: Reason) {
        let index = Reason::ALL.iter().position(|r| *r == reason);
        bump(index.and_then(|i| self.rejected.get(i).copied().flatten()));
    }

    pub fn source(&self, outcome: SourceOutcome) {
        if outcome == SourceOutcome::ReportOnly {
            bump(self.source_report_only);
        }
    }
}
