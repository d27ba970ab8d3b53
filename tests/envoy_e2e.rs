//! wechat-gate in a real Envoy 1.40 (V8): every row of the status-code table, what
//! the backend receives, hostile input, several workers, bad configurations, secrets,
//! and the shipped demo. Each test starts its own Envoy on free ports and stops it.

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "e2e-token-5d1f";
const LISTED: &str = "127.0.0.2";
const UNLISTED: &str = "127.0.0.3";
/// The demo's default EncodingAESKey (envoy/run-demo.sh).
const DEMO_AES_KEY: &str = "wechatGateDemoEncodingAESKey0123456789abcde";

fn gate_config(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "path": "/wechat",
        "token": TOKEN,
        "max_body_bytes": 1024,
        "source": {"allow": ["127.0.0.2", "127.0.0.1"]}
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn start(backend: &Backend, config: serde_json::Value) -> Envoy {
    Envoy::start(
        &envoy_yaml(backend.port, &[Gate::new("wechat_gate", config)], &[]),
        EnvoyOptions::default(),
    )
}

/// A signed handshake from the listed source.
fn handshake(envoy: &Envoy, token: &str, echostr: &str) -> wechat_gate::kit::client::Response {
    let query = signed(token, now(), &nonce(), &[("echostr", echostr)]);
    envoy.send("GET", &format!("/wechat?{query}"), &[], b"", LISTED)
}

fn fresh() -> String {
    signed(TOKEN, now(), &nonce(), &[])
}

fn post(
    envoy: &Envoy,
    query: &str,
    body: &str,
    source: &str,
) -> wechat_gate::kit::client::Response {
    envoy.send(
        "POST",
        &format!("/wechat?{query}"),
        &[("content-type", b"text/xml")],
        body.as_bytes(),
        source,
    )
}

/// A request sent with `transfer-encoding: chunked` (no declared length).
fn chunked_post(
    envoy: &Envoy,
    query: &str,
    body: &[u8],
    source: &str,
) -> wechat_gate::kit::client::Response {
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
    envoy.send_raw(&raw, source).expect("chunked post")
}

#[test]
fn status_code_table() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})));

    // 200: a signed handshake is answered by the gate, echostr byte for byte.
    let r = handshake(&envoy, TOKEN, "8708463752399332976");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "8708463752399332976")
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
    // … also when it held percent-encoded characters.
    let odd = "a b+c/d=e&f%微信";
    let r = handshake(&envoy, TOKEN, odd);
    assert_eq!((r.status, r.body.as_slice()), (200, odd.as_bytes()));

    // 200: a signed POST is forwarded and the backend's answer comes back.
    let r = post(&envoy, &fresh(), &text_xml("o_user", "hello", 1), LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));

    // 400: a required parameter missing, empty, repeated, or not UTF-8.
    for target in [
        "/wechat".to_string(),
        format!("/wechat?{}", fresh()), // GET without echostr
        format!("/wechat?{}&echostr=", fresh()),
        format!("/wechat?{}&nonce=4242&echostr=1", fresh()),
        format!("/wechat?{}&echostr=%FF", fresh()),
        "/wechat?signature=x&timestamp=soon&nonce=1&echostr=1".to_string(),
    ] {
        let r = envoy.send("GET", &target, &[], b"", LISTED);
        assert_eq!(r.status, 400, "{target}: {}", r.body_text());
        assert!(
            r.body_text().starts_with("wechat-gate: malformed: "),
            "{}",
            r.body_text()
        );
    }
    let r = post(
        &envoy,
        &format!("timestamp={}&nonce=1", now()),
        "<xml/>",
        LISTED,
    );
    assert_eq!(r.status, 400);

    // 401: wrong signature, and a stale timestamp.
    let r = handshake(&envoy, "not-the-token", "1");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (401, "wechat-gate: signature: signature does not match\n")
    );
    let r = post(
        &envoy,
        &signed(TOKEN, now() - 301, "1", &[]),
        "<xml/>",
        LISTED,
    );
    assert_eq!(r.status, 401);
    assert!(
        r.body_text().starts_with("wechat-gate: stale: "),
        "{}",
        r.body_text()
    );
    let r = post(
        &envoy,
        &signed(TOKEN, now() + 400, "1", &[]),
        "<xml/>",
        LISTED,
    );
    assert_eq!(r.status, 401);

    // 403: a correctly signed request from an address outside the allowlist.
    let r = post(&envoy, &fresh(), "<xml/>", UNLISTED);
    assert_eq!(r.status, 403);
    assert!(r.body_text().starts_with("wechat-gate: source: "));

    // 405 with Allow.
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = envoy.send(method, &format!("/wechat?{}", fresh()), &[], b"", LISTED);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, POST"));
    }

    // 413: a declared body over max_body_bytes; exactly the limit is forwarded whole.
    let big = "x".repeat(1025);
    assert_eq!(post(&envoy, &fresh(), &big, LISTED).status, 413);
    let at_limit = "y".repeat(1024);
    assert_eq!(post(&envoy, &fresh(), &at_limit, LISTED).status, 200);

    // 411: a body of unknown length (chunked), small or large, is not streamed upstream.
    for body in ["z".repeat(10), big.clone()] {
        let r = chunked_post(&envoy, &fresh(), body.as_bytes(), LISTED);
        assert_eq!(r.status, 411, "{}", r.body_text());
        assert!(r.body_text().starts_with("wechat-gate: length_required: "));
    }

    let c = envoy.counters();
    let expected = [
        ("wechat_gate.handshake", 2),
        ("wechat_gate.forwarded", 2),
        ("wechat_gate.passed_through", 0),
        ("wechat_gate.rejected.malformed", 7),
        ("wechat_gate.rejected.signature", 1),
        ("wechat_gate.rejected.stale", 2),
        ("wechat_gate.rejected.source", 1),
        ("wechat_gate.rejected.method", 4),
        ("wechat_gate.rejected.too_large", 1),
        ("wechat_gate.rejected.length_required", 2),
        ("wechat_gate.source_report_only", 0),
    ];
    for (name, value) in expected {
        assert_eq!(c.get(name).copied(), Some(value), "{name} in {c:?}");
    }

    // The backend saw exactly the two verified POSTs, whole, and never a GET.
    let seen = backend.records();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|r| r.method == "POST"));
    let first = String::from_utf8_lossy(&seen[0].body);
    assert!(
        first.starts_with("<xml>") && first.contains("<Content><![CDATA[hello]]></Content>"),
        "{first}"
    );
    assert_eq!(seen[1].body, at_limit.as_bytes());
}

