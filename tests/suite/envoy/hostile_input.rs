//! Hostile input never crashes the worker's VM: bytes no client should send, and
//! pushes whose bodies stall (one in safe mode, a thousand on one worker), each
//! answered 408.

use crate::harness::backend::{Backend, HeadBackend};
use crate::harness::config::{gate_config, gated, EnvoyConfig, Gate};
use crate::harness::envoy::Envoy;
use crate::harness::requests::{fresh, signed, text_xml, LISTED, TOKEN};
use crate::harness::safe_mode::{push, safe_config, text_message};
use crate::harness::{now, wait_until};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn hostile_input_never_crashes_the_vm() {
    let backend = Backend::start();
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let huge_key = "k".repeat(30_000);
    let many = "a=1&".repeat(5_000);
    let q = fresh();
    // A used query is a replay whatever its method: each request meant to be echoed
    // has a query of its own.
    let (q2, q3, q4) = (fresh(), fresh(), fresh());
    let raw_requests: Vec<Vec<u8>> = vec![
        // Non-UTF-8 header values, on the guarded path and with a valid signature.
        [
            format!("POST /wechat?{q} HTTP/1.1\r\nhost: x\r\n").as_bytes(),
            &b"x-bin: \xff\xfe\r\nx-wechat-gate-verified: \xff\r\ncontent-length: 2\r\nconnection: close\r\n\r\nab"[..],
        ]
        .concat(),
        [&b"GET /wechat?signature=\xff&timestamp=1&nonce=2&echostr=3 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"[..]].concat(),
        format!("GET /wechat?{huge_key}=1&{q2}&echostr=z HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes(),
        format!("GET /wechat?{many}{q3}&echostr=z HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes(),
        b"GET /wechat?signature=&timestamp=&nonce=&echostr= HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
        format!("GET /wechat?{q}&{q}&echostr=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes(),
        format!("GET /wechat?{q4}&echostr=%00%0d%0a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes(),
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
    let r = envoy.handshake(TOKEN, "alive");
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

/// `n` verified pushes from the listed source whose bodies stall after five bytes of
/// 100, each on its own connection (nonces `{tag}0`, `{tag}1`…).
fn stalled_pushes(envoy: &Envoy, n: usize, tag: &str) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|i| {
            let query = signed(TOKEN, now(), &format!("{tag}{i}"), &[]);
            let head = format!(
                "POST /wechat?{query} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n<xml>"
            );
            let mut s = envoy
                .connect(LISTED)
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            std::io::Write::write_all(&mut s, head.as_bytes()).expect("headers sent");
            s
        })
        .collect()
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
    let envoy = gated(backend.port, gate_config(json!({}))).start();
    let streams = stalled_pushes(&envoy, STALLED, "stall");
    let mut statuses = BTreeMap::new();
    for mut s in streams {
        let status = wechat::http1::client::read_response(&mut s)
            .map(|r| r.status.to_string())
            .unwrap_or_else(|e| format!("{:?}", e.kind()));
        *statuses.entry(status).or_insert(0) += 1;
    }
    let timed_out = statuses.get("408").copied().unwrap_or(0);
    // Streamed too: past the worker's few streamed bodies the rest wait off the
    // backend, so none is answered for by Envoy.
    assert_eq!(
        statuses,
        BTreeMap::from([("408".to_string(), STALLED)]),
        "every stalled push is answered 408"
    );
    assert_eq!(
        envoy.counter("wechat_gate.rejected.body_timeout"),
        timed_out as u64
    );
    assert!(backend.records().is_empty(), "no stalled push completed");
    // The worker's VM is alive: a handshake and a push still work.
    let r = envoy.handshake(TOKEN, "still-here");
    assert_eq!((r.status, r.body_text().as_str()), (200, "still-here"));
    let r = envoy.post(&fresh(), &text_xml("o_user", "after", 77), LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(backend.records().len(), 1);
    assert_eq!(envoy.vm_failures(), Vec::<String>::new());
}

#[test]
fn in_stream_mode_stalled_pushes_cannot_starve_the_backend_of_a_verified_push() {
    const STALLED: usize = 300;
    let limit = allow_open_files(3 * STALLED as u64 + 200);
    assert!(limit > 2 * STALLED as u64 + 100, "ulimit -n is {limit}");
    // A backend like a pool of 32 workers with a listen backlog of 128: each stalled
    // request it is sent holds a worker, and past worker and backlog the kernel drops
    // the connection attempt (Envoy answers 503 for it).
    let backend = HeadBackend::bounded(32, 128);
    let envoy = EnvoyConfig::new(backend.port)
        .gate(Gate::new("wechat_gate", gate_config(json!({}))).without_header_hold())
        .start();
    for i in 0..3 {
        let r = envoy.post(&fresh(), &text_xml("o_user", "first", 80 + i), LISTED);
        assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    }
    assert!(
        wait_until(Duration::from_secs(5), || envoy
            .log_text()
            .contains("reads push bodies in stream mode"))
        .is_some(),
        "the worker streams"
    );
    let streams = stalled_pushes(&envoy, STALLED, "slow");
    // Meanwhile WeChat pushes a message: it must reach the backend.
    let valid = text_xml("o_user", "meanwhile", 90);
    let r = envoy.post(&fresh(), &valid, LISTED);
    let delivered = backend.bodies().contains(&valid);
    let mut statuses = BTreeMap::new();
    for mut s in streams {
        let status = wechat::http1::client::read_response(&mut s)
            .map(|r| r.status.to_string())
            .unwrap_or_else(|e| format!("{:?}", e.kind()));
        *statuses.entry(status).or_insert(0) += 1;
    }
    let upstream = backend
        .heads()
        .iter()
        .filter(|h| h.contains("nonce=slow"))
        .count();
    eprintln!(
        "stalled: {statuses:?}; their headers upstream: {upstream}; the valid push: {} {:?}, \
         delivered: {delivered}",
        r.status,
        r.body_text()
    );
    assert!(
        delivered,
        "the valid push was answered {} but never delivered",
        r.status
    );
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(
        statuses,
        BTreeMap::from([("408".to_string(), STALLED)]),
        "every stalled push is answered 408"
    );
    assert!(
        upstream <= gate::body::MAX_STREAMED_UNVERIFIED,
        "{upstream} stalled pushes went upstream"
    );
    assert_eq!(envoy.vm_failures(), Vec::<String>::new());
}

#[test]
fn a_push_whose_body_stalls_gets_408() {
    let backend = Backend::start();
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    let p = push(&text_message("stall", 20), "1");
    let head = format!(
        "POST /wechat?{} HTTP/1.1\r\nhost: gate\r\ncontent-length: {}\r\n\r\n",
        p.query,
        p.body.len()
    );
    let partial = [head.as_bytes(), &p.body.as_bytes()[..10]].concat();
    // The deadline is 3 s, checked on a 1 s tick: before WeChat's 5 s and the route's.
    let r = envoy.send_raw(&partial, LISTED).expect("an answer");
    assert_eq!(r.status, 408, "{}", r.body_text());
    assert!(backend.records().is_empty());
}

#[test]
fn a_stalled_push_is_answered_408_no_sooner_than_its_deadline() {
    // A push whose body never comes, on a worker that has not learnt how its host
    // hands bodies over, is probed: the tick goes from 1 s to 10 ms as it comes.
    // Wherever it falls between two ticks, it waits its whole 3 s.
    let backend = Backend::start();
    let envoy = gated(backend.port, safe_config(json!({}))).start();
    for i in 0..6u64 {
        std::thread::sleep(Duration::from_millis(170 * i % 1000));
        let p = push(&text_message(&format!("stall-{i}"), 20), "1");
        let head = format!(
            "POST /wechat?{} HTTP/1.1\r\nhost: gate\r\ncontent-length: {}\r\n\r\n",
            p.query,
            p.body.len()
        );
        let sent = std::time::Instant::now();
        let r = envoy.send_raw(head.as_bytes(), LISTED).expect("an answer");
        let after = sent.elapsed();
        assert_eq!(r.status, 408, "{}", r.body_text());
        assert!(
            after >= Duration::from_millis(gate::body::BODY_DEADLINE_MS),
            "answered after {after:?}"
        );
    }
    assert!(backend.records().is_empty());
}
