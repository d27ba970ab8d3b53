//! A new configuration (`proxy_on_configure` again, as an ECDS push does) replaces
//! the configuration only: the worker's held and probed pushes, its streamed
//! pushes, what it learnt of its host's body mode and its clock go on.

use super::{config, past_the_deadline, Gate};
use gate::body::MAX_STREAMED_UNVERIFIED;
use gate::exchange::Flow;
use std::time::Duration;

/// Another configuration than [`config`]`("")`.
fn changed() -> String {
    config(r#", "timestamp_tolerance_seconds": 600, "dedupe_seconds": 30"#)
}

#[test]
fn held_pushes_are_still_answered_at_their_deadline() {
    let mut gate = Gate::configured(&config(""));
    gate.learn_hold_mode();
    let (id, _) = gate.push();
    assert!(gate.reconfigure(&changed()));
    gate.host.advance(past_the_deadline());
    gate.tick();
    assert_eq!(gate.replies(id), [408]);
}

#[test]
fn probed_pushes_are_still_let_go_when_the_host_keeps_their_body() {
    let mut gate = Gate::configured(&config(""));
    let (id, _) = gate.push();
    assert!(gate.reconfigure(&changed()));
    gate.body_kept_by_host(id);
    gate.tick();
    assert_eq!(gate.host.resumed(), [id]);
}

#[test]
fn the_learnt_body_mode_is_kept() {
    let mut gate = Gate::configured(&config(""));
    gate.learn_hold_mode();
    assert!(gate.reconfigure(&changed()));
    let (id, flow) = gate.push();
    assert_eq!(flow, Flow::Pause);
    assert_eq!(
        gate.tick_period(),
        Some(Duration::from_secs(1)),
        "held, not probed: the host is known to hand the body over"
    );
    assert_eq!(gate.request_body(id), Flow::Continue);
    assert_eq!(gate.host.logged("reads push bodies in hold mode"), 1);
}

#[test]
fn streamed_pushes_still_count_against_the_workers_cap() {
    let mut gate = Gate::configured(&config(""));
    let (first, _) = gate.push();
    gate.body_kept_by_host(first);
    gate.tick();
    let mut streamed = vec![first];
    for _ in 1..MAX_STREAMED_UNVERIFIED {
        let (id, flow) = gate.push();
        assert_eq!(flow, Flow::Continue, "streamed");
        streamed.push(id);
    }
    assert!(gate.reconfigure(&changed()));
    let (id, flow) = gate.push();
    assert_eq!(flow, Flow::Pause, "one more waits on its headers");
    assert!(gate.replies(id).is_empty());
    // One streamed push ends: there is room for one more.
    gate.end(streamed[0]);
    assert_eq!(gate.push().1, Flow::Continue);
}

#[test]
fn the_clock_of_the_last_tick_is_kept() {
    let mut gate = Gate::configured(&config(""));
    gate.tick();
    // The host's clock moves on past the pushes' tolerance; no tick has run since.
    gate.host.advance(Duration::from_secs(1000));
    assert!(gate.reconfigure(&config("")));
    let (id, _) = gate.handshake("n1");
    assert_eq!(gate.replies(id), [200], "judged at the last tick's time");
    assert_eq!(gate.host.stream(id).replies[0].body, b"echo");
    // The next tick reads the host's clock again.
    gate.tick();
    let (id, _) = gate.handshake("n2");
    assert_eq!(gate.replies(id), [401]);
}

#[test]
fn after_a_spell_in_the_api_role_the_callback_role_does_not_judge_by_its_old_clock() {
    // The API role's tick keeps no callback clock: back in the callback role, the
    // clock of its last tick is long gone.
    let mut gate = Gate::configured(&config(""));
    gate.learn_hold_mode();
    gate.tick();
    assert!(gate.reconfigure(
        r#"{"role": "api", "path": "/wechat-api/mp", "name": "mp", "appid": "wx0123456789abcdef",
            "wechat_api": {"secret": "s3cret", "upstreams": [
                {"cluster": "wechat_api", "authority": "api.weixin.qq.com"}]},
            "callers": ["10.0.0.0/8"]}"#
    ));
    for _ in 0..100 {
        gate.host.advance(Duration::from_secs(10));
        gate.tick();
    }
    assert!(gate.reconfigure(&config("")));
    // A push signed 1000 s ago (past its 300 s): stale, whatever the last tick said.
    let (id, _) = gate.push();
    assert_eq!(gate.replies(id), [401]);
}
