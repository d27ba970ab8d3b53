//! When to fetch WeChat's callback IP list, who fetches, and what to do after each
//! reply: a state machine fed with time and results, never with I/O.
//!
//! [`RefreshState`] is shared by every worker and every instance of the account (one
//! small value in proxy-wasm shared data, updated with CAS): the access token, when the
//! last good list came, the failure streak for backoff, and the fetch lease, so that
//! one worker fetches per refresh. Each [`Instance`] works out from it when it wants
//! the next fetch.
//! [`FetchPlan`] is the fetching worker's own walk through token → list, across the
//! configured upstreams, with the errcode rules of `wechat_api::advice`.

use crate::allowlist::{parse_block, CallbackAllowlist};
use crate::config::{TokenApi, WechatApi};
use crate::live_list::wechat_api::{advice, AccessToken, Advice, ApiFailure, CallbackIps};
use serde::{Deserialize, Serialize};
use std::fmt;

/// First retry delay after a failed fetch; it doubles per failure, up to `refresh_seconds`.
pub const FIRST_BACKOFF_SECONDS: u64 = 2;
/// A token is used until this long before WeChat says it expires.
pub const TOKEN_MARGIN_SECONDS: u64 = 300;
/// `stable_token` with `force_refresh: true` is allowed 20 times a day, 30 s apart: the
/// filter asks at most this often, and at most `FORCE_REFRESH_PER_DAY` times a day.
pub const FORCE_REFRESH_EVERY_SECONDS: i64 = 600;
pub const FORCE_REFRESH_PER_DAY: u32 = 10;

/// Immediate tries after a failed fetch by instances whose settings differ from those
/// already tried in the failure streak (see [`RefreshState::next_due`]).
pub const MAX_TRIED_SETTINGS: usize = 4;

/// One filter instance's part in its account's shared refresh: how often it wants the
/// list, and a fingerprint of the settings it fetches with. Several instances of one
/// account (one AppID) share one token and one list, whatever their settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    pub refresh_seconds: u64,
    /// [`settings_fingerprint`] of the instance's `wechat_api`.
    pub settings: u64,
}

impl Instance {
    pub fn of(api: &WechatApi) -> Instance {
        Instance {
            refresh_seconds: api.refresh_seconds,
            settings: settings_fingerprint(api),
        }
    }
}

/// A fingerprint of what a fetch is made with: the AppID, the secret, the token API,
/// the upstreams and the timeout (not `refresh_seconds`, which only schedules). SHA-1
/// over a fixed encoding, so every VM and every build computes the same value. It
/// lives in the proxy's shared data only, never in a log.
pub fn settings_fingerprint(api: &WechatApi) -> u64 {
    let mut h = sha1_smol::Sha1::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(b"wechat-gate live-list settings v1");
    field(api.appid.as_bytes());
    field(api.secret.expose().as_bytes());
    field(match api.token_api {
        TokenApi::Stable => b"stable",
        TokenApi::Classic => b"classic",
        TokenApi::Wecom => b"wecom",
    });
    field(&api.timeout_ms.to_be_bytes());
    for u in &api.upstreams {
        field(u.cluster.as_bytes());
        field(u.authority.as_bytes());
    }
    let mut first = [0u8; 8];
    for (to, from) in first.iter_mut().zip(h.digest().bytes()) {
        *to = from;
    }
    u64::from_be_bytes(first)
}

/// The refresh of one account's list, shared by every instance of the account on
/// every worker. When it is due is worked out by each instance from what happened
/// (the last success, the failure streak), never from who wrote it last: instances
/// with different settings must not take the refresh from each other.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshState {
    /// The access token. Never logged (see the `Debug` impl).
    pub token: Option<String>,
    pub token_valid_until: i64,
    /// Failed fetches in a row since the last good list.
    pub failures: u32,
    /// When the last fetch failed, and the jitter (0..=1000) its backoff is spread by.
    pub last_failure_unix: i64,
    pub jitter: u32,
    /// Fingerprints of the settings whose fetch failed in this failure streak.
    pub tried: Vec<u64>,
    pub lease_until: i64,
    /// When the last good list was fetched (0: never).
    pub last_success_unix: i64,
    pub last_forced_token_at: i64,
    /// Forced refreshes on the UTC day `forced_day` (days since the epoch).
    pub forced_today: u32,
    pub forced_day: i64,
    /// A refused list (see `wechat_api::ApiFailure::TooBroad`) was logged in this
    /// failure streak: the next refusals are counted, not logged again.
    pub refusal_logged: bool,
}

