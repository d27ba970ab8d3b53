//! One tick answers a bounded number of held pushes (each local reply from the tick
//! nests the host's queue one level deeper: hundreds at once killed V8) and looks at
//! a bounded number of probed ones; the rest are answered on the fast ticks that
//! follow.

use super::{config, past_the_deadline, Gate};
use gate::body::{ANSWERS_PER_TICK, PROBES_PER_TICK};
use std::time::Duration;

const FAST: Option<Duration> = Some(Duration::from_millis(10));
const SLOW: Option<Duration> = Some(Duration::from_secs(1));

#[test]
fn a_tick_answers_at_most_answers_per_tick_late_pushes_and_the_rest_on_fast_ticks() {
    let mut gate = Gate::configured(&config(""));
    gate.learn_hold_mode();
    let held = ANSWERS_PER_TICK + 4;
    let ids: Vec<u32> = (0..held).map(|_| gate.push().0).collect();
    gate.host.advance(past_the_deadline());

    gate.tick();
    let answered = gate.host.replies();
    assert_eq!(answered.len(), ANSWERS_PER_TICK);
    assert!(answered.iter().all(|(_, status)| *status == 408));
    assert_eq!(gate.tick_period(), FAST, "more are due");

    gate.tick();
    let answered: Vec<u32> = gate.host.replies().iter().map(|(id, _)| *id).collect();
    assert_eq!(answered, ids, "each once, oldest first");
    assert_eq!(gate.tick_period(), SLOW);
}

#[test]
fn probed_pushes_let_go_share_the_ticks_budget() {
    let mut gate = Gate::configured(&config(""));
    let probed = ANSWERS_PER_TICK + 4;
    let ids: Vec<u32> = (0..probed).map(|_| gate.push().0).collect();
    assert_eq!(gate.tick_period(), FAST, "probing");
    for id in &ids {
        gate.body_kept_by_host(*id);
    }

    gate.tick();
    assert_eq!(gate.host.resumed().len(), ANSWERS_PER_TICK);
    assert_eq!(gate.tick_period(), FAST);

    gate.tick();
    assert_eq!(gate.host.resumed(), ids);
    assert!(gate.host.replies().is_empty());
}

#[test]
fn a_tick_looks_at_most_at_probes_per_tick_probed_pushes() {
    let mut gate = Gate::configured(&config(""));
    let ids: Vec<u32> = (0..PROBES_PER_TICK + 6).map(|_| gate.push().0).collect();
    // Only the last six, beyond one tick's look, have had their body kept back.
    let beyond = &ids[PROBES_PER_TICK..];
    for id in beyond {
        gate.body_kept_by_host(*id);
    }

    gate.tick();
    assert!(gate.host.resumed().is_empty(), "not looked at yet");
    assert_eq!(gate.tick_period(), FAST);

    gate.tick();
    assert_eq!(gate.host.resumed(), beyond);
}
