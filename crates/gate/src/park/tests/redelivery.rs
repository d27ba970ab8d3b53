//! Redelivery: one worker at a time, oldest first, each try marked, with backoff,
//! until a 2xx or `max_seconds`; nothing lost or taken twice when a lease runs out
//! or a write meets another worker's.

use super::*;
use redeliver::{FIRST_BACKOFF_MS, MAX_BACKOFF_MS};

#[test]
fn pushes_are_redelivered_oldest_first_each_marked_and_forgotten_on_a_2xx() {
    let area = area();
    let mut store = Store::default();
    for n in 0..3 {
        park(&area, n, T0 + u64::from(n), &mut store);
    }
    let mut r = Redeliverer::new(1);
    let early = r.on_tick(&area, T0 + 999, &mut store);
    assert!(
        calls(&early).is_empty(),
        "the first try comes about a second after parking"
    );
    assert_eq!(gauge(&early), Some(3));
    let tick = r.on_tick(&area, T0 + 1_000, &mut store);
    assert_eq!(the_call(&tick), (body(0), "1".into()));
    let second = reply(
        &mut r,
        &area,
        Answer::Status(204),
        T0 + 1_010,
        500,
        &mut store,
    );
    assert_eq!(counted(&second, Counter::Redelivered), 1);
    assert_eq!(the_call(&second), (body(1), "1".into()), "the next at once");
    let third = reply(
        &mut r,
        &area,
        Answer::Status(200),
        T0 + 1_020,
        500,
        &mut store,
    );
    assert_eq!(the_call(&third), (body(2), "1".into()));
    let last = reply(
        &mut r,
        &area,
        Answer::Status(200),
        T0 + 1_030,
        500,
        &mut store,
    );
    assert!(calls(&last).is_empty());
    assert_eq!(gauge(&last), Some(0));
    assert_eq!(store.index(&area).count(), 0);
    assert!(store.parked(&area).is_empty());
    for seq in 0..3 {
        assert!(
            store.get(&area.slot_key(seq, 10)).is_empty(),
            "slot {seq} emptied"
        );
    }
    // Forgotten: nothing more, however long one waits.
    assert!(calls(&r.on_tick(&area, T0 + 100_000, &mut store)).is_empty());
}

