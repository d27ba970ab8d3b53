//! Parking through the host: a push Envoy could not deliver is answered `success`,
//! parked in shared data from the HTTP context, and redelivered from the root
//! context's tick as a call to the route's cluster, marked; a 2xx answer forgets it.
//! (Parking's rules are the core's: `gate::park`.)

use super::{config, Gate, ACCOUNT};
use gate::metrics::Counter;
use std::time::Duration;

#[test]
fn a_push_envoy_failed_is_parked_and_redelivered_from_the_tick() {
    let mut gate = Gate::configured(&config(""));
    gate.learn_hold_mode();
    let (id, _) = gate.push();
    gate.request_body(id);
    {
        let mut stream = gate.host.stream(id);
        stream.response_headers = vec![(":status".into(), "503".into())];
        let failed = b"upstream_reset_before_response_started{connection_failure}";
        stream
            .properties
            .insert("response.code_details".into(), failed.to_vec());
        stream
            .properties
            .insert("xds.cluster_name".into(), b"backend".to_vec());
    }
    gate.host.enter(id);
    gate.response_headers(id, true);
    let status = gate.host.stream(id).response_headers.clone();
    assert!(
        status.contains(&(":status".into(), "200".into())),
        "{status:?}"
    );
    gate.end(id);
    assert_eq!(gate.host.metric(&Counter::Parked.name(ACCOUNT)), 1);

    // Not before its first try is due; then one call, to the route's cluster, marked.
    gate.tick();
    assert!(gate.host.state().calls.is_empty());
    gate.host.advance(Duration::from_millis(1_100));
    gate.tick();
    let call = gate.answer_last_call(200, "success");
    assert_eq!(call.cluster, "backend");
    let header = |name: &str| {
        call.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-wechat-gate-redelivered").as_deref(), Some("1"));
    assert_eq!(header("x-wechat-gate-verified").as_deref(), Some("1"));
    assert!(header(":path").is_some_and(|p| p.starts_with("/wechat?signature=")));
    assert!(call
        .body
        .as_deref()
        .is_some_and(|b| b.starts_with(b"<xml>")));
    gate.tick();
    assert_eq!(gate.host.metric(&Counter::Redelivered.name(ACCOUNT)), 1);
    // Forgotten: nothing more goes out.
    gate.host.advance(Duration::from_secs(60));
    gate.tick();
    assert_eq!(gate.host.state().calls.len(), 1);
}
