//! What one push costs the host: the hostcalls a verified push makes with the
//! defaults, counted (each is a crossing out of the VM, and each that returns data a
//! second crossing back into its allocator: `bench/results.md`, "Where a push's time
//! goes").

use super::{config, Gate};
use crate::dedupe::shard_key;
use crate::host::Host;
use gate::exchange::Flow;
use gate::tables::Table;

/// A worker past its first tick, settled in hold mode, with every table shard
/// already in shared data (a shard's first use seeds it, once per process).
fn warm(json: &str) -> Gate {
    let mut gate = Gate::configured(json);
    gate.learn_hold_mode();
    gate.tick();
    for table in [Table::Retry, Table::Replay] {
        for shard in 0..table.shape().shards {
            let _ = gate.host.set_shared(&shard_key(table, shard), b"", None);
        }
    }
    gate
}

/// The hostcalls of push `id` (its headers and body set up on the host) from its
/// headers to its end, forwarded and answered `200` by the backend. The shard a push
/// lands in is its own: only the table shows.
fn hostcalls_of(gate: &mut Gate, id: u32) -> Vec<String> {
    let _ = gate.host.take_hostcalls();
    // Paused for its body when the gate reads it; either way Envoy hands the filter
    // the body as it passes.
    gate.request_headers(id, false);
    assert_eq!(gate.request_body(id), Flow::Continue);
    gate.host.stream(id).response_headers = vec![(":status".into(), "200".into())];
    assert_eq!(gate.response_headers(id, false), Flow::Continue);
    gate.end(id);
    assert!(gate.replies(id).is_empty(), "forwarded");
    gate.host
        .take_hostcalls()
        .into_iter()
        .map(|call| match call.rsplit_once('.') {
            Some((table, shard)) if call.contains("_shared wechat_gate.") => {
                let size = shard.split_once(' ').map_or("", |(_, size)| size);
                format!("{table}.N {size}").trim_end().to_string()
            }
            _ => call,
        })
        .collect()
}

/// A plaintext push with its own nonce and MsgId, through a warm worker.
fn one_push(json: &str) -> Vec<String> {
    let mut gate = warm(json);
    let n = 77;
    let body = super::message(n);
    let path = format!("/wechat?{}", super::signed_query(&n.to_string(), &[]));
    let length = body.len().to_string();
    let id = gate.open(&[
        (":method", "POST"),
        (":path", &path),
        ("content-type", "text/xml"),
        ("content-length", &length),
    ]);
    gate.host.stream(id).request_body = body.into_bytes();
    hostcalls_of(&mut gate, id)
}

#[test]
fn a_default_push_costs_nine_hostcalls_and_one_flush() {
    assert_eq!(
        one_push(&config("")),
        [
            // The headers: the map at once, the source; the push waits for its body.
            "header_map Request",
            "property source.address",
            // The body, then each table's shard read and written once.
            "body Request",
            "get_shared wechat_gate.replay.v3.N",
            "set_shared wechat_gate.replay.v3.N (24 bytes)",
            "get_shared wechat_gate.dedupe.v4.N",
            "set_shared wechat_gate.dedupe.v4.N (24 bytes)",
            "set_header Request x-wechat-gate-verified",
            // The response: its status alone.
            "header Response :status",
            // The worker's last open stream ended: its counts go to Envoy (under load
            // the tick does this, once a second).
            "increment_metric 1",
        ]
    );
}

#[test]
fn with_no_tables_a_push_is_decided_on_its_headers_in_four_hostcalls() {
    let calls = one_push(&config(
        r#", "timestamp_tolerance_seconds": 0, "dedupe_seconds": 0, "park": {"max_messages": 0}"#,
    ));
    assert_eq!(
        calls,
        [
            "header_map Request",
            "property source.address",
            "set_header Request x-wechat-gate-verified",
            "header Response :status",
            "increment_metric 1",
        ]
    );
}

/// A safe-mode push of a text message, sealed as WeChat does: its query and body.
fn sealed(nonce: &str) -> (String, Vec<u8>) {
    use gate::safe_mode::{cipher, envelope};
    use gate::signature::{as_str, sign};
    let key = cipher::AesKey::from_encoding_aes_key(AES_KEY).expect("a key");
    let encrypt = cipher::encrypt(&key, "wx1234", super::message(7).as_bytes(), &[3; 16]);
    let ts = super::NOW.to_string();
    let msg_signature = as_str(&sign(&[super::TOKEN, &ts, nonce, &encrypt])).to_string();
    let query = super::signed_query(
        nonce,
        &[("encrypt_type", "aes"), ("msg_signature", &msg_signature)],
    );
    (
        query,
        envelope::push_body(Some("gh_1"), &encrypt).into_bytes(),
    )
}

const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

#[test]
fn a_decrypted_safe_mode_push_costs_its_new_body_and_the_headers_that_say_so() {
    let mut gate = warm(&config(&format!(
        r#", "safe_mode": {{"encoding_aes_key": "{AES_KEY}", "decrypt": true}}"#
    )));
    let (query, body) = sealed("safe-1");
    let length = body.len().to_string();
    let id = gate.open(&[
        (":method", "POST"),
        (":path", &format!("/wechat?{query}")),
        ("content-type", "text/xml"),
        ("content-length", &length),
    ]);
    gate.host.stream(id).request_body = body;
    assert_eq!(
        hostcalls_of(&mut gate, id),
        [
            "header_map Request",
            "property source.address",
            "body Request",
            "get_shared wechat_gate.replay.v3.N",
            "set_shared wechat_gate.replay.v3.N (24 bytes)",
            "get_shared wechat_gate.dedupe.v4.N",
            "set_shared wechat_gate.dedupe.v4.N (24 bytes)",
            // Held, the headers wait for the body: its new length is set with it (no
            // removal first), and the path loses encrypt_type and msg_signature.
            "set_header Request content-length",
            "replace_body Request",
            "set_header Request :path",
            "set_header Request x-wechat-gate-verified",
            "set_header Request x-wechat-gate-openid",
            "set_header Request x-wechat-gate-decrypted",
            "header Response :status",
            // The backend's reply may be sealed, so it goes on chunked.
            "remove_header Response content-length",
            "increment_metric 1",
            "increment_metric 3",
        ]
    );
}

/// Many pushes, for a profiler (`valgrind --tool=callgrind` on the test binary with
/// `--ignored profile_pushes`; the fake host's own work shows apart): not a test of
/// anything.
#[test]
#[ignore]
fn profile_pushes() {
    let mut gate = Gate::configured(&config(""));
    gate.learn_hold_mode();
    gate.tick();
    for _ in 0..20_000 {
        let (id, _) = gate.push();
        gate.request_body(id);
        gate.host.stream(id).response_headers = vec![(":status".into(), "200".into())];
        gate.response_headers(id, false);
        gate.end(id);
        gate.host.state().streams.remove(&id);
        let _ = gate.host.take_hostcalls();
    }
}
