//! What one push costs the host: the hostcalls a verified push makes with the
//! defaults, counted (each is a crossing out of the VM, and each that returns data a
//! second crossing back into its allocator: `bench/results.md`, "Where a push's time
//! goes").

use super::{config, Gate};
use crate::host::fake::FakeHost;
use gate::exchange::Flow;

/// A push forwarded and answered `200` by the backend, with the worker past its
/// first tick and settled in hold mode: the hostcalls of that push alone.
fn one_push(json: &str) -> Vec<String> {
    let mut gate = Gate::configured(json);
    gate.learn_hold_mode();
    gate.tick();
    let _ = gate.host.take_hostcalls();
    let (id, flow) = gate.push();
    assert_eq!(flow, Flow::Pause);
    assert_eq!(gate.request_body(id), Flow::Continue);
    gate.host.stream(id).response_headers = vec![(":status".into(), "200".into())];
    assert_eq!(gate.response_headers(id, false), Flow::Continue);
    gate.end(id);
    gate.host.take_hostcalls()
}

#[test]
fn print_a_default_push() {
    let calls = one_push(&config(""));
    eprintln!("{calls:#?}");
    let _ = FakeHost::at(0);
}

/// Many pushes, for a profiler (`valgrind --tool=callgrind` on the test binary with
/// `--ignored profile_pushes`): not a test of anything.
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
