//! The README's table of status codes, row by row. One table drives the requests sent,
//! the status, body and header each must get, and the counters the gate shows after:
//! each row adds one to its counter, and the backend sees exactly the forwarded rows.
//! Then the counters across workers, and in Prometheus' format.

use crate::harness::backend::Backend;
use crate::harness::config::{gate_config, gated};
use crate::harness::envoy::Envoy;
use crate::harness::now;
use crate::harness::requests::{fresh, nonce, signed, text_xml, LISTED, TOKEN, UNLISTED};
use serde_json::json;
use std::collections::BTreeMap;
use wechat::http1::client::Response;

/// What a row sends, from the listed source unless it says otherwise.
enum Send {
    /// `method target`, no body.
    Bare(&'static str, String),
    /// `POST /wechat?{query}` with `body` from `source`.
    Post {
        query: String,
        body: String,
        source: &'static str,
    },
    /// `POST /wechat?{query}` with `body` sent `transfer-encoding: chunked`.
    Chunked { query: String, body: String },
}

/// What the answer's body must be.
enum Body {
    Is(String),
    StartsWith(&'static str),
}

struct Row {
    /// The case, as the README's table names it.
    case: &'static str,
    send: Send,
    status: u16,
    body: Body,
    /// A header the answer must carry.
    header: Option<(&'static str, &'static str)>,
    /// The counter the row adds one to.
    counter: &'static str,
}

/// Counters the table never touches: defined, and 0.
const UNTOUCHED: [&str; 2] = [
    "wechat_gate.passed_through",
    "wechat_gate.source_report_only",
];

fn row(case: &'static str, send: Send, status: u16, body: Body, counter: &'static str) -> Row {
    Row {
        case,
        send,
        status,
        body,
        header: None,
        counter,
    }
}

impl Send {
    /// A handshake signed with `token` now.
    fn handshake(token: &str, echostr: &str) -> Send {
        let query = signed(token, now(), &nonce(), &[("echostr", echostr)]);
        Send::Bare("GET", format!("/wechat?{query}"))
    }

    fn push(query: String, body: &str) -> Send {
        Send::push_from(query, body, LISTED)
    }

    fn push_from(query: String, body: &str, source: &'static str) -> Send {
        Send::Post {
            query,
            body: body.to_string(),
            source,
        }
    }

