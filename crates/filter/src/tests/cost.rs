//! What one push costs the host: the hostcalls a verified push makes with the
//! defaults, counted (each is a crossing out of the VM, and each that returns data a
//! second crossing back into its allocator: `bench/results.md`, "Where a push's time
//! goes").

use super::{config, Gate};
use crate::dedupe::shard_key;
use crate::host::Host;
use gate::exchange::Flow;
use gate::tables::Table;

/// A push forwarded and answered `200` by the backend, with the worker past its
/// first tick, settled in hold mode, and every table shard already in shared data
/// (a shard's first use seeds it, once per process): the hostcalls of that push.
fn one_push(json: &str) -> Vec<String> {
    let mut gate = Gate::configured(json);
    gate.learn_hold_mode();
    gate.tick();
    for table in [Table::Retry, Table::Replay] {
        for shard in 0..table.shape().shards {
            let _ = gate.host.set_shared(&shard_key(table, shard), b"", None);
        }
    }
    let _ = gate.host.take_hostcalls();
    // Paused for its body when the gate reads it; either way Envoy hands the filter
    // the body as it passes.
    let (id, _) = gate.push();
    assert_eq!(gate.request_body(id), Flow::Continue);
    gate.host.stream(id).response_headers = vec![(":status".into(), "200".into())];
    assert_eq!(gate.response_headers(id, false), Flow::Continue);
    gate.end(id);
    gate.host
        .take_hostcalls()
        .into_iter()
        .map(|call| {
            // The shard a push lands in is its own: only the table counts.
            match call.rsplit_once('.') {
                Some((table, shard)) if call.contains("_shared wechat_gate.") => {
                    let size = shard.split_once(' ').map_or("", |(_, size)| size);
                    format!("{table}.N {size}").trim_end().to_string()
                }
                _ => call,
            }
        })
        .collect()
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
