//! A count is not a hostcall: a worker hands Envoy its counts from the tick (at
//! least once a second, however busy it is) and when its last open stream ends.

use super::{Gate, ACCOUNT, NOW};
use gate::metrics::Counter;
use gate::rejection::Reason;

fn rejected_for_signature() -> String {
    Counter::Rejected(Reason::Signature).name(ACCOUNT)
}

/// A handshake signed with the wrong token: refused 401 and counted.
fn forged(gate: &mut Gate) -> u32 {
    let path = format!("/wechat?signature=0000&timestamp={NOW}&nonce=1&echostr=e");
    let id = gate.open(&[(":method", "GET"), (":path", &path)]);
    gate.request_headers(id, true);
    assert_eq!(gate.replies(id), [401]);
    id
}

#[test]
fn a_busy_workers_counts_reach_envoy_from_the_tick() {
    let mut gate = Gate::configured(&super::config(""));
    let _still_open = gate.open(&[(":method", "GET"), (":path", "/elsewhere")]);
    let id = forged(&mut gate);
    gate.end(id);
    assert_eq!(gate.host.metric(&rejected_for_signature()), 0, "not yet");
    gate.tick();
    assert_eq!(gate.host.metric(&rejected_for_signature()), 1);
    gate.tick();
    assert_eq!(
        gate.host.metric(&rejected_for_signature()),
        1,
        "handed once"
    );
}

#[test]
fn a_quiet_workers_counts_reach_envoy_when_its_last_stream_ends() {
    let mut gate = Gate::configured(&super::config(""));
    let id = forged(&mut gate);
    assert_eq!(gate.host.metric(&rejected_for_signature()), 0, "still open");
    gate.end(id);
    assert_eq!(gate.host.metric(&rejected_for_signature()), 1);
}