#[test]
fn a_redelivery_goes_to_the_pushs_route_as_the_backend_would_have_had_it() {
    let area = area();
    let mut store = Store::default();
    park(&area, 7, T0, &mut store);
    let effects = Redeliverer::new(1).on_tick(&area, T0 + 1_000, &mut store);
    let call = calls(&effects)[0];
    assert_eq!(call.cluster, "backend");
    assert_eq!(call.timeout_ms, CALL_TIMEOUT_MS);
    assert_eq!(text(&call.body), body(7));
    let expected: Vec<(String, String)> = [
        (":method", "POST"),
        (
            ":path",
            "/wechat?signature=s&timestamp=1&nonce=7&openid=o_1",
        ),
        (":authority", "app.example"),
        ("content-type", "text/xml"),
        ("x-wechat-gate-verified", "1"),
        ("x-wechat-gate-openid", "o_1"),
        ("content-length", &body(7).len().to_string()),
        (REDELIVERED_HEADER, "1"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(call.headers, expected);
}

#[test]
fn a_5xx_or_no_answer_is_tried_again_later_marked_with_its_try() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    let mut r = Redeliverer::new(1);
    let mut now = T0 + 1_000;
    assert_eq!(the_call(&r.on_tick(&area, now, &mut store)).1, "1");
    for (attempt, answer) in [
        (2, Answer::Status(503)),
        (3, Answer::Failed),
        (4, Answer::Status(404)),
    ] {
        let failed = reply(&mut r, &area, answer, now, 500, &mut store);
        assert!(calls(&failed).is_empty());
        assert!(matches!(notes(&failed)[..], [Note::TryFailed { .. }]));
        let wait = backoff_ms(attempt - 1, 500);
        assert!(
            calls(&r.on_tick(&area, now + wait - 1, &mut store)).is_empty(),
            "not before"
        );
        now += wait;
        assert_eq!(
            the_call(&r.on_tick(&area, now, &mut store)),
            (body(0), attempt.to_string())
        );
    }
    assert_eq!(store.parked(&area), [body(0)], "kept until a 2xx");
    reply(&mut r, &area, Answer::Status(200), now, 500, &mut store);
    assert!(store.parked(&area).is_empty());
}

#[test]
fn backoff_doubles_from_about_a_second_to_about_thirty_with_jitter() {
    let mid: Vec<u64> = (1..=8).map(|t| backoff_ms(t, 500)).collect();
    assert_eq!(
        mid,
        [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
    );
    assert_eq!(backoff_ms(u32::MAX, 500), MAX_BACKOFF_MS);
    assert_eq!(
        (backoff_ms(1, 0), backoff_ms(1, 1000)),
        (800, 1_200),
        "±20 %"
    );
    assert_eq!((backoff_ms(9, 0), backoff_ms(9, 1000)), (24_000, 36_000));
    assert_eq!(backoff_ms(1, u32::MAX), 1_200, "jitter past 1000 is 1000");
    // Through the machine: the waits grow, each within its jitter, never past 36 s.
    let area = Area::new(ACCOUNT, limits(10, 1 << 20, 86_400));
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    let mut r = Redeliverer::new(1);
    let (mut now, mut waits) = (T0 + FIRST_BACKOFF_MS, Vec::new());
    assert_eq!(calls(&r.on_tick(&area, now, &mut store)).len(), 1);
    for (i, jitter) in [0, 1000, 250, 750, 0, 1000, 0, 1000]
        .into_iter()
        .enumerate()
    {
        reply(&mut r, &area, Answer::Failed, now, jitter, &mut store);
        let slot = record::Slot::decode(&store.get(&area.slot_key(0, 10)));
        let wait = slot.holds(0).expect("parked").next_try_ms - now;
        waits.push(wait);
        let nominal = (FIRST_BACKOFF_MS << i).min(MAX_BACKOFF_MS);
        assert!(
            wait * 10 >= nominal * 8 && wait * 10 <= nominal * 12,
            "try {}: {wait} ms",
            i + 2
        );
        assert!(
            calls(&r.on_tick(&area, now + wait - 1, &mut store)).is_empty(),
            "not before"
        );
        now += wait;
        assert_eq!(calls(&r.on_tick(&area, now, &mut store)).len(), 1);
    }
    assert!(waits.windows(2).take(4).all(|w| w[1] > w[0]), "{waits:?}");
}

#[test]
fn a_try_whose_answer_never_comes_is_tried_again_after_the_lease() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    let mut r = Redeliverer::new(1);
    assert_eq!(the_call(&r.on_tick(&area, T0 + 1_000, &mut store)).1, "1");
    assert_eq!(r.waiting_for(), Some(TryId { seq: 0, attempt: 1 }));
    assert!(r
        .on_tick(&area, T0 + 1_000 + LEASE_MS - 1, &mut store)
        .is_empty());
    let again = r.on_tick(&area, T0 + 1_000 + LEASE_MS, &mut store);
    assert_eq!(the_call(&again), (body(0), "2".into()));
}

#[test]
fn a_push_parked_max_seconds_ago_is_dropped_counted_and_logged_once_per_burst() {
    let area = Area::new(ACCOUNT, limits(10, 1 << 20, 60));
    let mut store = Store::default();
    for n in 0..3 {
        park(&area, n, T0, &mut store);
    }
    let mut r = Redeliverer::new(1);
    let tick = r.on_tick(&area, T0 + 1_000, &mut store);
    assert_eq!(the_call(&tick).0, body(0));
    reply(
        &mut r,
        &area,
        Answer::Status(502),
        T0 + 1_000,
        500,
        &mut store,
    );
    // Due to be tried again after max_seconds: dropped instead, all three at once.
    let late = r.on_tick(&area, T0 + 60_000, &mut store);
    assert!(calls(&late).is_empty());
    assert_eq!(counted(&late, Counter::ParkExpired), 3);
    assert_eq!(
        notes(&late),
        [&Note::Expired {
            max_seconds: 60,
            tries: 1
        }]
    );
    assert_eq!(gauge(&late), Some(0));
    assert!(store.parked(&area).is_empty());
    assert!((0..3).all(|seq| store.get(&area.slot_key(seq, 10)).is_empty()));
    // The next burst is said once more, but not before a push got through.
    park(&area, 3, T0 + 60_000, &mut store);
    let dropped = r.on_tick(&area, T0 + 120_000, &mut store);
    assert_eq!(
        (
            counted(&dropped, Counter::ParkExpired),
            notes(&dropped).len()
        ),
        (1, 0)
    );
    park(&area, 4, T0 + 120_000, &mut store);
    assert_eq!(drain(&area, &mut r, T0 + 121_000, &mut store), [body(4)]);
    park(&area, 5, T0 + 121_000, &mut store);
    let dropped = r.on_tick(&area, T0 + 181_000, &mut store);
    assert_eq!(
        (
            counted(&dropped, Counter::ParkExpired),
            notes(&dropped).len()
        ),
        (1, 1)
    );
}

#[test]
fn a_lease_held_by_another_worker_keeps_this_one_out_until_it_runs_out() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    park(&area, 1, T0, &mut store);
    let (mut a, mut b) = (Redeliverer::new(1), Redeliverer::new(2));
    assert_eq!(
        the_call(&a.on_tick(&area, T0 + 1_000, &mut store)).0,
        body(0)
    );
    for at in [T0 + 1_000, T0 + 5_000, T0 + 1_000 + LEASE_MS - 1] {
        let tick = b.on_tick(&area, at, &mut store);
        assert!(calls(&tick).is_empty(), "at {at}");
        assert_eq!(gauge(&tick), Some(2), "every worker keeps the gauge");
    }
    assert_eq!(store.lease(&area).holder, 1);
    // A vanished (its VM was replaced): once the lease runs out, B takes over.
    let taken = b.on_tick(&area, T0 + 1_000 + LEASE_MS, &mut store);
    assert_eq!(the_call(&taken), (body(0), "2".into()));
    assert_eq!(store.lease(&area).holder, 2);
}

