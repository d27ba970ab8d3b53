//! envoy/grafana-dashboard.json: a dashboard Grafana loads (unique panel ids, a place
//! on the grid, a query per target, the `account` variable every query filters by),
//! graphing only metrics the gate defines, under their Prometheus names.

use crate::harness::MANIFEST_DIR;
use gate::metrics::{Counter, Gauge};
use std::collections::BTreeSet;

/// The dashboard's JSON.
pub fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/grafana-dashboard.json"))
        .expect("envoy/grafana-dashboard.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every `wechat_gate_…` metric name the dashboard's queries use.
pub fn metrics_used(dashboard: &serde_json::Value) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            let mut rest = expr;
            while let Some(at) = rest.find("wechat_gate_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                used.insert(name);
            }
        }
    }
    used
}

/// The Prometheus name of a stat name once its tags are extracted.
fn prometheus_name(full: &str) -> String {
    let family = full.split(".account=").next().unwrap_or(full);
    family.replace('.', "_")
}

#[test]
fn the_dashboard_loads_and_graphs_only_what_the_gate_exports() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    assert!(d["title"].is_string() && d["uid"].is_string());
    let variables: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(variables.contains(&"account") && variables.contains(&"datasource"));

    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 5);
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{title}: id twice"
        );
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_u64(), "{title}: gridPos.{k}");
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert!(t["refId"].is_string(), "{title}: refId");
            assert!(expr.contains("account=~\"$account\""), "{title}: {expr}");
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{expr}"
            );
        }
    }

    let exported: BTreeSet<String> = Counter::all()
        .map(|c| c.name("a"))
        .chain(Gauge::ALL.iter().map(|g| g.name("a")))
        .map(|n| prometheus_name(&n))
        .collect();
    let used = metrics_used(&d);
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "not metrics of the gate: {unknown:?}");
    // It graphs what the issues ask for: outcomes, reasons, the list, replays, retries,
    // and the API role's calls by outcome, tokens, tickets, retries and failovers.
    for needed in [
        "wechat_gate_forwarded",
        "wechat_gate_rejected_total",
        "wechat_gate_allowlist_last_success_unix",
        "wechat_gate_allowlist_refresh_failed",
        "wechat_gate_replayed",
        "wechat_gate_deduplicated",
        // The API role's row.
        "wechat_gate_api_calls_total",
        "wechat_gate_token_fetches",
        "wechat_gate_token_forced",
        "wechat_gate_ticket_hits",
        "wechat_gate_api_token_retried",
        "wechat_gate_api_failed_over",
    ] {
        assert!(used.contains(needed), "{needed}");
    }
}