impl fmt::Debug for RefreshState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshState")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_valid_until", &self.token_valid_until)
            .field("failures", &self.failures)
            .field("last_failure_unix", &self.last_failure_unix)
            .field("lease_until", &self.lease_until)
            .field("last_success_unix", &self.last_success_unix)
            .finish()
    }
}

impl RefreshState {
    /// When `instance` wants the next fetch. With no failure: `refresh_seconds` after
    /// the last good list (at once if there is none), so of several instances the
    /// shortest interval sets the schedule. After failures: the backoff, capped at the
    /// instance's `refresh_seconds`; but settings not yet tried in this failure streak
    /// (a fixed secret after a reconfiguration, the other instance's) are tried at
    /// once, each once, up to [`MAX_TRIED_SETTINGS`].
    pub fn next_due(&self, instance: &Instance) -> i64 {
        if self.failures == 0 {
            return if self.last_success_unix == 0 {
                i64::MIN
            } else {
                self.last_success_unix
                    .saturating_add(secs(instance.refresh_seconds))
            };
        }
        if !self.tried.contains(&instance.settings) && self.tried.len() < MAX_TRIED_SETTINGS {
            return i64::MIN;
        }
        let delay = backoff_seconds(self.failures, instance.refresh_seconds, self.jitter);
        self.last_failure_unix.saturating_add(secs(delay))
    }

    /// A fetch is due for `instance` and nobody holds the lease.
    pub fn is_due(&self, now: i64, instance: &Instance) -> bool {
        now >= self.lease_until && now >= self.next_due(instance)
    }

    /// The state with the lease taken until `now + lease_seconds`.
    pub fn leased(&self, now: i64, lease_seconds: u64) -> RefreshState {
        RefreshState {
            lease_until: now.saturating_add(secs(lease_seconds)),
            ..self.clone()
        }
    }

    pub fn usable_token(&self, now: i64) -> Option<&str> {
        self.token
            .as_deref()
            .filter(|_| now < self.token_valid_until)
    }

    /// Keeps a new token until `expires_in − 300 s` (half its life if it is that short).
    pub fn with_token(&self, token: &AccessToken, now: i64, forced: bool) -> RefreshState {
        let keep = if token.expires_in > 2 * TOKEN_MARGIN_SECONDS {
            token.expires_in - TOKEN_MARGIN_SECONDS
        } else {
            (token.expires_in / 2).max(1)
        };
        let today = now.div_euclid(86_400);
        let forced_today = match (forced, today == self.forced_day) {
            (true, true) => self.forced_today.saturating_add(1),
            (true, false) => 1,
            (false, true) => self.forced_today,
            (false, false) => 0,
        };
        RefreshState {
            token: Some(token.value.clone()),
            token_valid_until: now.saturating_add(secs(keep)),
            last_forced_token_at: if forced {
                now
            } else {
                self.last_forced_token_at
            },
            forced_today,
            forced_day: today,
            ..self.clone()
        }
    }

    pub fn without_token(&self) -> RefreshState {
        RefreshState {
            token: None,
            token_valid_until: 0,
            ..self.clone()
        }
    }

    /// May this fetch ask `stable_token` for `force_refresh: true`?
    pub fn may_force_token(&self, now: i64) -> bool {
        let spaced = self.last_forced_token_at == 0
            || now.saturating_sub(self.last_forced_token_at) >= FORCE_REFRESH_EVERY_SECONDS;
        let budget =
            now.div_euclid(86_400) != self.forced_day || self.forced_today < FORCE_REFRESH_PER_DAY;
        spaced && budget
    }

