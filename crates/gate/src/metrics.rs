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

use crate::api::Outcome;
use crate::rejection::Reason;
use crate::request::SourceOutcome;

/// Declares [`Counter`]'s plain variants with their names in one row each (and a
/// fieldless twin, [`Event`], whose discriminant is a plain counter's place), so that
/// the list, the places and the names cannot fall out of step.
macro_rules! counters {
    ($($variant:ident => $name:literal;)*) => {
        /// A counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Counter {
            $($variant,)*
            Rejected(Reason),
            /// An API-role call, by what it came to.
            ApiCall(Outcome),
        }

        /// [`Counter`]'s plain variants, fieldless: `event as usize` is the place.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Event {
            $($variant,)*
        }

        const PLAIN: &[Counter] = &[$(Counter::$variant,)*];

        impl Counter {
            /// Its place in [`Counter::all`]: the plain ones first, then one per
            /// [`Reason`], in declaration order.
            pub fn index(self) -> usize {
                match self {
                    $(Counter::$variant => Event::$variant as usize,)*
                    Counter::Rejected(reason) => PLAIN.len() + reason as usize,
                    Counter::ApiCall(outcome) => {
                        PLAIN.len() + Reason::ALL.len() + outcome_index(outcome)
                    }
                }
            }

            /// The name without its tags.
            fn stem(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                    Counter::Rejected(_) => "rejected_total",
                    Counter::ApiCall(_) => "api_calls_total",
                }
            }
        }
    };
}

counters! {
    Handshake => "handshake";
    Forwarded => "forwarded";
    PassedThrough => "passed_through";
    Decrypted => "decrypted";
    ReplyEncrypted => "reply_encrypted";
    Deduplicated => "deduplicated";
    Replayed => "replayed";
    ReplayEvicted => "replay_table.evicted";
    ReplayUnrecorded => "replay_table.unrecorded";
    UpstreamFailure => "upstream_failure";
    SourceReportOnly => "source_report_only";
    SourceUnverified => "source_unverified";
    RefreshOk => "allowlist.refresh_ok";
    RefreshFailed => "allowlist.refresh_failed";
    // A callback list from the API refused for an entry broader than the bound.
    ListRefused => "allowlist.list_refused";
    // Parking (`gate::park`): pushes answered `success` for want of a backend.
    Parked => "parked";
    Redelivered => "redelivered";
    // Dropped undelivered: `park.max_seconds` passed, or the value was unreadable.
    ParkExpired => "park_expired";
    // Not parked (no room, or it cannot be): answered as under `pass`.
    ParkFull => "park_full";
    // The API role (`gate::api`): stand-in tokens handed out, calls sent again after
    // WeChat refused the token, calls sent to the next upstream.
    ApiStandIn => "api_stand_in";
    ApiTokenRetried => "api_token_retried";
    ApiFailedOver => "api_failed_over";
    // Access tokens fetched from WeChat (either role), and stable_token's forced ones.
    TokenFetches => "token_fetches";
    TokenForced => "token_forced";
    // Tickets answered from the shared cache, and fetched from WeChat.
    TicketHits => "ticket_hits";
    TicketFetches => "ticket_fetches";
}

/// Every API-call outcome, in the order of their counters.
const OUTCOMES: [Outcome; 4] = [
    Outcome::Answered,
    Outcome::Errcode,
    Outcome::Refused,
    Outcome::Unanswered,
];

fn outcome_index(outcome: Outcome) -> usize {
    OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0)
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Answered => "answered",
        Outcome::Errcode => "errcode",
        Outcome::Refused => "refused",
        Outcome::Unanswered => "unanswered",
    }
}

/// Declares [`Gauge`] with its names in one row per variant.
macro_rules! gauges {
    ($($variant:ident => $name:literal;)*) => {
        /// A gauge.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Gauge {
            $($variant,)*
        }

        impl Gauge {
            /// Every gauge (`gauge as usize` is its place).
            pub const ALL: &'static [Gauge] = &[$(Gauge::$variant,)*];

            fn stem(self) -> &'static str {
                match self {
                    $(Gauge::$variant => $name,)*
                }
            }
        }
    };
}

gauges! {
    AllowlistEntries => "allowlist.entries";
    AllowlistLastSuccessUnix => "allowlist.last_success_unix";
    ParkedNow => "parked_now";
}

impl Counter {
    /// Every counter, in a fixed order (the index the host keeps its ids by).
    pub fn all() -> impl Iterator<Item = Counter> {
        PLAIN
            .iter()
            .copied()
            .chain(Reason::ALL.iter().map(|r| Counter::Rejected(*r)))
            .chain(OUTCOMES.iter().map(|o| Counter::ApiCall(*o)))
    }

    /// The counter's name in Envoy's stats for `account` (`wasmcustom.` is Envoy's
    /// prefix); `account` is a [`crate::config::Config::name`], which holds no
    /// `;`, `=` or `.`.
    pub fn name(self, account: &str) -> String {
        let account = tag("account", account);
        match self {
            Counter::Rejected(reason) => format!(
                "wechat_gate.{}.{account}{}",
                self.stem(),
                tag("reason", reason.name())
            ),
            Counter::ApiCall(outcome) => format!(
                "wechat_gate.{}.{account}{}",
                self.stem(),
                tag("outcome", outcome_name(outcome))
            ),
            _ => format!("wechat_gate.{}.{account}", self.stem()),
        }
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
    /// The gauge's name for `account`: each account's own, never another's.
    pub fn name(self, account: &str) -> String {
        format!("wechat_gate.{}.{}", self.stem(), tag("account", account))
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
        for (i, g) in Gauge::ALL.iter().enumerate() {
            assert_eq!(*g as usize, i, "{g:?}");
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
        // Parking's, as the contract names them.
        for stem in ["parked", "redelivered", "park_expired", "park_full"] {
            assert!(
                names.contains(&format!("wechat_gate.{stem}.account=.=wx1;.;")),
                "{stem}"
            );
        }
        assert!(names.contains(
            &"wechat_gate.api_calls_total.account=.=wx1;.;outcome=.=unanswered;.;".to_string()
        ));
        assert_eq!(
            Gauge::ParkedNow.name("mp"),
            "wechat_gate.parked_now.account=.=mp;.;"
        );
    }
}
