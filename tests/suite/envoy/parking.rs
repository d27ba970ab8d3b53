//! Parking (`on_upstream_failure: success`, `park`): a verified push Envoy could not
//! deliver is answered `success`, kept in shared data and redelivered by the gate,
//! marked `x-wechat-gate-redelivered: <try>`, once the backend is back; with no room,
//! Envoy's own failure goes to WeChat, which retries. Among four workers one
//! redelivers at a time; a reconfiguration (ECDS) while a redelivery is out loses
//! nothing; a deploy blip under the shipped route retries loses nothing.

use crate::harness::backend::{Backend, Recorded, Reply};
use crate::harness::config::{gated, streaming, Gate};
use crate::harness::envoy::Envoy;
use crate::harness::requests::{fresh, LISTED};
use crate::harness::safe_mode::{push, safe_config, text_message};
use crate::harness::{closed_port, merged, wait_until};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The suite's plaintext account with the top-level keys of `extra` set.
fn plaintext(extra: serde_json::Value) -> serde_json::Value {
    merged(safe_config(json!({"safe_mode": null})), extra)
}

/// Waits until the backend has `n` requests (parking's first try is about a second
/// after a push, its backoff at most half a minute).
fn wait_for(backend: &Backend, n: usize) -> Vec<crate::harness::backend::Recorded> {
    let got = wait_until(Duration::from_secs(40), || backend.records().len() >= n);
    assert!(got.is_some(), "the backend got {:?}", backend.bodies());
    backend.records()
}

/// Waits until the gate's gauge `parked_now` reads `n`.
fn wait_parked_now(envoy: &Envoy, n: u64) {
    let got = wait_until(Duration::from_secs(10), || {
        envoy.counter("wechat_gate.parked_now") == n
    });
    assert!(
        got.is_some(),
        "parked_now {}",
        envoy.counter("wechat_gate.parked_now")
    );
}

#[test]
fn pushes_answered_success_while_the_backend_is_down_reach_it_once_it_is_back() {
    let port = closed_port();
    let envoy = gated(port, plaintext(json!({}))).workers(2).start();
    let sent: Vec<String> = (0..5)
        .map(|i| text_message(&format!("parked {i}"), 700 + i))
        .collect();
    for body in &sent {
        let r = envoy.post(&fresh(), body, LISTED);
        assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    }
    assert_eq!(envoy.counter("wechat_gate.parked"), 5);
    wait_parked_now(&envoy, 5);
    let backend = Backend::start_on(port);
    let records = wait_for(&backend, 5);
    // Each exactly once, oldest first, as the backend would have had it, marked.
    assert_eq!(backend.bodies(), sent);
    for r in &records {
        assert_eq!(r.method, "POST");
        assert!(r.url.starts_with("/wechat?signature="), "{}", r.url);
        assert_eq!(r.header("x-wechat-gate-verified"), Some("1"));
        assert_eq!(r.header("x-wechat-gate-redelivered"), Some("1"));
    }
    wait_parked_now(&envoy, 0);
    assert_eq!(envoy.counter("wechat_gate.redelivered"), 5);
    // Nothing more comes: each was forgotten on its 2xx.
    let _more = wait_until(Duration::from_secs(3), || backend.records().len() > 5);
    assert_eq!(backend.records().len(), 5, "{:?}", backend.bodies());
}

#[test]
fn a_decrypted_push_is_redelivered_in_plaintext_with_the_gates_headers() {
    let port = closed_port();
    let envoy = gated(port, safe_config(json!({}))).start();
    let message = text_message("sealed, parked", 710);
    let r = envoy.push(&push(&message, "1"));
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    let backend = Backend::start_on(port);
    let records = wait_for(&backend, 1);
    assert_eq!(records[0].body_text(), message);
    assert_eq!(records[0].header("x-wechat-gate-decrypted"), Some("1"));
    if streaming() {
        // As it went upstream: its headers went on before the body was read, so
        // without the unsigned openid and with the query as WeChat sent it.
        assert_eq!(records[0].header("x-wechat-gate-openid"), None);
    } else {
        let openid = records[0].header("x-wechat-gate-openid");
        assert_eq!(openid, Some("o_safe_user"));
        assert!(
            !records[0].url.contains("msg_signature"),
            "{}",
            records[0].url
        );
    }
}

