use super::{inst, token, wechat_api};
use crate::token::state::*;

#[test]
fn a_new_state_is_due_at_once() {
    assert!(RefreshState::default().is_due(1_000, &inst(3600, 7)));
}

#[test]
fn a_lease_keeps_other_workers_out_until_it_ends() {
    let s = RefreshState::default().leased(1_000, 30);
    assert!(!s.is_due(1_000, &inst(3600, 7)));
    assert!(!s.is_due(1_029, &inst(3600, 8)));
    assert!(
        s.is_due(1_030, &inst(3600, 7)),
        "a lease left by a crashed fetcher runs out"
    );
}

#[test]
fn success_schedules_the_next_refresh_and_releases_the_lease() {
    let s = RefreshState::default().leased(1_000, 30).succeeded(1_005);
    assert_eq!(
        (s.lease_until, s.failures, s.last_success_unix),
        (0, 0, 1_005)
    );
    assert!(!s.is_due(4_604, &inst(3600, 7)));
    assert!(s.is_due(4_605, &inst(3600, 7)));
}

#[test]
fn instances_with_other_settings_do_not_take_the_refresh_from_each_other() {
    // Issue 18 §2: the state used to be due at once for any instance whose config
    // fingerprint differed from the writer's, so two instances of one AppID kept
    // refreshing in turn at tick rate.
    let (a, b) = (inst(3600, 1), inst(3600, 2));
    let s = RefreshState::default().leased(1_000, 30).succeeded(1_001);
    for t in [1_001, 1_002, 2_000, 4_600] {
        assert!(!s.is_due(t, &a) && !s.is_due(t, &b), "{t}");
    }
    assert!(s.is_due(4_601, &a) && s.is_due(4_601, &b));
}

#[test]
fn the_shortest_refresh_interval_sets_the_schedule() {
    let s = RefreshState::default().succeeded(1_000);
    assert_eq!(s.next_due(&inst(60, 1)), 1_060);
    assert_eq!(s.next_due(&inst(3600, 2)), 4_600);
    // A reconfiguration to a shorter interval takes effect from the last list.
    assert!(s.is_due(1_060, &inst(60, 2)));
}

#[test]
fn a_day_of_two_instances_with_the_defaults_makes_24_list_calls() {
    // What the README's fleet arithmetic promises, per Envoy: two instances of one
    // account (different timeout_ms and token_api: different settings) on two
    // workers each, ticking every second for a day, make one schedule's calls.
    let instances = [inst(3600, 1), inst(3600, 2), inst(3600, 1), inst(3600, 2)];
    let mut s = RefreshState::default();
    let mut fetches = 0;
    let start = 1_800_000_000;
    for now in start..start + 86_400 {
        for i in &instances {
            if s.is_due(now, i) {
                s = s.leased(now, 35).succeeded(now);
                fetches += 1;
            }
        }
    }
    assert_eq!(fetches, 24);
}

#[test]
fn after_a_failure_other_settings_are_tried_once_at_once_then_the_backoff() {
    let (good, stale) = (inst(60, 1), inst(60, 2));
    // The stale secret fails: the good one may try at once (a fixed secret after a
    // reconfiguration is the same case), the stale one waits for the backoff.
    let s = RefreshState::default().failed(1_000, 500, stale.settings);
    assert!(s.is_due(1_000, &good));
    assert!(!s.is_due(1_001, &stale));
    assert!(s.is_due(1_002, &stale));
    // Both fail (WeChat is down): from now on only the backoff, for either.
    let s = s.failed(1_000, 500, good.settings);
    assert_eq!(s.tried, [2, 1]);
    for i in [&good, &stale] {
        assert!(!s.is_due(1_003, i));
        assert!(s.is_due(1_004, i), "2 failures: 4 s");
    }
    // Each new setting gets its one try at once, up to a bound.
    let mut s = s;
    for settings in 3..20 {
        s = s.failed(1_000, 500, settings);
    }
    assert_eq!(s.tried.len(), MAX_TRIED_SETTINGS);
    assert!(!s.is_due(1_000, &inst(60, 99)));
    // A good list ends the streak.
    let s = s.succeeded(1_010);
    assert_eq!((s.failures, s.tried.len()), (0, 0));
    assert!(!s.is_due(1_069, &stale));
}

#[test]
fn backoff_is_capped_at_each_instances_own_interval() {
    let mut s = RefreshState::default();
    for _ in 0..20 {
        s = s.failed(1_000, 500, 1);
    }
    assert_eq!(s.next_due(&inst(5, 1)), 1_005);
    assert_eq!(s.next_due(&inst(3600, 1)), 4_600);
}

