//! A held push whose body does not come is answered 408 no sooner than
//! `BODY_DEADLINE_MS` after it was held, and no later than one tick period after
//! that, whenever it was held: a deadline is reckoned from the last tick's clock
//! (`Worker::deadline_after`), which is only right while the next tick is known to
//! come one period after it. The tests tick as Envoy does: one period after the
//! last tick, or after the period was last set when that was outside a tick (Envoy
//! starts a new timer then).

use super::{config, Gate};
use gate::body::BODY_DEADLINE_MS;
use gate::exchange::Flow;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn now_ms(gate: &Gate) -> u64 {
    u64::try_from(gate.host.state().now.as_millis()).expect("ms")
}

/// A worker and when Envoy will next tick it (ms of the fake host's clock).
struct Ticking {
    gate: Gate,
    next_tick: u64,
    period: Duration,
}

impl Ticking {
    fn new(gate: Gate) -> Ticking {
        let period = gate.tick_period().expect("ticking");
        let next_tick = now_ms(&gate) + u64::try_from(period.as_millis()).expect("ms");
        Ticking {
            gate,
            next_tick,
            period,
        }
    }

    /// Something outside a tick may have set another period: Envoy's timer starts
    /// afresh from now.
    fn follow_the_period(&mut self) {
        let period = self.gate.tick_period().expect("ticking");
        if period != self.period {
            self.period = period;
            self.next_tick = now_ms(&self.gate) + u64::try_from(period.as_millis()).expect("ms");
        }
    }

    /// The next tick, on time.
    fn tick(&mut self) {
        let now = now_ms(&self.gate);
        self.gate.host.advance(ms(self.next_tick - now));
        self.gate.tick();
        self.period = self.gate.tick_period().expect("ticking");
        self.next_tick += u64::try_from(self.period.as_millis()).expect("ms");
    }

    /// Moves the clock on by `by`, ticking on time on the way.
    fn wait(&mut self, by: u64) {
        let until = now_ms(&self.gate) + by;
        while self.next_tick <= until {
            self.tick();
        }
        let now = now_ms(&self.gate);
        self.gate.host.advance(ms(until - now));
    }

    /// A push whose body never comes: when it was held, and its id.
    fn push(&mut self) -> (u64, u32) {
        let held = now_ms(&self.gate);
        let (id, flow) = self.gate.push();
        assert_eq!(flow, Flow::Pause);
        self.follow_the_period();
        (held, id)
    }

    /// Ticks on until `id` is answered: after how long since `held`. It must not be
    /// answered before its deadline, nor more than a second after it.
    fn answered_after(&mut self, id: u32, held: u64) -> u64 {
        while now_ms(&self.gate) < held + BODY_DEADLINE_MS + 1000 {
            self.tick();
            let after = now_ms(&self.gate) - held;
            if !self.gate.replies(id).is_empty() {
                assert_eq!(self.gate.replies(id), [408]);
                assert!(
                    after >= BODY_DEADLINE_MS,
                    "answered {after} ms after it was held (deadline {BODY_DEADLINE_MS} ms)"
                );
                return after;
            }
        }
        panic!("not answered a second after its deadline");
    }
}

#[test]
fn a_probed_push_held_late_in_a_slow_tick_waits_its_whole_deadline() {
    // A worker that has not learnt its host's body mode probes a push: the tick goes
    // from 1 s to 10 ms when the push comes, 900 ms after the last tick.
    let mut gate = Gate::configured(&config(""));
    gate.tick();
    let mut t = Ticking::new(gate);
    assert_eq!(t.period, ms(1000));
    t.wait(900);
    let (held, id) = t.push();
    assert_eq!(t.period, ms(10), "probing");
    t.answered_after(id, held);
}

#[test]
fn a_held_push_waits_its_whole_deadline_wherever_it_falls_between_ticks() {
    for late_in_the_period in [0, 1, 500, 999] {
        let mut gate = Gate::configured(&config(""));
        gate.learn_hold_mode();
        gate.tick();
        let mut t = Ticking::new(gate);
        t.wait(late_in_the_period);
        let (held, id) = t.push();
        t.answered_after(id, held);
    }
}

#[test]
fn a_push_held_before_the_first_tick_waits_its_whole_deadline() {
    let gate = Gate::configured(&config(""));
    let mut t = Ticking::new(gate);
    t.gate.learn_hold_mode();
    t.follow_the_period();
    t.wait(700);
    let (held, id) = t.push();
    t.answered_after(id, held);
}
