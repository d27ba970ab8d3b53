//! Parking a push: until the area is full, by count or by bytes; never when off;
//! concurrent parkers each get their own place; a push not parked is answered as
//! under `pass`.

use super::*;
use crate::config;

#[test]
fn pushes_are_parked_until_max_messages_then_answered_as_pass() {
    let area = Area::new(ACCOUNT, limits(3, 1 << 20, 600));
    let mut store = Store::default();
    for n in 0..3 {
        let step = area.park(parcel(n), T0, &mut store);
        assert_eq!(step.outcome, Outcome::Parked);
        assert_eq!(counted(&step.effects, Counter::Parked), 1);
        assert_eq!(gauge(&step.effects), Some(u64::from(n) + 1));
    }
    let full = area.park(parcel(3), T0, &mut store);
    assert_eq!(full.outcome, Outcome::Pass(NotParked::Full));
    assert_eq!(counted(&full.effects, Counter::ParkFull), 1);
    assert!(matches!(
        notes(&full.effects)[..],
        [Note::Full {
            parked: 3,
            max_messages: 3,
            ..
        }]
    ));
    // Counted every time, said once a burst.
    let again = area.park(parcel(4), T0, &mut store);
    assert_eq!(again.outcome, Outcome::Pass(NotParked::Full));
    assert_eq!(counted(&again.effects, Counter::ParkFull), 1);
    assert!(notes(&again.effects).is_empty());
    assert_eq!(store.parked(&area), [body(0), body(1), body(2)]);
}

#[test]
fn pushes_are_parked_until_the_byte_bound_then_answered_as_pass() {
    let len = ParkedPush::new(parcel(0), 0, ACCOUNT, T0, T0)
        .expect("fits")
        .encoded_len();
    let area = Area::new(ACCOUNT, limits(100, 2 * len + len / 2, 600));
    let mut store = Store::default();
    park(&area, 0, T0, &mut store);
    park(&area, 1, T0, &mut store);
    let full = area.park(parcel(2), T0, &mut store);
    assert_eq!(full.outcome, Outcome::Pass(NotParked::Full));
    assert_eq!(store.index(&area).bytes, 2 * len);
    // A push larger than the whole bound finds the area full too, even empty.
    let empty = Area::new("other", limits(100, len - 1, 600));
    let step = empty.park(parcel(0), T0, &mut store);
    assert_eq!(step.outcome, Outcome::Pass(NotParked::Full));
    assert_eq!(counted(&step.effects, Counter::ParkFull), 1);
    assert_eq!(store.index(&empty).count(), 0);
}

#[test]
fn parking_off_answers_as_pass_and_touches_nothing() {
    let area = Area::new(ACCOUNT, limits(0, 1 << 20, 600));
    let mut store = Store::default();
    let step = area.park(parcel(0), T0, &mut store);
    assert_eq!(step.outcome, Outcome::Pass(NotParked::Off));
    assert!(step.effects.is_empty(), "{:?}", step.effects);
    assert!(store.writes.is_empty());
}

#[test]
fn a_push_that_can_never_be_redelivered_is_answered_as_pass_and_counted() {
    let mut store = Store::default();
    let mut p = parcel(0);
    p.cluster.clear();
    let step = area().park(p, T0, &mut store);
    assert_eq!(
        step.outcome,
        Outcome::Pass(NotParked::Unfit(Unfit::NoRoute))
    );
    assert_eq!(counted(&step.effects, Counter::ParkFull), 1);
    assert_eq!(notes(&step.effects), [&Note::Unfit(Unfit::NoRoute)]);
    assert!(store.writes.is_empty());
}

#[test]
fn the_full_note_is_said_again_after_a_push_was_parked() {
    let area = Area::new(ACCOUNT, limits(1, 1 << 20, 600));
    let mut store = Store::default();
    let mut r = Redeliverer::new(1);
    park(&area, 0, T0, &mut store);
    assert_eq!(
        notes(&area.park(parcel(1), T0, &mut store).effects).len(),
        1
    );
    assert_eq!(
        notes(&area.park(parcel(2), T0, &mut store).effects).len(),
        0
    );
    let tick = r.on_tick(&area, T0 + 1_000, &mut store);
    assert_eq!(the_call(&tick).0, body(0));
    reply(
        &mut r,
        &area,
        Answer::Status(200),
        T0 + 1_100,
        500,
        &mut store,
    );
    park(&area, 3, T0 + 1_200, &mut store);
    let full = area.park(parcel(4), T0 + 1_300, &mut store);
    assert_eq!(notes(&full.effects).len(), 1, "a new burst");
}

#[test]
fn two_workers_parking_at_once_each_get_their_own_place() {
    let area = area();
    let mut store = Store::default();
    // Between this worker's read of the index and its write, another parks.
    let other = area.clone();
    store.interlope(&area.index_key(), move |s| park(&other, 100, T0, s));
    park(&area, 1, T0, &mut store);
    assert_eq!(
        store.parked(&area),
        [body(100), body(1)],
        "both, in the order they got places"
    );
    // Both are redelivered, oldest first.
    let mut r = Redeliverer::new(1);
    let tick = r.on_tick(&area, T0 + 1_000, &mut store);
    assert_eq!(the_call(&tick).0, body(100));
    let next = reply(
        &mut r,
        &area,
        Answer::Status(200),
        T0 + 1_001,
        500,
        &mut store,
    );
    assert_eq!(the_call(&next).0, body(1));
}