#[test]
fn backend_receives_only_verified_posts_with_the_gates_headers() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})));
    let forged: [(&str, &[u8]); 3] = [
        ("x-wechat-gate-verified", b"0"),
        ("X-WeChat-Gate-OpenID", b"o_attacker"),
        ("x-wechat-gate-anything", b"1"),
    ];
    let body = text_xml("o_real_user", "hi", 7);
    let query = signed(TOKEN, now(), &nonce(), &[("openid", "o_real_user")]);

    // Forged, replayed, unlisted, wrong-method requests, each carrying forged headers.
    for (method, target, source) in [
        (
            "POST",
            format!(
                "/wechat?{}",
                signed("guess", now(), "1", &[("openid", "o_attacker")])
            ),
            LISTED,
        ),
        (
            "POST",
            format!("/wechat?{}", signed(TOKEN, now() - 3600, "1", &[])),
            LISTED,
        ),
        ("POST", format!("/wechat?{query}"), UNLISTED),
        ("PUT", format!("/wechat?{query}"), LISTED),
        (
            "GET",
            format!(
                "/wechat?{}",
                signed(TOKEN, now(), &nonce(), &[("echostr", "5")])
            ),
            LISTED,
        ),
    ] {
        let r = envoy.send(method, &target, &forged, body.as_bytes(), source);
        assert_ne!(r.body_text(), "success", "{method} {target}");
    }
    // The one verified POST.
    let r = envoy.send(
        "POST",
        &format!("/wechat?{query}"),
        &forged,
        body.as_bytes(),
        LISTED,
    );
    assert_eq!(r.status, 200);

    let seen = backend.records();
    assert_eq!(
        seen.len(),
        1,
        "only the verified POST may reach the backend: {seen:?}"
    );
    let only = &seen[0];
    assert_eq!(only.method, "POST");
    assert_eq!(only.body, body.as_bytes());
    let gate: Vec<(String, String)> = only.gate_headers().into_iter().collect();
    assert_eq!(
        gate,
        [
            (
                "x-wechat-gate-openid".to_string(),
                "o_real_user".to_string()
            ),
            ("x-wechat-gate-verified".to_string(), "1".to_string())
        ]
    );
}

#[test]
fn other_paths_pass_through_untouched() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})));
    for (method, target) in [
        ("DELETE", "/other?signature=nonsense"),
        ("GET", "/wechat/extra"),
        ("PUT", "/wechatx"),
    ] {
        let r = envoy.send(
            method,
            target,
            &[("x-wechat-gate-verified", b"spoof")],
            b"",
            UNLISTED,
        );
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "success"),
            "{method} {target}"
        );
    }
    let seen = backend.records();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].url, "/other?signature=nonsense");
    assert_eq!(seen[0].method, "DELETE");
    assert_eq!(
        seen[0].header("x-wechat-gate-verified"),
        Some("spoof"),
        "untouched means untouched"
    );
    assert_eq!(envoy.counter("wechat_gate.passed_through"), 3);

    // A route where the filter is disabled by typed_per_filter_config: the filter does not run.
    let r = envoy.send("GET", "/unguarded/x", &[], b"", UNLISTED);
    assert_eq!(r.status, 200);
    assert_eq!(envoy.counter("wechat_gate.passed_through"), 3);
    assert_eq!(backend.records().len(), 4);
}