#[test]
fn a_lease_lost_mid_redelivery_loses_nothing_and_takes_nothing_twice() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    park(&area, 1, T0, &mut store);
    let (mut a, mut b) = (Redeliverer::new(1), Redeliverer::new(2));
    let start = T0 + 1_000;
    assert_eq!(the_call(&a.on_tick(&area, start, &mut store)).0, body(0));
    // A's call is slow: its lease runs out, B tries push 0 again and gets a 2xx,
    // then moves on to push 1.
    let over = start + LEASE_MS;
    assert_eq!(
        the_call(&b.on_tick(&area, over, &mut store)),
        (body(0), "2".into())
    );
    let next = reply(&mut b, &area, Answer::Status(200), over, 500, &mut store);
    assert_eq!(the_call(&next).0, body(1));
    // A's answer for push 0 comes last: push 0 is gone already, push 1 is left
    // alone, whether A heard a 2xx or a failure.
    let (lease, slot_1) = (
        store.get(&area.lease_key()),
        store.get(&area.slot_key(1, 10)),
    );
    for answer in [Answer::Status(200), Answer::Failed] {
        let mut a = a.clone();
        let late = reply(&mut a, &area, answer, over + 1, 500, &mut store);
        assert_eq!(counted(&late, Counter::Redelivered), 0, "{late:?}");
        assert!(calls(&late).is_empty());
        assert_eq!(store.parked(&area), [body(1)]);
        assert_eq!(store.get(&area.lease_key()), lease, "B keeps the lease");
        assert_eq!(
            store.get(&area.slot_key(1, 10)),
            slot_1,
            "push 1's schedule"
        );
    }
    reply(
        &mut b,
        &area,
        Answer::Status(200),
        over + 3,
        500,
        &mut store,
    );
    assert!(store.parked(&area).is_empty());
    assert_eq!(store.index(&area).count(), 0);
}

#[test]
fn an_answer_to_a_try_given_up_already_is_not_taken_for_the_next() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    let mut r = Redeliverer::new(1);
    let first = r.on_tick(&area, T0 + 1_000, &mut store);
    let first = calls(&first)[0].id;
    // No answer within the lease: tried again.
    let again = r.on_tick(&area, T0 + 1_000 + LEASE_MS, &mut store);
    let second = calls(&again)[0].id;
    assert_eq!((first.attempt, second.attempt), (1, 2));
    // The first try's 2xx comes now: the push is not forgotten on its word alone...
    let stale = r.on_answer(
        &area,
        first,
        Answer::Status(200),
        T0 + 12_000,
        500,
        &mut store,
    );
    assert!(stale.is_empty());
    assert_eq!(r.waiting_for(), Some(second));
    // ...the second try's answer counts.
    let done = r.on_answer(
        &area,
        second,
        Answer::Status(200),
        T0 + 12_001,
        500,
        &mut store,
    );
    assert_eq!(counted(&done, Counter::Redelivered), 1);
    assert!(store.parked(&area).is_empty());
}

