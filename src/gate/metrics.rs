//! The filter's Envoy stats, by name: what the exchange and the live list count.
//! The host defines each once per VM and bumps it; the names are the contract the
//! README's tables and the operators' dashboards rely on.
//!
//! Every name carries the account it counts for, and a rejection its reason, as tags
//! encoded in the name the way Istio's own stats do (`account=.=NAME;.;`): the Wasm ABI
//! has no labels, and Envoy's `stats_config.stats_tags` (shipped in the configs) turns
//! them into Prometheus labels: `wechat_gate.forwarded.account=.=wx1;.;` becomes
//! `wechat_gate_forwarded{account="wx1"}`, and
//! `wechat_gate.rejected_total.account=.=wx1;.;reason=.=signature;.;` becomes
//! `wechat_gate_rejected_total{account="wx1",reason="signature"}`.

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
    /// A callback list from the API refused for an entry broader than the bound.
    ListRefused,
    Rejected(Reason),
}

/// A gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    AllowlistEntries,
    AllowlistLastSuccessUnix,
}

const PLAIN: [Counter; 15] = [
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
    Counter::ListRefused,
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

    /// The counter's name in Envoy's stats for `account` (`wasmcustom.` is Envoy's
    /// prefix); `account` is a [`crate::gate::config::Config::name`], which holds no
    /// `;`, `=` or `.`.
    pub fn name(self, account: &str) -> String {
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
            Counter::ListRefused => "allowlist.list_refused",
            Counter::Rejected(reason) => {
                return format!(
                    "wechat_gate.rejected_total.{}{}",
                    tag("account", account),
                    tag("reason", reason.name())
                )
            }
        };
        format!("wechat_gate.{tail}.{}", tag("account", account))
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

    /// The gauge's name for `account`: each account's own, never another's.
    pub fn name(self, account: &str) -> String {
        let base = match self {
            Gauge::AllowlistEntries => "wechat_gate.allowlist.entries",
            Gauge::AllowlistLastSuccessUnix => "wechat_gate.allowlist.last_success_unix",
        };
        format!("{base}.{}", tag("account", account))
    }
}

/// A tag in a stat's name, as Istio encodes them and `stats_tags` extract them.
fn tag(name: &str, value: &str) -> String {
    format!("{name}=.={value};.;")
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
        let mut names: Vec<String> = all.iter().map(|c| c.name("wx1")).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(names.contains(
            &"wechat_gate.rejected_total.account=.=wx1;.;reason=.=body_timeout;.;".to_string()
        ));
        assert!(names.contains(&"wechat_gate.replay_table.evicted.account=.=wx1;.;".to_string()));
        assert_eq!(
            Gauge::AllowlistEntries.name("mp"),
            "wechat_gate.allowlist.entries.account=.=mp;.;"
        );
    }
}