    /// After a good list: the failure streak is over, the lease released.
    pub fn succeeded(&self, now: i64) -> RefreshState {
        RefreshState {
            failures: 0,
            tried: Vec::new(),
            lease_until: 0,
            last_success_unix: now,
            refusal_logged: false,
            ..self.clone()
        }
    }

    /// After a fetch with `settings` failed everywhere: one more failure, backing off
    /// from `now` (2 s, doubling, capped at each instance's `refresh_seconds`), spread
    /// by `jitter` in 0..=1000 over ±20 %; the settings are tried; lease released.
    pub fn failed(&self, now: i64, jitter: u32, settings: u64) -> RefreshState {
        let mut tried = self.tried.clone();
        if !tried.contains(&settings) && tried.len() < MAX_TRIED_SETTINGS {
            tried.push(settings);
        }
        RefreshState {
            failures: self.failures.saturating_add(1),
            last_failure_unix: now,
            jitter: jitter.min(1000),
            tried,
            lease_until: 0,
            ..self.clone()
        }
    }

    /// A refused list: the state that remembers it, and whether to log it (once per
    /// failure streak).
    pub fn note_refusal(&self) -> (RefreshState, bool) {
        let state = RefreshState {
            refusal_logged: true,
            ..self.clone()
        };
        (state, !self.refusal_logged)
    }
}

/// The delay before the next try after `failures` failures in a row.
pub fn backoff_seconds(failures: u32, refresh_seconds: u64, jitter: u32) -> u64 {
    let doubling = FIRST_BACKOFF_SECONDS.saturating_mul(1u64 << failures.saturating_sub(1).min(40));
    let capped = doubling.min(refresh_seconds.max(1));
    let permille = 800 + u64::from(jitter.min(1000)) * 400 / 1000;
    (capped.saturating_mul(permille) / 1000).max(1)
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

/// One call the fetching worker is to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Get an access token from upstream `upstream` (`force`: stable_token's force_refresh).
    Token { upstream: usize, force: bool },
    /// Get the callback list from upstream `upstream` with the current token.
    List { upstream: usize },
}

/// What to do after a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Call(Step),
    /// The fetch is over with a list.
    Done(CallbackIps),
    /// Every upstream failed; the last failure says why.
    GaveUp(ApiFailure),
}

/// The fetching worker's walk: token (if none is usable) then list, on one upstream;
/// on failure the next upstream; `-1` is retried once on the same upstream; a token
/// WeChat calls bad or expired is renewed once (stable: `force_refresh` if allowed).
#[derive(Debug, Clone)]
pub struct FetchPlan {
    upstreams: usize,
    upstream: usize,
    force_allowed: bool,
    busy_retried: bool,
    token_renewed: bool,
    /// The token should be dropped (WeChat refused it).
    pub drop_token: bool,
    /// The token step asked for force_refresh (to record when it succeeds).
    pub forced: bool,
}

impl FetchPlan {
    /// Starts a fetch; `have_token`: a usable token is in the shared state.
    pub fn start(upstreams: usize, have_token: bool, force_allowed: bool) -> (FetchPlan, Step) {
        let plan = FetchPlan {
            upstreams: upstreams.max(1),
            upstream: 0,
            force_allowed,
            busy_retried: false,
            token_renewed: false,
            drop_token: false,
            forced: false,
        };
        let first = if have_token {
            Step::List { upstream: 0 }
        } else {
            Step::Token {
                upstream: 0,
                force: false,
            }
        };
        (plan, first)
    }

    pub fn upstream(&self) -> usize {
        self.upstream
    }

    /// After a token reply.
    pub fn after_token(&mut self, step: Step, result: &Result<AccessToken, ApiFailure>) -> Next {
        match result {
            Ok(_) => {
                self.drop_token = false;
                self.forced = matches!(step, Step::Token { force: true, .. });
                Next::Call(Step::List {
                    upstream: self.upstream,
                })
            }
            Err(failure) => self.after_failure(step, failure.clone()),
        }
    }