#[test]
fn the_settings_fingerprint_is_stable_and_covers_every_fetch_setting() {
    let api = |extra| {
        let base = serde_json::json!({
            "secret": "s3cret", "upstreams": [{"cluster": "c", "authority": "a"}]
        });
        wechat_api("wx1", base, extra)
    };
    let base = settings_fingerprint(&api(serde_json::json!({})));
    // A fixed value (SHA-1 of the length-prefixed fields, checked with Python's
    // hashlib): the same in every build and every VM, which DefaultHasher is not.
    assert_eq!(base, 0xc232_df25_96a2_3732, "{base:#018x}");
    assert_eq!(
        base,
        settings_fingerprint(&api(serde_json::json!({"refresh_seconds": 60})))
    );
    for changed in [
        serde_json::json!({"secret": "other"}),
        serde_json::json!({"timeout_ms": 100}),
        serde_json::json!({"token_api": "classic"}),
        serde_json::json!({"upstreams": [{"cluster": "c", "authority": "b"}]}),
        serde_json::json!({"appid": "wx2"}),
    ] {
        assert_ne!(
            base,
            settings_fingerprint(&api(changed.clone())),
            "{changed}"
        );
    }
}

#[test]
fn a_refused_list_is_logged_once_per_failure_streak() {
    let (s, log) = RefreshState::default().note_refusal();
    assert!(log);
    let (s, log) = s.failed(10, 0, 1).note_refusal();
    assert!(!log);
    let (_, log) = s.succeeded(20).note_refusal();
    assert!(log, "a new streak after a good list");
}

#[test]
fn failures_back_off_doubling_capped_at_the_refresh_interval() {
    let mid = 500; // no jitter
    let delays: Vec<u64> = (1..=12).map(|f| backoff_seconds(f, 3600, mid)).collect();
    assert_eq!(
        delays,
        [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600]
    );
    assert_eq!(backoff_seconds(40, 60, mid), 60);
    assert_eq!(backoff_seconds(u32::MAX, 60, mid), 60);
}

#[test]
fn jitter_spreads_the_delay_by_twenty_percent_either_way() {
    assert_eq!(backoff_seconds(5, 3600, 0), 25);
    assert_eq!(backoff_seconds(5, 3600, 1000), 38);
    assert_eq!(backoff_seconds(1, 3600, 0), 1, "never below a second");
}

#[test]
fn failed_counts_and_schedules_a_retry() {
    let i = inst(3600, 7);
    let s = RefreshState::default().leased(100, 30).failed(100, 500, 7);
    assert_eq!((s.failures, s.next_due(&i), s.lease_until), (1, 102, 0));
    let s = s.failed(102, 500, 7);
    assert_eq!((s.failures, s.next_due(&i)), (2, 106));
}

#[test]
fn a_token_is_kept_until_five_minutes_before_it_expires() {
    let s = RefreshState::default().with_token(&token(7200), 1_000, false);
    assert_eq!(s.usable_token(1_000), Some("TOKEN"));
    assert_eq!(s.usable_token(1_000 + 6899), Some("TOKEN"));
    assert_eq!(s.usable_token(1_000 + 6900), None);
    let short = RefreshState::default().with_token(&token(10), 1_000, false);
    assert_eq!(
        short.token_valid_until, 1_005,
        "short-lived tokens are kept half their life"
    );
    assert_eq!(
        RefreshState::default()
            .with_token(&token(1), 0, false)
            .token_valid_until,
        1
    );
    assert_eq!(s.without_token().usable_token(1_000), None);
}

#[test]
fn force_refresh_at_most_every_ten_minutes() {
    let s = RefreshState::default().with_token(&token(7200), 10_000, true);
    assert!(!s.may_force_token(10_599));
    assert!(s.may_force_token(10_600));
    assert!(RefreshState::default().may_force_token(0));
}

#[test]
fn force_refresh_at_most_ten_times_a_utc_day() {
    let day = 20_000 * 86_400;
    let mut s = RefreshState::default();
    for i in 0..FORCE_REFRESH_PER_DAY {
        let t = day + i64::from(i) * 601;
        assert!(s.may_force_token(t), "forced refresh {i}");
        s = s.with_token(&token(7200), t, true);
    }
    assert!(
        !s.may_force_token(day + 86_399),
        "the day's budget is spent"
    );
    assert!(s.may_force_token(day + 86_400), "a new day");
    assert_eq!(
        s.with_token(&token(7200), day + 86_400, false).forced_today,
        0
    );
}

#[test]
fn an_older_state_without_newer_fields_still_parses() {
    let s: RefreshState =
        serde_json::from_str(r#"{"next_fetch_at": 5, "config": 9, "failures": 2}"#)
            .expect("defaults");
    assert_eq!((s.failures, s.tried.len(), s.last_success_unix), (2, 0, 0));
}

#[test]
fn debug_output_never_shows_the_token() {
    let s = RefreshState::default().with_token(&token(7200), 0, false);
    assert!(!format!("{s:?}").contains("TOKEN"));
}

#[test]
fn state_round_trips_through_shared_data_json() {
    let s = RefreshState::default()
        .with_token(&token(7200), 5, true)
        .failed(7, 300, 42)
        .succeeded(9);
    let bytes = serde_json::to_vec(&s).expect("json");
    assert_eq!(
        serde_json::from_slice::<RefreshState>(&bytes).expect("back"),
        s
    );
}