#[test]
fn an_index_contended_past_the_attempts_parks_nothing_and_answers_as_pass() {
    let area = area();
    let mut store = Store::default();
    for i in 0..ATTEMPTS {
        let other = area.clone();
        store.interlope(&area.index_key(), move |s| {
            park(&other, 100 + i as u32, T0, s)
        });
    }
    let step = area.park(parcel(1), T0, &mut store);
    assert_eq!(step.outcome, Outcome::Pass(NotParked::Unavailable));
    assert_eq!(notes(&step.effects), [&Note::Unavailable]);
    let parked = store.parked(&area);
    assert_eq!(
        parked.len(),
        ATTEMPTS,
        "the others' pushes, and no place left for this one"
    );
    assert!(!parked.contains(&body(1)));
    assert_eq!(store.index(&area).count(), ATTEMPTS as u64);
}

#[test]
fn a_slot_the_host_will_not_write_answers_as_pass_and_its_place_is_given_up() {
    let area = area();
    let mut store = Store::default();
    store.refused.insert(area.slot_key(0, 10));
    let step = area.park(parcel(0), T0, &mut store);
    assert_eq!(step.outcome, Outcome::Pass(NotParked::Unavailable));
    store.refused.clear();
    park(&area, 1, T0, &mut store);
    // The redeliverer waits for the reserved slot a while, then gives it up (uncounted:
    // its push was answered as under pass) and goes on with the next.
    let mut r = Redeliverer::new(1);
    let first = r.on_tick(&area, T0 + 1_000, &mut store);
    assert!(calls(&first).is_empty());
    let later = r.on_tick(&area, T0 + 1_000 + GIVE_UP_AFTER_MS, &mut store);
    assert_eq!(the_call(&later).0, body(1));
    assert_eq!(counted(&later, Counter::ParkExpired), 0);
    assert_eq!(
        record::Slot::decode(&store.get(&area.slot_key(0, 10))),
        record::Slot::GivenUp(0)
    );
}

#[test]
fn a_parker_too_late_for_its_given_up_place_answers_as_pass() {
    let area = area();
    let mut store = Store::default();
    // The parker has its place but stalls before writing it, long enough for the
    // redeliverer to look twice and give the place up.
    let redeliverer = area.clone();
    store.interlope(&area.slot_key(0, 10), move |s| {
        let mut r = Redeliverer::new(9);
        assert!(r
            .on_tick(&redeliverer, T0 + 1_000, s)
            .iter()
            .all(|e| !matches!(e, Effect::Dispatch(_))));
        r.on_tick(&redeliverer, T0 + 1_000 + GIVE_UP_AFTER_MS, s);
    });
    let step = area.park(parcel(0), T0, &mut store);
    assert_eq!(
        step.outcome,
        Outcome::Pass(NotParked::Unavailable),
        "so WeChat retries it"
    );
    assert_eq!(store.index(&area).count(), 0);
    assert!(store.parked(&area).is_empty());
}

#[test]
fn an_index_this_build_cannot_read_is_never_written_over() {
    let area = area();
    let mut store = Store::default();
    store.put(&area.index_key(), b"WI\x09 from another build".to_vec());
    let step = area.park(parcel(0), T0, &mut store);
    assert_eq!(step.outcome, Outcome::Pass(NotParked::Unavailable));
    assert_eq!(store.get(&area.index_key()), b"WI\x09 from another build");
    let tick = Redeliverer::new(1).on_tick(&area, T0 + 60_000, &mut store);
    assert!(tick.is_empty(), "{tick:?}");
    assert!(store.writes.is_empty());
}

#[test]
fn a_lower_max_messages_applies_at_once_a_higher_one_once_the_area_is_empty() {
    let small = Area::new(ACCOUNT, limits(2, 1 << 20, 600));
    let large = Area::new(ACCOUNT, limits(4, 1 << 20, 600));
    let tiny = Area::new(ACCOUNT, limits(1, 1 << 20, 600));
    let mut store = Store::default();
    park(&small, 0, T0, &mut store);
    park(&small, 1, T0, &mut store);
    // The ring was made for 2: a reconfiguration to 4 waits until it is empty.
    assert_eq!(
        large.park(parcel(2), T0, &mut store).outcome,
        Outcome::Pass(NotParked::Full)
    );
    assert_eq!(
        tiny.park(parcel(2), T0, &mut store).outcome,
        Outcome::Pass(NotParked::Full)
    );
    let mut r = Redeliverer::new(1);
    let delivered = drain(&large, &mut r, T0 + 1_000, &mut store);
    assert_eq!(delivered, [body(0), body(1)]);
    assert_eq!(store.index(&large).count(), 0);
    for n in 10..14 {
        park(&large, n, T0 + 2_000, &mut store);
    }
    assert_eq!(store.index(&large).ring, 4);
    assert_eq!(
        store.parked(&large),
        [body(10), body(11), body(12), body(13)]
    );
}

#[test]
fn the_byte_bound_is_sixty_four_bodies_within_eight_and_sixty_four_mib() {
    let bytes = |extra: &str| {
        let json = format!(r#"{{"token": "t", "source": {{"mode": "off"}}{extra}}}"#);
        Limits::of(&config::parse(json.as_bytes(), &|_| None).expect("valid")).max_bytes
    };
    assert_eq!(bytes(""), 8 << 20, "8 MiB with the default max_body_bytes");
    assert_eq!(bytes(r#", "max_body_bytes": 100"#), 8 << 20);
    assert_eq!(bytes(r#", "max_body_bytes": 262144"#), 64 * 262_144);
    assert_eq!(bytes(r#", "max_body_bytes": 500000"#), 64 * 500_000);
    assert_eq!(bytes(r#", "max_body_bytes": 10000000"#), 64 << 20);
    let json = r#"{"token": "t", "source": {"mode": "off"}, "park": {"max_messages": 9, "max_seconds": 60}}"#;
    let l = Limits::of(&config::parse(json.as_bytes(), &|_| None).expect("valid"));
    assert_eq!((l.max_messages, l.max_seconds), (9, 60));
}