#[test]
fn report_mode_counts_unlisted_sources_but_never_blocks_them() {
    let backend = Backend::start();
    let envoy = start(
        &backend,
        gate_config(json!({"source": {"mode": "report", "allow": ["127.0.0.2"]}})),
    );
    assert_eq!(post(&envoy, &fresh(), "<xml/>", UNLISTED).status, 200);
    assert_eq!(post(&envoy, &fresh(), "<xml/>", LISTED).status, 200);
    assert_eq!(
        post(&envoy, &signed("bad", now(), "1", &[]), "<xml/>", UNLISTED).status,
        401
    );
    assert_eq!(envoy.counter("wechat_gate.source_report_only"), 1);
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 2);
    assert!(envoy
        .log_text()
        .contains("report mode: forwarding a request from unlisted 127.0.0.3"));
}

#[test]
fn mode_off_checks_signatures_only() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({"source": {"mode": "off"}})));
    assert_eq!(post(&envoy, &fresh(), "<xml/>", UNLISTED).status, 200);
    assert_eq!(
        post(&envoy, &signed("bad", now(), "1", &[]), "<xml/>", UNLISTED).status,
        401
    );
}

#[test]
fn forwarded_for_header_cannot_fake_the_source() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})));
    let r = envoy.send(
        "POST",
        &format!("/wechat?{}", fresh()),
        &[
            ("x-forwarded-for", b"127.0.0.2"),
            ("x-real-ip", b"127.0.0.2"),
        ],
        b"<xml/>",
        UNLISTED,
    );
    assert_eq!(r.status, 403);
    assert!(backend.records().is_empty());
}

#[test]
fn ipv6_cidr_allowlist_admits_ipv4_mapped_and_cidr_sources() {
    let backend = Backend::start();
    let envoy = start(
        &backend,
        gate_config(json!({"source": {"allow": ["127.0.0.0/30", "2001:db8::/32"]}})),
    );
    assert_eq!(post(&envoy, &fresh(), "<xml/>", "127.0.0.3").status, 200);
    assert_eq!(post(&envoy, &fresh(), "<xml/>", "127.0.0.4").status, 403);
}

#[test]
fn independent_signatures_are_accepted_accounts_share_a_listener() {
    // The first valid handshake vector made by wechatpy (another implementation), on its
    // own path with its own token (timestamps in the vectors are old: tolerance 0), beside
    // the main account: two gates in one filter chain, each guarding its own path.
    let text =
        std::fs::read(format!("{MANIFEST_DIR}/tests/data/wechat_vectors.json")).expect("vectors");
    let v: serde_json::Value = serde_json::from_slice(&text).expect("json");
    let h = v["handshake"]
        .as_array()
        .and_then(|a| a.iter().find(|h| h["valid"] == true))
        .expect("a valid vector")
        .clone();
    let s = |k: &str| h[k].as_str().expect("field").to_string();
    let backend = Backend::start();
    let gates = [
        Gate::new("wechat_gate", gate_config(json!({}))),
        Gate::new(
            "wechat_gate_vector",
            json!({"path": "/vector", "token": s("token"), "timestamp_tolerance_seconds": 0, "source": {"allow": ["127.0.0.2"]}}),
        ),
    ];
    let envoy = Envoy::start(
        &envoy_yaml(backend.port, &gates, &[]),
        EnvoyOptions::default(),
    );
    let q = wechat_gate::gate::query::encode_query(&[
        ("signature", &s("signature")),
        ("timestamp", &s("timestamp")),
        ("nonce", &s("nonce")),
        ("echostr", &s("echostr")),
    ]);
    let r = envoy.send("GET", &format!("/vector?{q}"), &[], b"", LISTED);
    assert_eq!((r.status, r.body_text()), (200, s("echostr")));
    // Each path is judged with its own account's token.
    let fresh_vector = signed(&s("token"), now(), "1", &[("echostr", "e")]);
    let fresh_main = signed(TOKEN, now(), &nonce(), &[("echostr", "e")]);
    for (path, query) in [("/wechat", &fresh_vector), ("/vector", &fresh_main)] {
        let r = envoy.send("GET", &format!("{path}?{query}"), &[], b"", LISTED);
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (401, "wechat-gate: signature: signature does not match\n"),
            "{path}"
        );
    }
    let r = envoy.send("GET", &format!("/wechat?{fresh_main}"), &[], b"", LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "e"));

    // A fresh handshake signed by Python's hashlib and sent by curl from 127.0.0.2.
    let py = "import hashlib,sys,time; t=str(int(time.time())); n='31337'; \
              print(hashlib.sha1(''.join(sorted([sys.argv[1],t,n])).encode()).hexdigest(), t, n)";
    let out = Command::new("python3")
        .args(["-c", py, TOKEN])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let parts: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(parts.len(), 3, "python3 printed {text:?}");
    let url = format!(
        "http://127.0.0.1:{}/wechat?signature={}&timestamp={}&nonce={}&echostr=curl-echo",
        envoy.port, parts[0], parts[1], parts[2]
    );
    let out = Command::new("curl")
        .args(["-sS", "--interface", LISTED, "-w", " %{http_code}", &url])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "curl-echo 200");
}