    /// After a list reply.
    pub fn after_list(&mut self, step: Step, result: Result<CallbackIps, ApiFailure>) -> Next {
        match result {
            Ok(ips) => Next::Done(ips),
            Err(failure @ ApiFailure::Errcode { code, .. }) if advice(code) == Advice::NewToken => {
                self.drop_token = true;
                if self.token_renewed {
                    return self.next_upstream(true, failure);
                }
                self.token_renewed = true;
                Next::Call(Step::Token {
                    upstream: self.upstream,
                    force: self.force_allowed,
                })
            }
            Err(failure) => self.after_failure(step, failure),
        }
    }

    fn after_failure(&mut self, step: Step, failure: ApiFailure) -> Next {
        if let ApiFailure::Errcode { code, .. } = failure {
            if advice(code) == Advice::Retry && !self.busy_retried {
                self.busy_retried = true;
                return Next::Call(step);
            }
        }
        self.next_upstream(matches!(step, Step::Token { .. }), failure)
    }

    /// Fails over to the next upstream, from the token if the token failed or was
    /// refused, else straight to the list.
    fn next_upstream(&mut self, token_failed: bool, failure: ApiFailure) -> Next {
        self.upstream += 1;
        self.busy_retried = false;
        if self.upstream >= self.upstreams {
            return Next::GaveUp(failure);
        }
        Next::Call(if token_failed || self.drop_token {
            Step::Token {
                upstream: self.upstream,
                force: false,
            }
        } else {
            Step::List {
                upstream: self.upstream,
            }
        })
    }
}

/// The callback list as the fetching worker publishes it in shared data for the
/// others: the usable entries as WeChat sent them, and when.
#[derive(Serialize, Deserialize)]
struct SharedList {
    entries: Vec<String>,
    fetched_at: i64,
}

/// The shared value for a list fetched at `now`.
pub fn encode_shared_list(ips: &CallbackIps, now: i64) -> Option<Vec<u8>> {
    serde_json::to_vec(&SharedList {
        entries: ips.entries.clone(),
        fetched_at: now,
    })
    .ok()
}

