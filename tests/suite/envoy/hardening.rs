//! What an operator can get wrong is refused loudly, and secrets stay secret: a bad
//! configuration stops Envoy naming the field; a plugin config without
//! `allow_on_headers_stop_iteration` streams bodies and says so; a token or an
//! EncodingAESKey from the environment never shows in the admin API or the log.

use crate::harness::backend::{Backend, HeadBackend};
use crate::harness::config::{gate_config, gated, streaming, EnvoyConfig, Gate};
use crate::harness::requests::{nonce, signed, LISTED, TOKEN, UNLISTED};
use crate::harness::safe_mode::{push, safe_config, text_message, AES_KEY};
use crate::harness::{now, wait_until};
use serde_json::json;
use std::time::Duration;

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
        let started = gated(backend.port, config.clone())
            .vm_env_key("WECHAT_GATE_UNSET_VAR")
            .try_start();
        match started {
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
fn a_secret_of_the_wrong_type_is_refused_and_never_repeated() {
    let secret = "S3cretGivenAsAList9q";
    let backend = Backend::start();
    let api = |secret: serde_json::Value| {
        json!({"token": "t", "appid": "wx0123456789abcdef", "source": {"wechat_api": {
            "secret": secret,
            "upstreams": [{"cluster": "wechat_api", "authority": "api.weixin.qq.com"}]}}})
    };
    for (config, field) in [
        (api(json!([secret])), "source.wechat_api.secret"),
        (api(json!({"env": [secret]})), "source.wechat_api.secret"),
        (
            api(json!({"env": "X", "value": secret})),
            "source.wechat_api.secret",
        ),
        (
            json!({"token": [[secret]], "source": {"allow": ["127.0.0.1"]}}),
            "token",
        ),
    ] {
        let log = match gated(backend.port, config.clone()).try_start() {
            Ok(_) => panic!("Envoy started with a secret of the wrong type: {field}"),
            Err(log) => log,
        };
        let line = log
            .lines()
            .find(|l| l.contains("wechat-gate refused its configuration"))
            .unwrap_or_else(|| panic!("no refusal line for {field}:\n{log}"));
        assert!(line.contains(field), "{field} not named in: {line}");
        assert!(
            !log.contains(secret),
            "the refusal repeats the secret given for {field}"
        );
    }
}

/// A `max_body_bytes` above Envoy's buffer limit (1 MiB here, its default): a push
/// between the two is refused by Envoy's own 413 while the gate holds the headers, or,
/// when they have gone on (stream mode), Envoy stops reading the body and the gate
/// answers 408 and resets the upstream request. Either way the backend completes
/// nothing. The shipped configs keep the limit above max_body_bytes (README).
#[test]
fn a_push_over_envoys_buffer_limit_is_refused_and_never_completes_at_the_backend() {
    let backend = Backend::start();
    let envoy = gated(
        backend.port,
        gate_config(json!({"max_body_bytes": 4 << 20})),
    )
    .start();
    let body = format!("<xml><Content>{}</Content></xml>", "x".repeat(2 << 20));
    let raw = format!(
        "POST /wechat?{} HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{body}",
        signed(TOKEN, now(), &nonce(), &[]),
        body.len()
    );
    let r = envoy.send_raw(raw.as_bytes(), LISTED).expect("an answer");
    let expected = if streaming() {
        (408, "body_timeout")
    } else {
        (413, "Payload Too Large")
    };
    assert_eq!(r.status, expected.0, "{}", r.body_text());
    assert!(r.body_text().contains(expected.1), "{}", r.body_text());
    let completed: Vec<usize> = backend
        .records()
        .iter()
        .map(|r| r.body.len())
        .filter(|&n| n > 0)
        .collect();
    assert!(
        completed.is_empty(),
        "the backend read a body: {completed:?}"
    );
}

#[test]
fn token_from_the_environment_never_shows_in_config_dump_or_logs() {
    let secret = "Tok3nFromEnv7f3a9cZ";
    let backend = Backend::start();
    let config = gate_config(json!({"token": {"env": "WECHAT_TOKEN"}}));
    let envoy = gated(backend.port, config)
        .vm_env("WECHAT_TOKEN", secret)
        .start();
    // The token is in use: its signatures pass, others fail, every path logs.
    let r = envoy.handshake(secret, "ok");
    assert_eq!((r.status, r.body_text().as_str()), (200, "ok"));
    assert_eq!(
        envoy
            .post(&signed(secret, now(), "2", &[]), "<xml/>", LISTED)
            .status,
        200
    );
    assert_eq!(
        envoy
            .post(&signed("wrong", now(), "2", &[]), "<xml/>", LISTED)
            .status,
        401
    );
    assert_eq!(
        envoy
            .post(&signed(secret, now(), "2", &[]), "<xml/>", UNLISTED)
            .status,
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
fn the_aes_key_never_shows_in_config_dump_or_logs() {
    let backend = Backend::start();
    let config = safe_config(json!({
        "token": {"env": "E2E_TOKEN"},
        "safe_mode": {"encoding_aes_key": {"env": "E2E_AES_KEY"}, "decrypt": true}
    }));
    let envoy = gated(backend.port, config)
        .vm_env("E2E_TOKEN", TOKEN)
        .vm_env("E2E_AES_KEY", AES_KEY)
        .start();
    assert_eq!(envoy.push(&push(&text_message("s", 13), "1")).status, 200);
    let mut bad = push(&text_message("s", 14), "2");
    bad.query = bad.query.replace("msg_signature=", "msg_signature=0");
    assert_eq!(envoy.push(&bad).status, 401);
    let dump = envoy.admin_text("/config_dump");
    let log = envoy.log_text();
    for secret in [AES_KEY, TOKEN] {
        assert!(!dump.contains(secret), "config_dump shows a secret");
        assert!(!log.contains(secret), "the log shows a secret");
    }
}

#[test]
fn without_allow_on_headers_stop_iteration_pushes_are_streamed_and_delivered() {
    let backend = Backend::start();
    let envoy = EnvoyConfig::new(backend.port)
        .gate(Gate::new("wechat_gate", safe_config(json!({}))).without_header_hold())
        .start();
    // Each is held a moment, probed, and let go: decrypted, delivered, answered.
    for i in 0..3 {
        let message = text_message(&format!("streamed {i}"), 1500 + i);
        let r = envoy.push(&push(&message, &nonce()));
        assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
        assert_eq!(backend.bodies().last(), Some(&message), "delivered");
    }
    assert_eq!(envoy.counter("wechat_gate.rejected.body_timeout"), 0);
    assert!(
        wait_until(Duration::from_secs(5), || envoy
            .log_text()
            .contains("reads push bodies in stream mode"))
        .is_some(),
        "the gate says once which mode it uses"
    );
    // From then on a push is streamed at once, and a forged one never completes.
    let p = push(&text_message("forged", 1600), &nonce());
    let forged = p
        .body
        .replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A", 1);
    let r = envoy.push(&p.with_body(forged));
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert_eq!(backend.records().len(), 3);
    // The handshake needs no body and still works.
    let r = envoy.handshake(TOKEN, "still-fine");
    assert_eq!((r.status, r.body_text().as_str()), (200, "still-fine"));
}

#[test]
fn with_allow_on_headers_stop_iteration_pushes_are_held() {
    let backend = Backend::start();
    let envoy = EnvoyConfig::new(backend.port)
        .gate(Gate::new("wechat_gate", safe_config(json!({}))).with_header_hold())
        .start();
    let r = envoy.push(&push(&text_message("held", 1700), &nonce()));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(wait_until(Duration::from_secs(5), || envoy
        .log_text()
        .contains("reads push bodies in hold mode"))
    .is_some());
}

#[test]
fn a_slow_body_one_byte_every_200_ms_is_waited_for_and_delivered() {
    let backend = Backend::start();
    // dedupe_seconds on (the default): the gate reads the body before letting it go.
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let body = "<xml><MsgId>4242</MsgId></xml>";
    let query = signed(TOKEN, now(), &nonce(), &[]);
    let mut s = envoy.connect(LISTED).expect("connect");
    let head = format!(
        "POST /wechat?{query} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    use std::io::Write;
    s.write_all(head.as_bytes()).expect("headers");
    for byte in body.as_bytes() {
        std::thread::sleep(Duration::from_millis(200)); // the client's pace, not a wait
        s.write_all(&[*byte]).expect("a byte");
    }
    let r = wechat::http1::client::read_response(&mut s).expect("an answer");
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(backend.bodies(), [body]);
    assert_eq!(envoy.counter("wechat_gate.rejected.body_timeout"), 0);
}

/// A push whose headers are written now and whose body `late` later (`None`: never),
/// on its own connection; the connection, to read the answer from.
fn push_with_late_body(
    envoy: &crate::harness::envoy::Envoy,
    body: &str,
    late: Option<Duration>,
) -> std::net::TcpStream {
    use std::io::Write;
    let query = signed(TOKEN, now(), &nonce(), &[]);
    let mut s = envoy.connect(LISTED).expect("connect");
    let head = format!(
        "POST /wechat?{query} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("headers");
    if let Some(late) = late {
        std::thread::sleep(late); // the client's pace, not a wait
        s.write_all(body.as_bytes()).expect("body");
    }
    s
}

#[test]
fn late_bodies_at_a_workers_start_do_not_talk_a_holding_host_into_streaming() {
    let backend = HeadBackend::start();
    let envoy = EnvoyConfig::new(backend.port)
        .gate(Gate::new("wechat_gate", gate_config(json!({}))).with_header_hold())
        .start();
    // A slow network at the worker's start: three bodies 150 ms behind their headers.
    for i in 0..3 {
        let body = format!("<xml><MsgId>{}</MsgId></xml>", 7100 + i);
        let mut s = push_with_late_body(&envoy, &body, Some(Duration::from_millis(150)));
        let r = wechat::http1::client::read_response(&mut s).expect("an answer");
        assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    }
    assert_eq!(backend.bodies().len(), 3, "the late pushes are delivered");
    // Then a push whose body never comes: held, answered 408, never sent upstream.
    let mut s = push_with_late_body(&envoy, "<xml><MsgId>7200</MsgId></xml>", None);
    let r = wechat::http1::client::read_response(&mut s).expect("an answer");
    assert_eq!(r.status, 408, "{}", r.body_text());
    assert_eq!(
        backend.heads().len(),
        3,
        "the stalled push's headers reached the backend: {:?}",
        backend.heads().last()
    );
    assert!(!envoy
        .log_text()
        .contains("reads push bodies in stream mode"));
}

#[test]
fn a_streaming_host_is_told_by_its_own_byte_count_and_a_stalled_push_stays_off_the_backend() {
    let backend = HeadBackend::start();
    let envoy = EnvoyConfig::new(backend.port)
        .gate(Gate::new("wechat_gate", gate_config(json!({}))).without_header_hold())
        .start();
    // At the worker's start a push whose body never comes shows nothing of the host:
    // it waits on its headers, off the backend, and is answered 408.
    let mut s = push_with_late_body(&envoy, "<xml><MsgId>7300</MsgId></xml>", None);
    let r = wechat::http1::client::read_response(&mut s).expect("an answer");
    assert_eq!(r.status, 408, "{}", r.body_text());
    assert_eq!(
        backend.heads(),
        Vec::<String>::new(),
        "nothing went upstream"
    );
    assert!(!envoy.log_text().contains("reads push bodies in"));
    // A body 150 ms late: Envoy counts its bytes and keeps them back, which settles
    // stream mode, and the push goes on.
    let body = "<xml><MsgId>7301</MsgId></xml>";
    let mut s = push_with_late_body(&envoy, body, Some(Duration::from_millis(150)));
    let r = wechat::http1::client::read_response(&mut s).expect("an answer");
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(backend.bodies(), [body]);
    assert!(wait_until(Duration::from_secs(5), || envoy
        .log_text()
        .contains("reads push bodies in stream mode"))
    .is_some());
}
