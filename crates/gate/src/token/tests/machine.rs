//! The machine driven through a fake proxy ([`super::fake`]): the lease, the list
//! shared between workers, a call given up, a day of ticks.

use super::fake::*;
use crate::metrics::{Counter, Gauge};
use crate::token::{Ask, Cas, Effect, Event, Note, Refresh, Shared, Slot, Written};
use serde_json::json;

#[test]
fn the_first_tick_takes_the_lease_and_fetches_a_token_then_the_list() {
    let mut proxy = Proxy::at(T0);
    let mut w = Worker::new(api(json!({})));
    assert_eq!(w.tick(&mut proxy), []);
    assert_eq!(proxy.state(&w.refresh).lease_until, T0 + LEASE);
    assert_eq!(
        (w.last_path().as_str(), w.last_cluster()),
        ("/cgi-bin/stable_token", "wechat_api")
    );
    let (_, call) = w.calls.last().expect("call");
    assert_eq!(call.header(":authority"), Some("api.weixin.qq.com"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    // The token fetch is counted (token_fetches, either role's).
    assert_eq!(
        w.ok(&mut proxy, TOKEN_REPLY),
        [Effect::Count(Counter::TokenFetches)]
    );
    assert_eq!(proxy.state(&w.refresh).usable_token(T0), Some(TOKEN));
    assert_eq!(
        w.last_path(),
        format!("/cgi-bin/getcallbackip?access_token={TOKEN}")
    );
    let effects = w.ok(&mut proxy, LIST_REPLY);
    let Some(Effect::Install(list)) = effects.iter().find(|e| matches!(e, Effect::Install(_)))
    else {
        panic!("no list installed: {effects:?}");
    };
    assert!(list.contains("10.0.0.7".parse().expect("ip")));
    assert!(effects.contains(&Effect::Count(Counter::RefreshOk)));
    assert!(effects.contains(&Effect::Gauge(Gauge::AllowlistEntries, 2)));
    assert!(effects.contains(&Effect::Gauge(Gauge::AllowlistLastSuccessUnix, T0 as u64)));
    let state = proxy.state(&w.refresh);
    assert_eq!((state.lease_until, state.last_success_unix), (0, T0));
    assert_eq!(
        w.notes().last().map(|n| n.to_string()),
        Some("callback IP list: 2 entries from cluster wechat_api; next refresh in 3600 s".into())
    );
}

#[test]
fn a_lease_held_by_another_worker_keeps_this_one_out_until_it_ends() {
    let mut proxy = Proxy::at(T0);
    let mut a = Worker::new(api(json!({})));
    let mut b = Worker::new(api(json!({})));
    a.tick(&mut proxy);
    for _ in 1..LEASE {
        proxy.now += 1;
        b.tick(&mut proxy);
    }
    assert!(b.calls.is_empty());
    assert!(
        !b.asked.iter().any(|a| matches!(a, Ask::Write { .. })),
        "{:?}",
        b.asked
    );
    // A lease left by a worker that never came back runs out.
    proxy.now += 1;
    b.tick(&mut proxy);
    assert_eq!(b.calls.len(), 1);
}

#[test]
fn a_lease_lost_to_a_cas_mismatch_makes_no_call_and_is_not_retried_in_the_tick() {
    let mut proxy = Proxy::at(T0);
    let mut w = Worker::new(api(json!({})));
    proxy.others_write_first = 1;
    w.tick(&mut proxy);
    assert!(w.calls.is_empty());
    let writes = w
        .asked
        .iter()
        .filter(|a| matches!(a, Ask::Write { .. }))
        .count();
    assert_eq!(writes, 1, "one try: another worker has just taken it");
    w.tick(&mut proxy);
    assert_eq!(w.calls.len(), 1, "the next tick tries again");
}

#[test]
fn two_workers_creating_the_state_at_once_get_one_lease() {
    let mut proxy = Proxy::at(T0);
    let mut a = Refresh::new(api(json!({})));
    let mut b = Refresh::new(api(json!({})));
    let mut writes = Vec::new();
    for r in [&mut a, &mut b] {
        assert_eq!(
            r.on(Event::Tick(proxy.clock())).ask,
            Some(Ask::Read(Slot::List))
        );
        let read_list = Event::Read {
            slot: Slot::List,
            value: Some(Shared::default()),
        };
        assert_eq!(r.on(read_list).ask, Some(Ask::Read(Slot::State)));
        let read_state = Event::Read {
            slot: Slot::State,
            value: Some(Shared::default()),
        };
        match r.on(read_state).ask {
            Some(Ask::Write {
                slot: Slot::State,
                value,
                cas: Cas::Absent,
            }) => writes.push(value),
            other => panic!("{other:?}"),
        }
    }
    let key = a.key(Slot::State).to_string();
    let mut outcomes = Vec::new();
    for (r, value) in [&mut a, &mut b].into_iter().zip(writes) {
        let outcome = proxy.set(&key, value, Cas::Absent);
        outcomes.push(outcome);
        let turn = r.on(Event::Written {
            slot: Slot::State,
            outcome,
        });
        assert_eq!(
            matches!(turn.ask, Some(Ask::Dispatch(_))),
            outcome == Written::Done
        );
    }
    assert_eq!(outcomes, [Written::Done, Written::CasMismatch]);
}

#[test]
fn a_list_another_worker_published_is_installed_without_a_fetch() {
    let mut proxy = Proxy::at(T0);
    let mut a = fetched(&mut proxy);
    let mut b = Worker::new(api(json!({})));
    proxy.now += 1;
    assert!(installs(&b.tick(&mut proxy)));
    assert!(b.calls.is_empty());
    assert!(!installs(&b.tick(&mut proxy)), "installed once per change");
    // A's next refresh brings another list; B installs it on its next tick.
    proxy.now += 3600;
    a.tick(&mut proxy);
    a.ok(&mut proxy, r#"{"ip_list":["5.6.7.8"]}"#);
    let effects = b.tick(&mut proxy);
    let Some(Effect::Install(list)) = effects.first() else {
        panic!("{effects:?}");
    };
    assert!(list.contains("5.6.7.8".parse().expect("ip")));
    assert!(b.calls.is_empty());
    // A worker starting afresh (a reconfiguration) installs it at once, and does not
    // take the lease for that.
    let mut c = Worker::new(api(json!({})));
    assert!(installs(&c.feed(&mut proxy, Event::Started)));
    assert_eq!(c.asked, [Ask::Read(Slot::List)]);
}

#[test]
fn a_damaged_shared_list_is_not_installed() {
    let mut proxy = Proxy::at(T0);
    let mut w = Worker::new(api(json!({})));
    let key = w.refresh.key(Slot::List).to_string();
    proxy.set(&key, b"{".to_vec(), Cas::Any);
    assert!(!installs(&w.feed(&mut proxy, Event::Started)));
    proxy.set(
        &key,
        br#"{"entries":["1.2.3.4"],"fetched_at":1}"#.to_vec(),
        Cas::Any,
    );
    assert!(installs(&w.feed(&mut proxy, Event::Started)));
}

#[test]
fn a_call_with_no_answer_is_given_up_after_the_lease() {
    let mut proxy = Proxy::at(T0);
    let mut w = Worker::new(api(json!({})));
    w.tick(&mut proxy);
    for _ in 0..LEASE {
        proxy.now += 1;
        assert!(w.tick(&mut proxy).is_empty());
    }
    assert_eq!(w.calls.len(), 1);
    let lost = w.in_flight.take().expect("in flight");
    proxy.now += 1;
    let effects = w.tick(&mut proxy);
    assert_eq!(notes(&effects), [&Note::NoAnswer]);
    assert_eq!(w.calls.len(), 2, "the lease ran out too: a new fetch");
    // Its answer, if it ever comes, is not this fetch's.
    let late = Event::Answered {
        call_id: lost,
        body_size: 0,
        clock: proxy.clock(),
    };
    assert_eq!(w.refresh.on(late), Default::default());
}

#[test]
fn a_day_of_two_instances_on_two_workers_each_makes_24_list_calls() {
    // Two instances of one account with different settings (the timeout), on two
    // workers each, ticking every second for a day, WeChat answering at once.
    let settings = [
        api(json!({"timeout_ms": 5000})),
        api(json!({"timeout_ms": 3000})),
    ];
    let mut workers: Vec<Worker> = (0..4)
        .map(|i| Worker::new(settings[i % 2].clone()))
        .collect();
    let mut proxy = Proxy::at(T0);
    for now in T0..T0 + 86_400 {
        proxy.now = now;
        for w in &mut workers {
            w.tick(&mut proxy);
            while w.in_flight.is_some() {
                let reply = if w.last_path().starts_with("/cgi-bin/stable_token") {
                    TOKEN_REPLY
                } else {
                    LIST_REPLY
                };
                w.ok(&mut proxy, reply);
            }
        }
    }
    let count = |prefix| workers.iter().map(|w| w.count_calls(prefix)).sum::<usize>();
    assert_eq!(count("/cgi-bin/getcallbackip"), 24);
    // A token lives 7200 s and is kept 6900 s: a new one every other refresh.
    assert_eq!(count("/cgi-bin/stable_token"), 12);
}