/// The list in a shared value, written by any worker (of any version): `None` when
/// it does not parse or holds no usable entry.
pub fn decode_shared_list(bytes: &[u8]) -> Option<CallbackAllowlist> {
    let shared = serde_json::from_slice::<SharedList>(bytes).ok()?;
    let blocks: Vec<_> = shared
        .entries
        .iter()
        .filter_map(|e| parse_block(e).ok())
        .collect();
    (!blocks.is_empty()).then(|| CallbackAllowlist::from_blocks(blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in: u64) -> AccessToken {
        AccessToken {
            value: "TOKEN".into(),
            expires_in,
        }
    }

    fn ips() -> CallbackIps {
        CallbackIps {
            blocks: vec![parse_block("1.2.3.4").expect("ip")],
            entries: vec!["1.2.3.4".into()],
            skipped: vec![],
        }
    }

    fn errcode(code: i64) -> ApiFailure {
        ApiFailure::Errcode {
            code,
            message: String::new(),
        }
    }

    /// An instance refreshing every `refresh` s with settings `settings`.
    fn inst(refresh: u64, settings: u64) -> Instance {
        Instance {
            refresh_seconds: refresh,
            settings,
        }
    }

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
        let api = |extra: serde_json::Value| -> WechatApi {
            let mut wechat_api = serde_json::json!({
                "secret": "s3cret", "upstreams": [{"cluster": "c", "authority": "a"}]
            });
            if let (Some(w), Some(e)) = (wechat_api.as_object_mut(), extra.as_object()) {
                w.extend(e.clone());
            }
            let json = serde_json::json!({"path": "/w", "appid": "wx1", "token": "t",
                "source": {"wechat_api": wechat_api}});
            crate::config::parse(json.to_string().as_bytes(), &|_| None)
                .expect("config")
                .source
                .wechat_api
                .expect("wechat_api")
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

    #[test]
    fn without_a_token_the_plan_starts_with_one_then_fetches_the_list() {
        let (mut p, first) = FetchPlan::start(2, false, true);
        assert_eq!(
            first,
            Step::Token {
                upstream: 0,
                force: false
            }
        );
        assert_eq!(
            p.after_token(first, &Ok(token(7200))),
            Next::Call(Step::List { upstream: 0 })
        );
        assert_eq!(
            p.after_list(Step::List { upstream: 0 }, Ok(ips())),
            Next::Done(ips())
        );
    }

    #[test]
    fn with_a_usable_token_the_plan_goes_straight_to_the_list() {
        let (_, first) = FetchPlan::start(1, true, true);
        assert_eq!(first, Step::List { upstream: 0 });
    }

    #[test]
    fn a_transport_failure_fails_over_to_the_next_upstream() {
        let (mut p, first) = FetchPlan::start(2, false, true);
        assert_eq!(
            p.after_token(first, &Err(ApiFailure::Transport)),
            Next::Call(Step::Token {
                upstream: 1,
                force: false
            })
        );
        assert_eq!(p.upstream(), 1);
        let list = Step::List { upstream: 1 };
        assert_eq!(
            p.after_token(
                Step::Token {
                    upstream: 1,
                    force: false
                },
                &Ok(token(7200))
            ),
            Next::Call(list)
        );
        assert_eq!(
            p.after_list(list, Err(ApiFailure::Status(502))),
            Next::GaveUp(ApiFailure::Status(502))
        );
    }

    #[test]
    fn a_list_failure_fails_over_keeping_the_token() {
        let (mut p, first) = FetchPlan::start(2, true, true);
        assert_eq!(
            p.after_list(first, Err(ApiFailure::BadReply)),
            Next::Call(Step::List { upstream: 1 })
        );
        assert!(!p.drop_token);
    }

    #[test]
    fn busy_is_retried_once_on_the_same_upstream() {
        let (mut p, first) = FetchPlan::start(1, true, true);
        assert_eq!(p.after_list(first, Err(errcode(-1))), Next::Call(first));
        assert_eq!(
            p.after_list(first, Err(errcode(-1))),
            Next::GaveUp(errcode(-1))
        );
    }

    #[test]
    fn a_refused_token_is_dropped_and_renewed_once_with_force_refresh_if_allowed() {
        for (allowed, force) in [(true, true), (false, false)] {
            let (mut p, first) = FetchPlan::start(1, true, allowed);
            assert_eq!(
                p.after_list(first, Err(errcode(40001))),
                Next::Call(Step::Token { upstream: 0, force })
            );
            assert!(p.drop_token);
            let t = Step::Token { upstream: 0, force };
            assert_eq!(
                p.after_token(t, &Ok(token(7200))),
                Next::Call(Step::List { upstream: 0 })
            );
            assert_eq!(p.forced, force);
            assert!(!p.drop_token);
            // Refused again: no endless loop.
            assert_eq!(
                p.after_list(first, Err(errcode(42001))),
                Next::GaveUp(errcode(42001))
            );
            assert!(p.drop_token);
        }
    }

    #[test]
    fn operator_errors_fail_over_then_give_up_with_the_errcode() {
        let (mut p, first) = FetchPlan::start(2, false, true);
        assert_eq!(
            p.after_token(first, &Err(errcode(40164))),
            Next::Call(Step::Token {
                upstream: 1,
                force: false
            })
        );
        assert_eq!(
            p.after_token(
                Step::Token {
                    upstream: 1,
                    force: false
                },
                &Err(errcode(40164))
            ),
            Next::GaveUp(errcode(40164))
        );
    }

    #[test]
    fn no_upstreams_is_treated_as_one() {
        let (mut p, first) = FetchPlan::start(0, false, false);
        assert_eq!(
            p.after_token(first, &Err(ApiFailure::Transport)),
            Next::GaveUp(ApiFailure::Transport)
        );
    }

    #[test]
    fn a_shared_list_reads_back_and_a_damaged_one_is_none() {
        let value = encode_shared_list(&ips(), 7).expect("encodes");
        assert_eq!(
            decode_shared_list(&value),
            Some(CallbackAllowlist::from_blocks(ips().blocks))
        );
        for bad in [&b""[..], b"{", b"{\"entries\": [\"x\"], \"fetched_at\": 1}"] {
            assert_eq!(decode_shared_list(bad), None);
        }
    }
}
