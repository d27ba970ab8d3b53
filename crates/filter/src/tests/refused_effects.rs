//! A change to the request that the host refuses ends in a refusal, never in a
//! request forwarded half changed.

use super::{config, Gate};
use gate::exchange::Flow;

#[test]
fn a_held_push_whose_gate_header_cannot_be_set_is_refused_not_forwarded() {
    let mut gate = Gate::configured(&config(""));
    let (id, flow) = gate.push_where(|s| s.refuse_request_header_writes = true);
    assert_eq!(flow, Flow::Pause, "held while its body is read");
    assert_eq!(gate.request_body(id), Flow::Pause);
    assert_eq!(gate.replies(id), [400]);
    assert!(gate.host.resumed().is_empty());
    assert_eq!(gate.host.logged("the gate's headers could not be set"), 1);
}

#[test]
fn a_streamed_push_whose_gate_header_cannot_be_set_is_refused_not_forwarded() {
    let mut gate = Gate::configured(&config(""));
    // The host keeps a first push's body back: the worker streams from then on.
    let (first, _) = gate.push();
    gate.body_kept_by_host(first);
    gate.tick();
    assert_eq!(gate.host.resumed(), [first]);
    let (id, flow) = gate.push_where(|s| s.refuse_request_header_writes = true);
    assert_eq!(flow, Flow::Pause, "its headers never go on");
    assert_eq!(gate.replies(id), [400]);
    assert_eq!(gate.host.resumed(), [first]);
}

#[test]
fn a_client_sent_gate_header_that_cannot_be_removed_is_refused() {
    let mut gate = Gate::configured(&config(""));
    let (id, _) = gate.push_where(|s| {
        let forged = ("x-wechat-gate-verified".to_string(), "1".to_string());
        s.request_headers.push(forged);
        s.refuse_request_header_writes = true;
    });
    assert_eq!(gate.request_body(id), Flow::Pause);
    assert_eq!(gate.replies(id), [400]);
    assert!(gate.host.resumed().is_empty());
    assert_eq!(
        gate.host
            .logged("a client-sent header could not be removed"),
        1
    );
}

#[test]
fn the_same_push_with_a_host_that_accepts_goes_on_with_the_gates_header() {
    let mut gate = Gate::configured(&config(""));
    let (id, _) = gate.push();
    assert_eq!(gate.request_body(id), Flow::Continue);
    assert!(gate.replies(id).is_empty());
    let stream = gate.host.stream(id);
    let verified = ("x-wechat-gate-verified".to_string(), "1".to_string());
    assert!(stream.request_headers.contains(&verified));
}