#[test]
fn hostile_input_never_crashes_the_vm() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})));
    let huge_key = "k".repeat(30_000);
    let many = "a=1&".repeat(5_000);
    let q = fresh();
    let raw_requests: Vec<Vec<u8>> = vec![
        // Non-UTF-8 header values, on the guarded path and with a valid signature.
        [
            format!("POST /wechat?{q} HTTP/1.1\r\nhost: x\r\n").as_bytes(),
            &b"x-bin: \xff\xfe\r\nx-wechat-gate-verified: \xff\r\ncontent-length: 2\r\nconnection: close\r\n\r\nab"[..],
        ]
        .concat(),
        [&b"GET /wechat?signature=\xff&timestamp=1&nonce=2&echostr=3 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"[..]].concat(),
        format!("GET /wechat?{huge_key}=1&{q}&echostr=z HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes(),
        format!("GET /wechat?{many}{q}&echostr=z HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes(),
        b"GET /wechat?signature=&timestamp=&nonce=&echostr= HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
        format!("GET /wechat?{q}&{q}&echostr=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes(),
        format!("GET /wechat?{q}&echostr=%00%0d%0a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes(),
        format!("POST /wechat?{q}&openid=%E4%BD%A0%0A HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").into_bytes(),
        format!("GET /wechat?%ZZ=%&&&==&timestamp=99999999999999999999&{q}&echostr=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes(),
    ];
    // What each must get: None = whatever the backend makes of it (the first is a
    // verified POST, forwarded; the recording backend cannot parse its header bytes).
    let expected: [(Option<u16>, &str); 9] = [
        (None, ""),
        (Some(400), "Bad Request"), // Envoy's own parser refuses a raw 0xff in the path
        (Some(200), "z"),
        (Some(200), "z"),
        (Some(400), "wechat-gate: malformed: query parameter signature is empty\n"),
        (Some(400), "wechat-gate: malformed: query parameter signature is repeated\n"),
        (Some(200), "\0\r\n"), // the decoded echostr, as the body: no header is built from it
        (Some(400), "wechat-gate: malformed: query parameter openid is not 1 to 128 letters, digits, '-' or '_'\n"),
        (Some(400), "wechat-gate: malformed: query parameter timestamp is repeated\n"),
    ];
    for (raw, (status, body)) in raw_requests.iter().zip(expected) {
        let r = envoy
            .send_raw(raw, LISTED)
            .expect("an answer, whatever it is");
        if let Some(status) = status {
            assert_eq!(
                (r.status, r.body_text().as_str()),
                (status, body),
                "{}",
                String::from_utf8_lossy(&raw[..80.min(raw.len())])
            );
        }
    }
    assert_eq!(
        envoy.counter("wechat_gate.forwarded"),
        1,
        "the POST with non-UTF-8 header values was verified and forwarded"
    );
    // The worker's VM is still alive and judging correctly.
    let r = handshake(&envoy, TOKEN, "alive");
    assert_eq!((r.status, r.body_text().as_str()), (200, "alive"));
    let log = envoy.log_text();
    for sign_of_a_crash in ["panicked", "critical", "Function: proxy_on", "wasm trap"] {
        assert!(
            !log.contains(sign_of_a_crash),
            "log shows {sign_of_a_crash:?}:\n{log}"
        );
    }
    // The one valid POST among them (non-UTF-8 header values) went through with the
    // forged header replaced.
    let seen = backend.records();
    assert!(
        seen.iter()
            .all(|r| r.header("x-wechat-gate-verified") == Some("1")),
        "{seen:?}"
    );
    assert!(seen.len() <= 1, "{seen:?}");
}

#[test]
fn two_workers_judge_alike_and_counters_add_up() {
    let backend = Backend::start();
    let envoy = Envoy::start(
        &envoy_yaml(
            backend.port,
            &[Gate::new("wechat_gate", gate_config(json!({})))],
            &[],
        ),
        EnvoyOptions {
            concurrency: 2,
            env: &[],
        },
    );
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let envoy = &envoy;
            s.spawn(move || {
                for i in 0..10 {
                    let nonce = format!("{t}{i}");
                    let good = signed(TOKEN, now(), &nonce, &[]);
                    assert_eq!(
                        post(envoy, &good, &text_xml("o_u", &nonce, t * 100 + i), LISTED).status,
                        200
                    );
                    assert_eq!(post(envoy, &good, "<xml/>", UNLISTED).status, 403);
                    assert_eq!(
                        post(envoy, &signed("x", now(), &nonce, &[]), "<xml/>", LISTED).status,
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
fn bad_configuration_makes_envoy_refuse_to_start_and_names_the_field() {
    let backend = Backend::start();
    for (config, field) in [
        (
            json!({"token": "t", "source": {"allow": ["127.0.0.1"]}, "tokne": 1}),
            "tokne",
        ),
        (
            json!({"token": "t", "source": {"allow": ["127.0.0.1", "10.0.0.0/33"]}}),
            "source.allow[1]",
        ),
        (
            json!({"token": {"env": "WECHAT_GATE_UNSET_VAR"}, "source": {"allow": ["127.0.0.1"]}}),
            "token.env",
        ),
        (json!({"token": "t"}), "source.allow"),
        (
            json!({"token": "t", "source": {"mode": "off"}, "safe_mode": {"decrypt": true}}),
            "safe_mode",
        ),
    ] {
        let yaml = envoy_yaml(
            backend.port,
            &[Gate::new("wechat_gate", config.clone())],
            &["WECHAT_GATE_UNSET_VAR"],
        );
        match Envoy::try_start(&yaml, EnvoyOptions::default()) {
            Ok(_) => panic!("Envoy started with {config}"),
            Err(log) => {
                assert!(
                    log.starts_with("exited"),
                    "Envoy should exit, not hang: {log}"
                );
                let line = log
                    .lines()
                    .find(|l| l.contains("wechat-gate refused its configuration"))
                    .unwrap_or_else(|| panic!("no refusal line for {config}:\n{log}"));
                assert!(line.contains(field), "{field} not named in: {line}");
            }
        }
    }
}

#[test]
fn token_from_the_environment_never_shows_in_config_dump_or_logs() {
    let secret = "Tok3nFromEnv7f3a9cZ";
    let backend = Backend::start();
    let config = gate_config(json!({"token": {"env": "WECHAT_TOKEN"}}));
    let envoy = Envoy::start(
        &envoy_yaml(
            backend.port,
            &[Gate::new("wechat_gate", config)],
            &["WECHAT_TOKEN"],
        ),
        EnvoyOptions {
            concurrency: 1,
            env: &[("WECHAT_TOKEN", secret)],
        },
    );
    // The token is in use: its signatures pass, others fail, every path logs.
    let r = handshake(&envoy, secret, "ok");
    assert_eq!((r.status, r.body_text().as_str()), (200, "ok"));
    assert_eq!(
        post(&envoy, &signed(secret, now(), "2", &[]), "<xml/>", LISTED).status,
        200
    );
    assert_eq!(
        post(&envoy, &signed("wrong", now(), "2", &[]), "<xml/>", LISTED).status,
        401
    );
    assert_eq!(
        post(&envoy, &signed(secret, now(), "2", &[]), "<xml/>", UNLISTED).status,
        403
    );
    for path in [
        "/config_dump",
        "/config_dump?include_eds",
        "/stats",
        "/clusters",
        "/listeners",
    ] {
        let text = envoy.admin_text(path);
        assert!(!text.is_empty(), "{path} answered nothing");
        assert!(!text.contains(secret), "{path} shows the token");
    }
    assert!(
        envoy.admin_text("/config_dump").contains("WECHAT_TOKEN"),
        "the dump names the variable only"
    );
    let log = envoy.log_text();
    assert!(
        log.contains("rejected signature (401)"),
        "debug logging was on"
    );
    assert!(!log.contains(secret), "the log shows the token");
}

#[test]
fn metrics_show_in_prometheus_format() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})));
    handshake(&envoy, TOKEN, "1");
    let prom = envoy.admin_text("/stats/prometheus");
    for name in [
        "wechat_gate_handshake",
        "wechat_gate_forwarded",
        "wechat_gate_passed_through",
        "wechat_gate_rejected_signature",
        "wechat_gate_source_report_only",
    ] {
        assert!(
            prom.lines()
                .any(|l| l.contains(name) && !l.starts_with('#')),
            "{name} missing from /stats/prometheus"
        );
    }
}

#[test]
fn every_shipped_envoy_yaml_validates() {
    let dir = format!("{MANIFEST_DIR}/envoy");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("envoy/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let out = Command::new(envoy_bin())
            .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
            .arg(&path)
            .current_dir(MANIFEST_DIR)
            .env("WECHAT_TOKEN", "validate-token")
            .env("WECHAT_APPSECRET", "validate-secret")
            .env("WECHAT_AES_KEY", DEMO_AES_KEY)
            .output()
            .expect("envoy --mode validate");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("OK"),
            "{} does not validate:\n{text}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 1, "no YAML found in envoy/");
}

#[test]
fn demo_config_serves_backend_py_and_the_cli_talks_to_it() {
    use std::io::{BufRead, BufReader};
    // backend.py on a free port; its first line says which.
    // Killed on drop even when an assertion fails (an orphan would hold the test's pipes).
    let mut backend = ChildGuard(
        Command::new("python3")
            .args([&format!("{MANIFEST_DIR}/envoy/backend.py"), "--port", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 envoy/backend.py"),
    );
    let mut out = BufReader::new(backend.0.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("backend.py banner");
    let port: u16 = first
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("backend.py port");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });

    // WeChat's API stand-in, as `make run` starts it.
    let api = MockApi::start(
        "demo-secret-e2e",
        &[
            "--appid",
            "wx0123456789abcdef",
            "--callback-ip",
            "127.0.0.1",
            "--callback-ip",
            "127.0.0.2",
        ],
    );
    // The shipped demo config, on free ports and with the built .wasm.
    let yaml = std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/envoy.yaml"))
        .expect("envoy/envoy.yaml")
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 8080", &format!("port_value: {port}"))
        .replace("port_value: 8081", &format!("port_value: {}", api.port))
        .replace(
            "target/wasm32-wasip1/release/wechat_gate.wasm",
            &wasm_path().display().to_string(),
        );
    let token = "demo-token-e2e";
    let envoy = Envoy::start(
        &yaml,
        EnvoyOptions {
            concurrency: 1,
            env: &[
                ("WECHAT_TOKEN", token),
                ("WECHAT_APPSECRET", "demo-secret-e2e"),
                ("WECHAT_AES_KEY", DEMO_AES_KEY),
            ],
        },
    );
    let url = format!("http://127.0.0.1:{}/wechat", envoy.port);
    // The secrets in the environment, as the demo tells users to export them.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wechat-gate"))
            .args(args)
            .env("WECHAT_TOKEN", token)
            .env("WECHAT_AES_KEY", DEMO_AES_KEY)
            .env("WRONG_TOKEN", "wrong")
            .output()
            .expect("wechat-gate");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    // The first list arrives from mock-api within moments of start (503 until then).
    let echoed = wait_until(Duration::from_secs(3), || {
        cli(&["send", "handshake", &url]).0 == Some(0)
    });
    assert!(echoed.is_some(), "{}", envoy.log_text());
    let (code, text) = cli(&[
        "send",
        "message",
        &url,
        "--text",
        "你好, gate",
        "--openid",
        "o_demo_1",
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with("HTTP 200\n<xml>"),
        "backend.py's reply: {text}"
    );
    assert!(text.contains("收到: 你好, gate"), "{text}");
    // Safe mode: backend.py gets the plaintext, the CLI gets its reply sealed, then
    // checks the seal and decrypts it as WeChat would.
    let (code, text) = cli(&[
        "send",
        "message",
        &url,
        "--text",
        "加密的你好",
        "--openid",
        "o_demo_2",
        "--safe-mode",
        "--appid",
        "wx0123456789abcdef",
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("<Encrypt>"), "sealed on the wire: {text}");
    assert!(
        text.contains("-- the reply, signature checked and decrypted:\n<xml>"),
        "{text}"
    );
    assert!(text.contains("收到: 加密的你好"), "{text}");
    let (code, text) = cli(&[
        "send",
        "message",
        &url,
        "--token-env",
        "WRONG_TOKEN",
        "--text",
        "forged",
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with("HTTP 401"), "{text}");
    let (code, _) = cli(&[
        "send",
        "message",
        &url,
        "--text",
        "spoofed source",
        "--source",
        "127.0.0.9",
    ]);
    assert_eq!(code, Some(1));
    // Look-alikes of the callback path are answered 404 by the demo config, unchecked
    // requests never reach the backend under a path a framework might take for /wechat.
    for lookalike in ["/wechat/", "/wechat;jsessionid=1", "/WeChat", "/WECHAT/x"] {
        let r = envoy.send(
            "POST",
            lookalike,
            &[("x-wechat-gate-verified", b"1")],
            b"<xml/>",
            "127.0.0.1",
        );
        assert_eq!(r.status, 404, "{lookalike}");
    }
    // Not on the gated route: forged gate headers are stripped by the demo route config.
    let other = envoy.send(
        "GET",
        "/healthz",
        &[("x-wechat-gate-verified", b"1")],
        b"",
        "127.0.0.9",
    );
    assert_eq!(other.status, 200);

    drop(envoy);
    drop(backend);
    let _ = reader.join();
    let lines = lines.lock().expect("lines").clone();
    let wechat: Vec<&String> = lines.iter().filter(|l| l.contains("/wechat")).collect();
    assert_eq!(
        wechat.len(),
        2,
        "backend.py saw exactly the two verified messages: {lines:?}"
    );
    assert!(
        wechat[1].contains("'x-wechat-gate-decrypted': '1'") && wechat[1].contains("加密的你好"),
        "the safe-mode push arrived decrypted: {}",
        wechat[1]
    );
    assert!(!wechat[1].contains("<Encrypt>"), "{}", wechat[1]);
    assert!(
        wechat[0].starts_with("backend: POST /wechat?"),
        "{}",
        wechat[0]
    );
    assert!(
        wechat[0].contains("'x-wechat-gate-verified': '1'"),
        "{}",
        wechat[0]
    );
    assert!(
        wechat[0].contains("'x-wechat-gate-openid': 'o_demo_1'"),
        "{}",
        wechat[0]
    );
    assert!(wechat[0].contains("你好, gate"), "{}", wechat[0]);
    let health: Vec<&String> = lines.iter().filter(|l| l.contains("/healthz")).collect();
    assert_eq!(health.len(), 1);
    assert!(health[0].contains("gate={}"), "{}", health[0]);
}

#[test]
fn the_istio_envoyfilter_carries_a_filter_config_envoy_accepts() {
    // The EnvoyFilter's patch value (between its markers) inside a minimal bootstrap.
    let text = std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/istio/envoyfilter.yaml"))
        .expect("envoy/istio/envoyfilter.yaml");
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("# -- the Envoy HTTP filter --"))
        .skip(1)
        .take_while(|l| !l.contains("# -- end --"))
        .collect();
    assert!(block.len() > 10, "the markers are in place");
    let indent = block[0].len() - block[0].trim_start().len();
    let mut filter = String::new();
    for (i, line) in block.iter().enumerate() {
        let line = line.get(indent..).unwrap_or("").replace(
            "/etc/wechat-gate/wechat_gate.wasm",
            &wasm_path().display().to_string(),
        );
        let lead = if i == 0 {
            "          - "
        } else {
            "            "
        };
        filter.push_str(&format!("\n{lead}{line}"));
    }
    assert!(filter.contains("allow_on_headers_stop_iteration: true"));
    // A listener with this filter before the router (the backend is never called).
    let yaml = envoy_yaml_with_filters(1, &filter);
    let dir = std::env::temp_dir().join(format!("wechat-gate-istio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, &yaml).expect("write config");
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
        .arg(&path)
        .env("WECHAT_TOKEN", "validate-token")
        .env("WECHAT_AES_KEY", DEMO_AES_KEY)
        .output()
        .expect("envoy --mode validate");
    let _ = std::fs::remove_dir_all(&dir);
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && log.contains("OK"),
        "the EnvoyFilter's Wasm filter does not validate:\n{yaml}\n{log}"
    );
}

/// Raises this process's open-file limit to `want` (or as far as the hard limit
/// allows); Envoy, started after, inherits it.
fn allow_open_files(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    limit.rlim_cur
}

#[test]
fn a_thousand_stalled_pushes_on_one_worker_are_each_answered_408_and_the_vm_lives() {
    const STALLED: usize = 1000;
    let limit = allow_open_files(3 * STALLED as u64 + 200);
    assert!(
        limit > 2 * STALLED as u64 + 100,
        "this test needs an open-file limit over {} (ulimit -n is {limit})",
        2 * STALLED + 100
    );
    let backend = Backend::start();
    // One worker, and a body the gate must read (dedupe is on by default): every one
    // of these pushes is held on its headers, and every body stalls.
    let envoy = start(&backend, gate_config(json!({})));
    let mut streams = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let query = signed(TOKEN, now(), &format!("stall{i}"), &[]);
        let head =
            format!("POST /wechat?{query} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n<xml>");
        let mut s = wechat_gate::kit::client::connect("127.0.0.1", envoy.port, Some(ip(LISTED)))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        std::io::Write::write_all(&mut s, head.as_bytes()).expect("headers sent");
        streams.push(s);
    }
    let mut statuses = std::collections::BTreeMap::new();
    for mut s in streams {
        let status = wechat_gate::kit::client::read_response(&mut s)
            .map(|r| r.status.to_string())
            .unwrap_or_else(|e| format!("{:?}", e.kind()));
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        std::collections::BTreeMap::from([("408".to_string(), STALLED)]),
        "every stalled push is answered 408"
    );
    assert_eq!(
        envoy.counter("wechat_gate.rejected.body_timeout"),
        STALLED as u64
    );
    // The worker's VM is alive: a handshake and a push still work.
    let r = handshake(&envoy, TOKEN, "still-here");
    assert_eq!((r.status, r.body_text().as_str()), (200, "still-here"));
    let r = post(&envoy, &fresh(), &text_xml("o_user", "after", 77), LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(backend.records().len(), 1);
    assert_eq!(envoy.vm_failures(), Vec::<String>::new());
}

/// Forged gate headers in every spelling a CGI-style backend folds into one variable.
const FORGED_GATE_HEADERS: [(&str, &[u8]); 4] = [
    ("x_wechat_gate_verified", b"forged"),
    ("x_wechat_gate_openid", b"o_victim"),
    ("X-Wechat_Gate-Decrypted", b"1"),
    ("x-wechat-gate-verified", b"forged"),
];

#[test]
fn underscore_spellings_of_the_gates_headers_never_reach_a_cgi_style_backend() {
    // Envoy's default keeps headers with underscores: the gate itself must remove them.
    let backend = WsgiBackend::start();
    let envoy = Envoy::start(
        &envoy_yaml(
            backend.port,
            &[Gate::new("wechat_gate", gate_config(json!({})))],
            &[],
        ),
        EnvoyOptions::default(),
    );
    let query = signed(TOKEN, now(), &nonce(), &[("openid", "o_real")]);
    let mut headers = FORGED_GATE_HEADERS.to_vec();
    headers.push(("content-type", b"text/xml"));
    let body = text_xml("o_real", "hi", 9001);
    let r = envoy.send(
        "POST",
        &format!("/wechat?{query}"),
        &headers,
        body.as_bytes(),
        LISTED,
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        WsgiBackend::gate_variables(&r),
        BTreeMap::from([
            (
                "HTTP_X_WECHAT_GATE_OPENID".to_string(),
                "o_real".to_string()
            ),
            ("HTTP_X_WECHAT_GATE_VERIFIED".to_string(), "1".to_string()),
        ]),
        "only the gate's own values, once each"
    );
}

#[test]
fn the_shipped_config_drops_underscore_headers_on_every_route() {
    let backend = WsgiBackend::start();
    let yaml = std::fs::read_to_string(format!("{MANIFEST_DIR}/envoy/envoy.yaml"))
        .expect("envoy/envoy.yaml")
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 8080", &format!("port_value: {}", backend.port))
        .replace(
            "target/wasm32-wasip1/release/wechat_gate.wasm",
            &wasm_path().display().to_string(),
        );
    let envoy = Envoy::start(
        &yaml,
        EnvoyOptions {
            concurrency: 1,
            env: &[
                ("WECHAT_TOKEN", TOKEN),
                ("WECHAT_APPSECRET", "unused-secret"),
                ("WECHAT_AES_KEY", DEMO_AES_KEY),
            ],
        },
    );
    // A route the gate does not guard: only Envoy's own header rules protect it.
    let r = envoy.send("GET", "/healthz", &FORGED_GATE_HEADERS, b"", UNLISTED);
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(WsgiBackend::gate_variables(&r), BTreeMap::new());
    assert!(
        envoy
            .admin_text("/stats?filter=dropped_headers_with_underscores")
            .contains("dropped_headers_with_underscores: 3"),
        "{}",
        envoy.admin_text("/stats?filter=underscores")
    );
}

/// Waits until the clock has moved `seconds` past `since` (Unix seconds).
fn wait_past(since: i64, seconds: i64) {
    let limit = Duration::from_secs(u64::try_from(seconds).unwrap_or(0) + 5);
    assert!(wait_until(limit, || now() >= since + seconds).is_some());
}

#[test]
fn a_used_query_never_carries_a_push_to_the_backend_again() {
    let backend = Backend::start();
    // A short retry window, so a replay after it is quick to reach.
    let envoy = start(&backend, gate_config(json!({"dedupe_seconds": 2})));
    let sent_at = now();
    let query = signed(TOKEN, sent_at, &nonce(), &[("openid", "o_first")]);
    let first = text_xml("o_first", "the real push", 4001);
    let r = post(&envoy, &query, &first, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    // An exact copy at once, the same query with another body, a handshake's query
    // used for a push, and an exact copy after the retry window: each answered
    // `success`, none reaching the backend.
    let r = post(&envoy, &query, &first, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    let forged = text_xml("o_victim", "a body of the attacker's", 4002);
    let r = post(&envoy, &query, &forged, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    let handshake_query = signed(TOKEN, now(), &nonce(), &[("echostr", "e")]);
    let r = envoy.send(
        "GET",
        &format!("/wechat?{handshake_query}"),
        &[],
        b"",
        LISTED,
    );
    assert_eq!((r.status, r.body_text().as_str()), (200, "e"));
    let r = post(&envoy, &handshake_query, &forged, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    wait_past(sent_at, 4);
    let r = post(&envoy, &query, &first, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));

    let bodies: Vec<String> = backend
        .records()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies, [first], "only the first use arrived");
    assert_eq!(envoy.counter("wechat_gate.replayed"), 4);
    assert_eq!(envoy.counter("wechat_gate.forwarded"), 1);
    assert_eq!(envoy.counter("wechat_gate.deduplicated"), 0);
}

#[test]
fn a_query_whose_first_use_never_reached_the_backend_is_delivered_when_used_again() {
    let backend = Backend::start();
    let envoy = start(&backend, gate_config(json!({})));
    let query = signed(TOKEN, now(), &nonce(), &[]);
    let body = text_xml("o_user", "second time lucky", 4101);
    // The first try stalls half-way through its body: 408, nothing forwarded.
    let half = format!(
        "POST /wechat?{query} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        &body[..body.len() / 2]
    );
    let r = envoy.send_raw(half.as_bytes(), LISTED).expect("an answer");
    assert_eq!(r.status, 408, "{}", r.body_text());
    assert!(backend.records().is_empty());
    // The same query again, whole: delivered.
    let r = post(&envoy, &query, &body, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(backend.records().len(), 1);
    assert_eq!(envoy.counter("wechat_gate.replayed"), 0);
    // From then on it is used.
    let r = post(&envoy, &query, &body, LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(backend.records().len(), 1);
    assert_eq!(envoy.counter("wechat_gate.replayed"), 1);
}

#[test]
fn with_tolerance_zero_a_used_query_is_not_remembered() {
    // What the README says is lost with the freshness check off: a signed query is
    // good forever, and no table can remember it that long.
    let backend = Backend::start();
    let envoy = start(
        &backend,
        gate_config(json!({"timestamp_tolerance_seconds": 0, "dedupe_seconds": 0})),
    );
    let query = signed(TOKEN, now(), &nonce(), &[]);
    for id in [4201, 4202] {
        let r = post(&envoy, &query, &text_xml("o_user", "again", id), LISTED);
        assert_eq!(r.status, 200);
    }
    assert_eq!(backend.records().len(), 2);
    assert_eq!(envoy.counter("wechat_gate.replayed"), 0);
}
