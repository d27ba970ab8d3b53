//! The filter's Envoy stats, by name: what the exchange and the live list count.
//! The host defines each once per VM and bumps it; the names are the contract the
//! README's tables and the operators' dashboards rely on.

use crate::gate::rejection::Reason;
use crate::gate::request::SourceOutcome;

/// A counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Handshake,
    Forwarded,
    PassedThrough,
    Decrypted,
    ReplyEncrypted,
    Deduplicated,
    Replayed,
    ReplayEvicted,
    ReplayUnrecorded,
    UpstreamFailure,
    SourceReportOnly,
    SourceUnverified,
    RefreshOk,
    RefreshFailed,
    Rejected(Reason),
}

/// A gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    AllowlistEntries,
    AllowlistLastSuccessUnix,
}

const PLAIN: [Counter; 14] = [
    Counter::Handshake,
    Counter::Forwarded,
    Counter::PassedThrough,
    Counter::Decrypted,
    Counter::ReplyEncrypted,
    Counter::Deduplicated,
    Counter::Replayed,
    Counter::ReplayEvicted,
    Counter::ReplayUnrecorded,
    Counter::UpstreamFailure,
    Counter::SourceReportOnly,
    Counter::SourceUnverified,
    Counter::RefreshOk,
    Counter::RefreshFailed,
];

impl Counter {
    /// Every counter, in a fixed order (the index the host keeps its ids by).
    pub fn all() -> impl Iterator<Item = Counter> {
        PLAIN
            .into_iter()
            .chain(Reason::ALL.into_iter().map(Counter::Rejected))
    }

    /// Its place in [`Counter::all`].
    pub fn index(self) -> usize {
        match self {
            Counter::Rejected(reason) => {
                PLAIN.len() + Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0)
            }
            plain => PLAIN.iter().position(|c| *c == plain).unwrap_or(0),
        }
    }

    /// The counter's name in Envoy's stats (`wasmcustom.` is Envoy's prefix).
    pub fn name(self) -> String {
        let tail = match self {
            Counter::Handshake => "handshake",
            Counter::Forwarded => "forwarded",
            Counter::PassedThrough => "passed_through",
            Counter::Decrypted => "decrypted",
            Counter::ReplyEncrypted => "reply_encrypted",
            Counter::Deduplicated => "deduplicated",
            Counter::Replayed => "replayed",
            Counter::ReplayEvicted => "replay_table.evicted",
            Counter::ReplayUnrecorded => "replay_table.unrecorded",
            Counter::UpstreamFailure => "upstream_failure",
            Counter::SourceReportOnly => "source_report_only",
            Counter::SourceUnverified => "source_unverified",
            Counter::RefreshOk => "allowlist.refresh_ok",
            Counter::RefreshFailed => "allowlist.refresh_failed",
            Counter::Rejected(reason) => return format!("wechat_gate.rejected.{}", reason.name()),
        };
        format!("wechat_gate.{tail}")
    }

    /// What a let-through request's source check counts, if anything.
    pub fn of_source(outcome: SourceOutcome) -> Option<Counter> {
        match outcome {
            SourceOutcome::ReportOnly => Some(Counter::SourceReportOnly),
            SourceOutcome::Unverified => Some(Counter::SourceUnverified),
            SourceOutcome::Listed | SourceOutcome::NotChecked => None,
        }
    }
}

impl Gauge {
    pub const ALL: [Gauge; 2] = [Gauge::AllowlistEntries, Gauge::AllowlistLastSuccessUnix];

    pub fn name(self) -> &'static str {
        match self {
            Gauge::AllowlistEntries => "wechat_gate.allowlist.entries",
            Gauge::AllowlistLastSuccessUnix => "wechat_gate.allowlist.last_success_unix",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_own_index_and_name() {
        let all: Vec<Counter> = Counter::all().collect();
        for (i, c) in all.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
        let mut names: Vec<String> = all.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(names.contains(&"wechat_gate.rejected.body_timeout".to_string()));
        assert!(names.contains(&"wechat_gate.replay_table.evicted".to_string()));
    }
}
