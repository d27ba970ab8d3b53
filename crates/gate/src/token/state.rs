//! The refresh as every worker sees it: [`RefreshState`], one small value in the
//! proxy's shared data (updated with CAS), shared by every worker and every instance
//! of the account: the access token, when the last good list came, the failure streak
//! for backoff, and the fetch lease, so that one worker fetches per refresh. Each
//! [`Instance`] works out from it when it wants the next fetch. Pure rules fed with
//! time; [`super::Refresh`] reads and writes the value.

use super::wechat_api::AccessToken;
use crate::config::{TokenApi, WechatApi};
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
    /// The API role's token fetch (`crate::api::token`): one per proxy at a time,
    /// apart from the list's lease.
    pub token_lease_until: i64,
    /// When the API role's last token fetch failed, and what callers are told.
    pub token_failed_at: i64,
    pub token_failure: Option<String>,
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

    /// A fetch is due for `instance` and nobody holds the lease (nor the API role's
    /// token lease: its token is the one the list is fetched with).
    pub fn is_due(&self, now: i64, instance: &Instance) -> bool {
        now >= self.lease_until && now >= self.token_lease_until && now >= self.next_due(instance)
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
