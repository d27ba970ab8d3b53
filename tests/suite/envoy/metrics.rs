//! Metrics per account: two accounts on one listener each count under their own
//! `account` tag only, and the shipped `stats_tags` turn the tags into Prometheus
//! labels (`wechat_gate_rejected_total{account="…",reason="…"}`).

use crate::harness::backend::Backend;
use crate::harness::config::{gate_config, EnvoyConfig, Gate};
use crate::harness::now;
use crate::harness::requests::{fresh, nonce, signed, text_xml, LISTED, UNLISTED};
use crate::offline::dashboard::{dashboard, metrics_used};
use serde_json::json;

const APPID_B: &str = "wx00000000000000bb";

#[test]
fn two_accounts_on_one_listener_count_under_their_own_labels_only() {
    let backend = Backend::start();
    let alpha = gate_config(json!({"path": "/a", "name": "alpha"}));
    // No name: the account is labelled by its AppID.
    let beta = gate_config(json!({"path": "/b", "appid": APPID_B}));
    let envoy = EnvoyConfig::new(backend.port)
        .gate(Gate::new("wechat_gate_alpha", alpha))
        .gate(Gate::new("wechat_gate_beta", beta))
        .start();
    let post = |path: &str, query: &str, id: u64, source: &str| {
        let body = text_xml("o_user", "hi", id);
        envoy
            .send(
                "POST",
                &format!("{path}?{query}"),
                &[("content-type", b"text/xml")],
                body.as_bytes(),
                source,
            )
            .status
    };
    for id in [1, 2] {
        assert_eq!(post("/a", &fresh(), id, LISTED), 200);
    }
    assert_eq!(
        post("/a", &signed("wrong", now(), &nonce(), &[]), 3, LISTED),
        401
    );
    assert_eq!(post("/b", &fresh(), 4, LISTED), 200);
    for id in [5, 6, 7] {
        assert_eq!(post("/b", &fresh(), id, UNLISTED), 403);
    }

    let by_account = envoy.counters_by_account();
    let stat = |account: &str, name: &str| {
        by_account
            .get(&(account.to_string(), name.to_string()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(stat("alpha", "wechat_gate.forwarded"), 2, "{by_account:?}");
    assert_eq!(stat("alpha", "wechat_gate.rejected.signature"), 1);
    assert_eq!(stat("alpha", "wechat_gate.rejected.source"), 0);
    assert_eq!(stat(APPID_B, "wechat_gate.forwarded"), 1);
    assert_eq!(stat(APPID_B, "wechat_gate.rejected.source"), 3);
    assert_eq!(stat(APPID_B, "wechat_gate.rejected.signature"), 0);
    // Each instance passes the other's path through, and says so under its own name
    // (the second sees only what the first let go on: not its 401).
    assert_eq!(stat("alpha", "wechat_gate.passed_through"), 4);
    assert_eq!(stat(APPID_B, "wechat_gate.passed_through"), 2);
    let accounts: std::collections::BTreeSet<&str> =
        by_account.keys().map(|(a, _)| a.as_str()).collect();
    assert_eq!(accounts, [APPID_B, "alpha"].into_iter().collect());

    // The shipped stats_tags make them labels.
    let prometheus = envoy.admin_text("/stats/prometheus");
    for line in [
        "wechat_gate_forwarded{account=\"alpha\"} 2",
        "wechat_gate_forwarded{account=\"wx00000000000000bb\"} 1",
        "wechat_gate_rejected_total{account=\"alpha\",reason=\"signature\"} 1",
        "wechat_gate_rejected_total{account=\"wx00000000000000bb\",reason=\"source\"} 3",
        "wechat_gate_rejected_total{account=\"alpha\",reason=\"source\"} 0",
    ] {
        assert!(
            prometheus.lines().any(|l| l == line),
            "{line} in:\n{}",
            prometheus
                .lines()
                .filter(|l| l.contains("wechat_gate"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        !prometheus.contains("account=.="),
        "no tag is left unextracted in a name"
    );
    // Every metric the shipped dashboard graphs is a labelled series here.
    for name in metrics_used(&dashboard()) {
        let labelled = format!("{name}{{account=\"alpha\"");
        assert!(
            prometheus.lines().any(|l| l.starts_with(&labelled)),
            "the dashboard's {name} is not exported"
        );
    }
}