    fn to(&self, envoy: &Envoy) -> Response {
        match self {
            Send::Bare(method, target) => envoy.send(method, target, &[], b"", LISTED),
            Send::Post {
                query,
                body,
                source,
            } => envoy.post(query, body, source),
            Send::Chunked { query, body } => chunked_post(envoy, query, body.as_bytes()),
        }
    }
}

/// 200: handshakes answered by the gate, and verified POSTs answered by the backend.
fn answered_rows() -> Vec<Row> {
    let odd = "a b+c/d=e&f%微信";
    let mut echo = row(
        "a signed handshake: echostr byte for byte",
        Send::handshake(TOKEN, "8708463752399332976"),
        200,
        Body::Is("8708463752399332976".into()),
        "wechat_gate.handshake",
    );
    echo.header = Some(("content-type", "text/plain"));
    vec![
        echo,
        row(
            "a handshake whose echostr held percent-encoded characters",
            Send::handshake(TOKEN, odd),
            200,
            Body::Is(odd.into()),
            "wechat_gate.handshake",
        ),
        row(
            "a signed POST: forwarded, the backend's answer comes back",
            Send::push(fresh(), &text_xml("o_user", "hello", 1)),
            200,
            Body::Is("success".into()),
            "wechat_gate.forwarded",
        ),
        row(
            "a body of exactly max_body_bytes: forwarded whole",
            Send::push(fresh(), &"y".repeat(1024)),
            200,
            Body::Is("success".into()),
            "wechat_gate.forwarded",
        ),
    ]
}

/// 400: a required parameter missing, empty, repeated, or not UTF-8.
fn malformed_rows() -> Vec<Row> {
    let targets = [
        "/wechat".to_string(),
        format!("/wechat?{}", fresh()), // GET without echostr
        format!("/wechat?{}&echostr=", fresh()),
        format!("/wechat?{}&nonce=4242&echostr=1", fresh()),
        format!("/wechat?{}&echostr=%FF", fresh()),
        "/wechat?signature=x&timestamp=soon&nonce=1&echostr=1".to_string(),
    ];
    let mut rows: Vec<Row> = targets
        .into_iter()
        .map(|target| {
            row(
                "a handshake parameter missing, empty, repeated or not UTF-8",
                Send::Bare("GET", target),
                400,
                Body::StartsWith("wechat-gate: malformed: "),
                "wechat_gate.rejected.malformed",
            )
        })
        .collect();
    rows.push(row(
        "a POST without signature",
        Send::push(format!("timestamp={}&nonce=1", now()), "<xml/>"),
        400,
        Body::StartsWith("wechat-gate: malformed: "),
        "wechat_gate.rejected.malformed",
    ));
    rows
}

/// 401, 403, 405, 413, 411: the gate refuses, the backend never sees it.
fn refused_rows() -> Vec<Row> {
    let mut rows = vec![
        row(
            "a wrong signature",
            Send::handshake("not-the-token", "1"),
            401,
            Body::Is("wechat-gate: signature: signature does not match\n".into()),
            "wechat_gate.rejected.signature",
        ),
        row(
            "a timestamp 301 s old",
            Send::push(signed(TOKEN, now() - 301, "1", &[]), "<xml/>"),
            401,
            Body::StartsWith("wechat-gate: stale: "),
            "wechat_gate.rejected.stale",
        ),
        row(
            "a timestamp 400 s ahead",
            Send::push(signed(TOKEN, now() + 400, "1", &[]), "<xml/>"),
            401,
            Body::StartsWith("wechat-gate: stale: "),
            "wechat_gate.rejected.stale",
        ),
        row(
            "a correctly signed request from outside the allowlist",
            Send::push_from(fresh(), "<xml/>", UNLISTED),
            403,
            Body::StartsWith("wechat-gate: source: "),
            "wechat_gate.rejected.source",
        ),
        row(
            "a declared body over max_body_bytes",
            Send::push(fresh(), &"x".repeat(1025)),
            413,
            Body::StartsWith("wechat-gate: too_large: "),
            "wechat_gate.rejected.too_large",
        ),
    ];
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let mut refused = row(
            "a method other than GET or POST, with Allow",
            Send::Bare(method, format!("/wechat?{}", fresh())),
            405,
            Body::StartsWith("wechat-gate: method: "),
            "wechat_gate.rejected.method",
        );
        refused.header = Some(("allow", "GET, POST"));
        rows.push(refused);
    }
    for body in ["z".repeat(10), "x".repeat(1025)] {
        rows.push(row(
            "a body of unknown length (chunked), small or large: never streamed upstream",
            Send::Chunked {
                query: fresh(),
                body,
            },
            411,
            Body::StartsWith("wechat-gate: length_required: "),
            "wechat_gate.rejected.length_required",
        ));
    }
    rows
}

fn status_table() -> Vec<Row> {
    [answered_rows(), malformed_rows(), refused_rows()]
        .into_iter()
        .flatten()
        .collect()
}

/// A POST sent with `transfer-encoding: chunked` (no declared length).
fn chunked_post(envoy: &Envoy, query: &str, body: &[u8]) -> Response {
    let mut raw = format!(
        "POST /wechat?{query} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(300) {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    envoy.send_raw(&raw, LISTED).expect("chunked post")
}

fn assert_answer(row: &Row, r: &Response) {
    let what = format!("{} ({}): {}", row.case, row.status, r.body_text());
    assert_eq!(r.status, row.status, "{what}");
    match &row.body {
        Body::Is(body) => assert_eq!(r.body, body.as_bytes(), "{what}"),
        Body::StartsWith(prefix) => assert!(r.body_text().starts_with(prefix), "{what}"),
    }
    if let Some((name, value)) = row.header {
        assert_eq!(r.header(name), Some(value), "{what}");
    }
}

/// The counters the table adds up to: one per row, and 0 for `UNTOUCHED`.
fn expected_counters(table: &[Row]) -> BTreeMap<&'static str, u64> {
    let mut counters: BTreeMap<&str, u64> = UNTOUCHED.iter().map(|c| (*c, 0)).collect();
    for row in table {
        *counters.entry(row.counter).or_insert(0) += 1;
    }
    counters
}

/// What the forwarded rows posted, in order.
fn forwarded_bodies(table: &[Row]) -> Vec<String> {
    table
        .iter()
        .filter(|row| row.counter == "wechat_gate.forwarded")
        .filter_map(|row| match &row.send {
            Send::Post { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_row_of_the_status_table_gets_its_status_body_and_counter() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let table = status_table();
    for row in &table {
        assert_answer(row, &row.send.to(&envoy));
    }

    let counters = envoy.counters();
    for (name, value) in expected_counters(&table) {
        assert_eq!(
            counters.get(name).copied(),
            Some(value),
            "{name} in {counters:?}"
        );
    }
    // The backend saw exactly the forwarded POSTs, whole, and never a GET.
    let seen = backend.records();
    assert!(seen.iter().all(|r| r.method == "POST"), "{seen:?}");
    assert_eq!(backend.bodies(), forwarded_bodies(&table));
}

#[test]
fn two_workers_judge_alike_and_counters_add_up() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({})))
        .workers(2)
        .start();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let envoy = &envoy;
            s.spawn(move || {
                for i in 0..10 {
                    let nonce = format!("{t}{i}");
                    let good = signed(TOKEN, now(), &nonce, &[]);
                    assert_eq!(
                        envoy
                            .post(&good, &text_xml("o_u", &nonce, t * 100 + i), LISTED)
                            .status,
                        200
                    );
                    assert_eq!(envoy.post(&good, "<xml/>", UNLISTED).status, 403);
                    assert_eq!(
                        envoy
                            .post(&signed("x", now(), &nonce, &[]), "<xml/>", LISTED)
                            .status,
                        401
                    );
                }
            });
        }
    });
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 40);
    assert_eq!(envoy.counter("wechat_gate.rejected.source"), 40);
    assert_eq!(envoy.counter("wechat_gate.rejected.signature"), 40);
    assert_eq!(backend.records().len(), 40);
    // Both workers' VMs started and were configured.
    assert!(
        envoy.log_text().matches("wechat-gate configured").count() >= 3,
        "main thread + 2 workers"
    );
}

#[test]
fn metrics_show_in_prometheus_format() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    envoy.handshake(TOKEN, "1");
    let prom = envoy.admin_text("/stats/prometheus");
    for series in [
        "wechat_gate_handshake{account=\"wechat\"} 1",
        "wechat_gate_forwarded{account=\"wechat\"} 0",
        "wechat_gate_passed_through{account=\"wechat\"} 0",
        "wechat_gate_rejected_total{account=\"wechat\",reason=\"signature\"} 0",
        "wechat_gate_source_report_only{account=\"wechat\"} 0",
    ] {
        assert!(
            prom.lines().any(|l| l == series),
            "{series} missing from /stats/prometheus"
        );
    }
}