#[test]
fn with_the_parking_area_full_envoys_failure_goes_to_wechat_to_retry() {
    let port = closed_port();
    let envoy = gated(port, plaintext(json!({"park": {"max_messages": 2}}))).start();
    for i in 0..2 {
        let r = envoy.post(&fresh(), &text_message("fits", 720 + i), LISTED);
        assert_eq!(r.status, 200);
    }
    let r = envoy.post(&fresh(), &text_message("no room", 722), LISTED);
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert_eq!(envoy.counter("wechat_gate.park_full"), 1);
    assert_eq!(envoy.counter("wechat_gate.parked"), 2);
    // WeChat's retry of it, a new signed query, is not taken for a duplicate.
    let backend = Backend::start_on(port);
    let r = envoy.post(&fresh(), &text_message("no room", 722), LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    wait_for(&backend, 3);
}

#[test]
fn with_parking_off_a_push_answered_success_is_not_parked() {
    let port = closed_port();
    let envoy = gated(port, plaintext(json!({"park": {"max_messages": 0}}))).start();
    let r = envoy.post(&fresh(), &text_message("lost", 730), LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    assert_eq!(envoy.counter("wechat_gate.upstream_failure"), 1);
    assert_eq!(envoy.counter("wechat_gate.parked"), 0);
}

#[test]
fn a_push_the_slow_backend_got_too_late_is_delivered_again_marked() {
    // The route times out at 5 s; the backend answers a first try after 6 s and a
    // redelivery at once. Delivery is at least once: it has the push twice.
    let backend = Backend::replying(|r| match r.header("x-wechat-gate-redelivered") {
        Some(_) => Reply::success(),
        None => Reply::success().after(Duration::from_secs(6)),
    });
    let envoy = gated(backend.port, plaintext(json!({}))).start();
    let r = envoy.post(&fresh(), &text_message("slow", 740), LISTED);
    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
    let records = wait_for(&backend, 2);
    assert_eq!(records[0].header("x-wechat-gate-redelivered"), None);
    assert_eq!(records[1].header("x-wechat-gate-redelivered"), Some("1"));
    assert_eq!(records[0].body, records[1].body);
}

#[test]
fn a_push_parked_longer_than_max_seconds_is_dropped_and_counted() {
    let port = closed_port();
    let envoy = gated(port, plaintext(json!({"park": {"max_seconds": 2}}))).start();
    let r = envoy.post(&fresh(), &text_message("too old", 750), LISTED);
    assert_eq!(r.status, 200);
    let dropped = wait_until(Duration::from_secs(15), || {
        envoy.counter("wechat_gate.park_expired") == 1
    });
    assert!(dropped.is_some(), "{}", envoy.log_text());
    wait_parked_now(&envoy, 0);
    // Back now, the backend gets nothing.
    let backend = Backend::start_on(port);
    let _late = wait_until(Duration::from_secs(3), || !backend.records().is_empty());
    assert!(backend.records().is_empty(), "{:?}", backend.bodies());
}

/// The try a redelivery was (`x-wechat-gate-redelivered`), `None` for a push that
/// came the ordinary way.
fn try_of(r: &Recorded) -> Option<u32> {
    let mark = r.header("x-wechat-gate-redelivered")?;
    Some(mark.parse().unwrap_or_else(|_| panic!("a try: {mark}")))
}

/// A push's MsgId, to name it.
fn msg_id(body: &str) -> String {
    let id = body
        .split_once("<MsgId>")
        .and_then(|(_, rest)| rest.split_once("</MsgId>"));
    id.map_or(body.to_string(), |(id, _)| id.to_string())
}

/// Sends each of `bodies` from its own thread (`threads` at once), each answered
/// `success`.
fn send_all(envoy: &Envoy, bodies: &[String], threads: usize) {
    std::thread::scope(|s| {
        for share in bodies.chunks(bodies.len().div_ceil(threads)) {
            s.spawn(move || {
                for body in share {
                    let r = envoy.post(&fresh(), body, LISTED);
                    assert_eq!((r.status, r.body_text().as_str()), (200, "success"));
                }
            });
        }
    });
}

/// How often each push came, by MsgId.
fn times_each(records: &[Recorded]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for r in records {
        *seen.entry(msg_id(&r.body_text())).or_insert(0) += 1;
    }
    seen
}

/// Whether each of `sent` came at least once.
fn all_came(sent: &[String], records: &[Recorded]) -> bool {
    let got = times_each(records);
    sent.iter().all(|b| got.contains_key(&msg_id(b)))
}

#[test]
fn with_four_workers_one_redelivers_at_a_time_and_each_push_arrives_once() {
    let port = closed_port();
    let envoy = gated(port, plaintext(json!({}))).workers(4).start();
    let sent: Vec<String> = (0..12)
        .map(|i| text_message(&format!("four workers {i}"), 760 + i))
        .collect();
    send_all(&envoy, &sent, 4);
    assert_eq!(envoy.counter("wechat_gate.parked"), 12);
    wait_parked_now(&envoy, 12);
    // Back, taking 200 ms over each answer: two redeliveries at once would overlap.
    let backend =
        Backend::replying_on(port, |_| Reply::success().after(Duration::from_millis(200)));
    wait_for(&backend, 12);
    wait_parked_now(&envoy, 0);
    assert_eq!(envoy.counter("wechat_gate.redelivered"), 12);
    // Nothing more comes: each was forgotten on its 2xx.
    let _more = wait_until(Duration::from_secs(3), || backend.records().len() > 12);
    let records = backend.records();
    assert!(records.iter().all(|r| try_of(r).is_some()), "all marked");
    // One at a time: each redelivery was read after the one before was answered.
    // (The lease keeps it so, and so does each try's mark on its push, `next_try_ms`
    // a lease ahead: broken, either alone still passes; both, and this fails.)
    let mut spans: Vec<_> = records.iter().map(|r| (r.read_at, r.answered_at)).collect();
    spans.sort();
    for pair in spans.windows(2) {
        let ((_, answered), (next_read, _)) = (pair[0], pair[1]);
        let answered = answered.expect("every redelivery answered");
        assert!(
            answered <= next_read,
            "two redeliveries overlapped: one read {:?} before the other was answered",
            answered.duration_since(next_read)
        );
    }
    let once: BTreeMap<String, usize> = sent.iter().map(|b| (msg_id(b), 1)).collect();
    assert_eq!(
        times_each(&records),
        once,
        "each push exactly once, by MsgId"
    );
}

#[test]
fn a_reconfiguration_while_a_redelivery_is_out_loses_nothing() {
    let port = closed_port();
    let config = |dedupe: u32| plaintext(json!({"dedupe_seconds": dedupe}));
    let (envoy, ecds) = gated(port, config(15)).workers(2).start_discovered();
    let sent: Vec<String> = (0..3)
        .map(|i| text_message(&format!("reconfigured {i}"), 780 + i))
        .collect();
    send_all(&envoy, &sent, 1);
    wait_parked_now(&envoy, 3);
    // Back, answering after 2 s: the first redelivery is out when the gate is
    // reconfigured (through ECDS, as a control plane or Istio would).
    let backend = Backend::replying_on(port, |_| Reply::success().after(Duration::from_secs(2)));
    wait_for(&backend, 1);
    ecds.reconfigure(&envoy, &Gate::new("wechat_gate", config(16)));
    let first = &backend.records()[0];
    assert_eq!(first.answered_at, None, "the reload came after its answer");
    // Every push arrives; the one whose try was cut short arrives again, a later try.
    let all = wait_until(Duration::from_secs(40), || {
        let records = backend.records();
        all_came(&sent, &records)
            && records
                .iter()
                .any(|r| r.body == first.body && try_of(r) >= Some(2))
    });
    let tries: Vec<_> = backend
        .records()
        .iter()
        .map(|r| (msg_id(&r.body_text()), try_of(r)))
        .collect();
    assert!(all.is_some(), "the backend got {tries:?}");
    wait_parked_now(&envoy, 0);
    assert_eq!(envoy.vm_failures(), Vec::<String>::new());
    eprintln!("redeliveries across the reload (MsgId, try): {tries:?}");
}

#[test]
fn a_two_second_deploy_blip_under_the_shipped_retries_loses_nothing() {
    let port = closed_port();
    let envoy = gated(port, plaintext(json!({})))
        .shipped_retries()
        .workers(2)
        .start();
    let sent: Vec<String> = (0..30)
        .map(|i| text_message(&format!("blip {i}"), 800 + i))
        .collect();
    let answers = Mutex::new(Vec::new());
    let mut backend = None;
    // One push every 100 ms for 3 s, each on its own thread (one held by Envoy's
    // retries holds up no other); the backend is down for the first 2 s.
    std::thread::scope(|s| {
        for (i, body) in sent.iter().enumerate() {
            if i == 20 {
                backend = Some(Backend::start_on(port));
            }
            let (envoy, answers) = (&envoy, &answers);
            s.spawn(move || {
                let r = envoy.post(&fresh(), body, LISTED);
                let answer = (r.status, r.body_text());
                answers.lock().expect("answers").push(answer);
            });
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let backend = backend.expect("the backend came back");
    for answer in answers.into_inner().expect("answers") {
        assert_eq!((answer.0, answer.1.as_str()), (200, "success"));
    }
    // Zero loss: every push reaches the backend, by Envoy's retry or by redelivery.
    let all = wait_until(Duration::from_secs(40), || {
        all_came(&sent, &backend.records())
    });
    assert!(all.is_some(), "lost (MsgIds): {:?}", {
        let got = times_each(&backend.records());
        let ids = sent.iter().map(|b| msg_id(b));
        ids.filter(|id| !got.contains_key(id)).collect::<Vec<_>>()
    });
    wait_parked_now(&envoy, 0);
    let records = backend.records();
    let retried = records.iter().filter(|r| try_of(r).is_none()).count();
    let redelivered = records.iter().filter(|r| try_of(r).is_some()).count();
    eprintln!(
        "deploy blip: {} pushes, {retried} delivered by Envoy ({} retries), {redelivered} \
         by redelivery; parked {}, {} delivered more than once",
        sent.len(),
        envoy.envoy_stat("cluster.backend.upstream_rq_retry"),
        envoy.counter("wechat_gate.parked"),
        times_each(&records).values().filter(|&&n| n > 1).count(),
    );
}