#[test]
fn a_forget_that_meets_another_workers_parking_keeps_both_right() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    let mut r = Redeliverer::new(1);
    assert_eq!(
        the_call(&r.on_tick(&area, T0 + 1_000, &mut store)).0,
        body(0)
    );
    // Between the redeliverer's read of the index and its write, a worker parks.
    let other = area.clone();
    store.interlope(&area.index_key(), move |s| park(&other, 9, T0 + 1_001, s));
    let after = reply(
        &mut r,
        &area,
        Answer::Status(200),
        T0 + 2_001,
        500,
        &mut store,
    );
    assert_eq!(counted(&after, Counter::Redelivered), 1);
    assert_eq!(store.parked(&area), [body(9)]);
    assert_eq!(
        the_call(&after).0,
        body(9),
        "the new one, due already, goes next"
    );
    let index = store.index(&area);
    assert_eq!((index.head, index.tail), (1, 2));
}

#[test]
fn an_unreadable_parked_value_is_dropped_and_counted_after_a_grace() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    park(&area, 1, T0, &mut store);
    store.put(&area.slot_key(0, 10), b"WP\x01 damaged".to_vec());
    let mut r = Redeliverer::new(1);
    assert!(calls(&r.on_tick(&area, T0 + 1_000, &mut store)).is_empty());
    let later = r.on_tick(&area, T0 + 1_000 + GIVE_UP_AFTER_MS, &mut store);
    assert_eq!(counted(&later, Counter::ParkExpired), 1);
    assert_eq!(notes(&later), [&Note::Unreadable { seq: 0 }]);
    assert_eq!(the_call(&later).0, body(1));
}

#[test]
fn a_place_written_within_the_grace_is_delivered_not_given_up() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    let value = store.get(&area.slot_key(0, 10));
    store.put(&area.slot_key(0, 10), Vec::new()); // reserved, not written yet
    let mut r = Redeliverer::new(1);
    assert!(calls(&r.on_tick(&area, T0 + 1_000, &mut store)).is_empty());
    store.put(&area.slot_key(0, 10), value); // the parker writes it
    let later = r.on_tick(&area, T0 + 1_000 + GIVE_UP_AFTER_MS, &mut store);
    assert_eq!(the_call(&later).0, body(0));
}

#[test]
fn an_empty_area_costs_a_tick_two_reads_and_no_write() {
    let area = area();
    let mut store = Store::default();
    let tick = Redeliverer::new(1).on_tick(&area, T0, &mut store);
    assert_eq!(tick, [Effect::Set(Gauge::ParkedNow, 0)]);
    assert!(store.writes.is_empty());
    // An answer with no try out changes nothing either.
    let id = TryId { seq: 0, attempt: 1 };
    assert!(Redeliverer::new(1)
        .on_answer(&area, id, Answer::Status(200), T0, 0, &mut store)
        .is_empty());
}

#[test]
fn a_waiting_push_lets_the_other_workers_skip_the_lease() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    let mut r = Redeliverer::new(1);
    r.on_tick(&area, T0 + 1_000, &mut store);
    reply(&mut r, &area, Answer::Failed, T0 + 1_000, 500, &mut store);
    let lease = store.lease(&area);
    assert_eq!((lease.holder, lease.not_before_ms), (0, T0 + 2_000));
    let writes = store.writes.len();
    for w in 2..6 {
        Redeliverer::new(w).on_tick(&area, T0 + 1_500, &mut store);
    }
    assert_eq!(store.writes.len(), writes, "nothing due: no worker writes");
}

#[test]
fn a_worker_that_finds_nothing_due_leaves_the_lease_to_whoever_comes_when_it_is() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    let early = Redeliverer::new(1).on_tick(&area, T0 + 500, &mut store);
    assert!(calls(&early).is_empty());
    let lease = store.lease(&area);
    assert_eq!((lease.holder, lease.not_before_ms), (0, T0 + 1_000));
    let due = Redeliverer::new(2).on_tick(&area, T0 + 1_000, &mut store);
    assert_eq!(the_call(&due).0, body(0));
}

#[test]
fn a_place_never_written_is_given_up_even_when_workers_take_turns() {
    let area = area();
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    park(&area, 1, T0, &mut store);
    store.put(&area.slot_key(0, 10), Vec::new()); // reserved, never written
    let (mut a, mut b) = (Redeliverer::new(1), Redeliverer::new(2));
    let t = T0 + 1_000;
    assert!(calls(&a.on_tick(&area, t, &mut store)).is_empty());
    // B comes first when the wait is over: A, which began it, still holds the lease.
    assert!(calls(&b.on_tick(&area, t + GIVE_UP_AFTER_MS, &mut store)).is_empty());
    let given_up = a.on_tick(&area, t + GIVE_UP_AFTER_MS, &mut store);
    assert_eq!(the_call(&given_up).0, body(1));
}
