//! The filter's Envoy stats, defined once per VM with fixed names. Counters are
//! shared by every worker's VM and add up.

use crate::verify::{Reason, SourceOutcome};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

pub struct Metrics {
    handshake: Option<u32>,
    forwarded: Option<u32>,
    passed_through: Option<u32>,
    decrypted: Option<u32>,
    reply_encrypted: Option<u32>,
    deduplicated: Option<u32>,
    upstream_failure: Option<u32>,
    replayed: Option<u32>,
    replay_evicted: Option<u32>,
    source_report_only: Option<u32>,
    source_unverified: Option<u32>,
    refresh_ok: Option<u32>,
    refresh_failed: Option<u32>,
    entries: Option<u32>,
    last_success_unix: Option<u32>,
    rejected: [Option<u32>; Reason::ALL.len()],
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::error!("could not define metric {name}: {status:?}");
            None
        }
    }
}

fn counter(name: &str) -> Option<u32> {
    define(MetricType::Counter, name)
}

fn gauge(name: &str) -> Option<u32> {
    define(MetricType::Gauge, name)
}

fn set(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        let _ = hostcalls::record_metric(id, value);
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
            decrypted: counter("wechat_gate.decrypted"),
            reply_encrypted: counter("wechat_gate.reply_encrypted"),
            deduplicated: counter("wechat_gate.deduplicated"),
            upstream_failure: counter("wechat_gate.upstream_failure"),
            replayed: counter("wechat_gate.replayed"),
            replay_evicted: counter("wechat_gate.replay_table.evicted"),
            source_report_only: counter("wechat_gate.source_report_only"),
            source_unverified: counter("wechat_gate.source_unverified"),
            refresh_ok: counter("wechat_gate.allowlist.refresh_ok"),
            refresh_failed: counter("wechat_gate.allowlist.refresh_failed"),
            entries: gauge("wechat_gate.allowlist.entries"),
            last_success_unix: gauge("wechat_gate.allowlist.last_success_unix"),
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

    pub fn decrypted(&self) {
        bump(self.decrypted);
    }

    pub fn reply_encrypted(&self) {
        bump(self.reply_encrypted);
    }

    pub fn deduplicated(&self) {
        bump(self.deduplicated);
    }

    pub fn upstream_failure(&self) {
        bump(self.upstream_failure);
    }

    pub fn replayed(&self) {
        bump(self.replayed);
    }

    pub fn replay_evicted(&self) {
        bump(self.replay_evicted);
    }

    pub fn rejected(&self, reason: Reason) {
        let index = Reason::ALL.iter().position(|r| *r == reason);
        bump(index.and_then(|i| self.rejected.get(i).copied().flatten()));
    }

    pub fn source(&self, outcome: SourceOutcome) {
        match outcome {
            SourceOutcome::ReportOnly => bump(self.source_report_only),
            SourceOutcome::Unverified => bump(self.source_unverified),
            SourceOutcome::Listed | SourceOutcome::NotChecked => {}
        }
    }

    /// A fetch of the live list succeeded with `entries` entries at `now`.
    pub fn refresh_ok(&self, entries: usize, now: i64) {
        bump(self.refresh_ok);
        set(self.entries, u64::try_from(entries).unwrap_or(0));
        set(self.last_success_unix, u64::try_from(now).unwrap_or(0));
    }

    pub fn refresh_failed(&self) {
        bump(self.refresh_failed);
    }
}
