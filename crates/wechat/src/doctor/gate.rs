//! Does a running gate hold the list WeChat gives now? Reads the Envoy admin's
//! `/stats?filter=wasmcustom` (`wechat_gate.allowlist.entries` and
//! `.last_success_unix`, per account from the names' `account=.=NAME;.;` tag) and
//! compares the number of entries with `getcallbackip`'s.

use super::report::{Check, Status};
use super::Doctor;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

const NAME: &str = "gate";

/// One account's allowlist gauges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Series {
    pub entries: Option<u64>,
    pub last_success_unix: Option<u64>,
    pub refresh_failed: Option<u64>,
}

/// The account tag after a metric's name: `.account=.=NAME;.;` (`None`: untagged).
fn account_of(tail: &str) -> Option<String> {
    let after = tail.strip_prefix(".account=.=")?;
    let name = after.split(';').next()?;
    Some(name.to_string())
}

/// The gauges per account (`None`: names without an account tag).
pub(super) fn parse_stats(text: &str) -> BTreeMap<Option<String>, Series> {
    let mut out: BTreeMap<Option<String>, Series> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(':') else {
            continue;
        };
        let name = name.trim();
        let name = name.strip_prefix("wasmcustom.").unwrap_or(name);
        let Some(rest) = name.strip_prefix("wechat_gate.") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        let Some((metric, tail)) = [
            "allowlist.entries",
            "allowlist.last_success_unix",
            "allowlist.refresh_failed",
        ]
        .iter()
        .find_map(|m| rest.strip_prefix(m).map(|tail| (*m, tail))) else {
            continue;
        };
        if !tail.is_empty() && !tail.starts_with(".account=") {
            continue;
        }
        let series = out.entry(account_of(tail)).or_default();
        match metric {
            "allowlist.entries" => series.entries = Some(value),
            "allowlist.last_success_unix" => series.last_success_unix = Some(value),
            "allowlist.refresh_failed" => series.refresh_failed = Some(value),
            _ => {}
        }
    }
    out.retain(|_, s| s.entries.is_some() || s.last_success_unix.is_some());
    out
}

/// The series to compare: the one asked for, the only one, or the AppID's.
fn pick<'a>(
    all: &'a BTreeMap<Option<String>, Series>,
    wanted: Option<&str>,
    appid: &str,
) -> Result<(Option<&'a str>, &'a Series), String> {
    let names = || {
        all.keys()
            .map(|k| k.as_deref().unwrap_or("(no account tag)"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find = |name: &str| {
        all.iter()
            .find(|(k, _)| k.as_deref() == Some(name))
            .map(|(k, s)| (k.as_deref(), s))
    };
    if let Some(name) = wanted {
        return find(name)
            .ok_or_else(|| format!("no account {name} in the gate's stats (has: {})", names()));
    }
    match all.iter().next() {
        Some((k, s)) if all.len() == 1 => Ok((k.as_deref(), s)),
        None => Err(
            "no wechat_gate.allowlist stats: is the gate running with source.wechat_api?".into(),
        ),
        Some(_) => find(appid).ok_or_else(|| {
            format!(
                "several accounts ({}): name one with --gate-account",
                names()
            )
        }),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn compare(d: &Doctor, admin: &str, wechat: Option<&[String]>) -> Check {
    let url = format!("{}/stats?filter=wasmcustom", admin.trim_end_matches('/'));
    let text = match d.http.get(&url) {
        Ok(r) if r.status == 200 => String::from_utf8_lossy(&r.body).into_owned(),
        Ok(r) => return Check::new(NAME, Status::Fail, format!("{admin}: HTTP {}", r.status)),
        Err(why) => return Check::new(NAME, Status::Fail, format!("{admin}: no reply: {why}")),
    };
    let all = parse_stats(&text);
    let (account, series) = match pick(&all, d.args.gate_account.as_deref(), &d.appid) {
        Ok(p) => p,
        Err(why) => return Check::new(NAME, Status::Fail, why),
    };
    let label = account.map_or(String::new(), |a| format!(" (account {a})"));
    let entries = series.entries.unwrap_or(0);
    let last = series.last_success_unix.unwrap_or(0);
    let data = json!({
        "account": account, "entries": entries, "last_success_unix": last,
        "refresh_failed": series.refresh_failed, "wechat_entries": wechat.map(<[String]>::len),
    });
    if last == 0 {
        return Check::new(NAME, Status::Fail, format!("the gate{label} has not loaded WeChat's list yet"))
            .advise("see the gate's log (wasm component) for why its refresh fails; doctor's token check shows what WeChat answers from here")
            .data(data);
    }
    let age = now_unix().saturating_sub(last);
    let Some(wechat) = wechat else {
        return Check::new(NAME, Status::Warn, format!("the gate{label} holds {entries} entries (refreshed {age} s ago); WeChat's list could not be fetched to compare")).data(data);
    };
    if entries != wechat.len() as u64 {
        return Check::new(NAME, Status::Fail, format!("the gate{label} holds {entries} entries, WeChat lists {} now (refreshed {age} s ago)", wechat.len()))
            .advise("the gate refreshes every refresh_seconds; if this lasts, check wechat_gate.allowlist.refresh_failed and the gate's log")
            .data(data);
    }
    let mut check = Check::new(
        NAME,
        Status::Pass,
        format!(
            "the gate{label} holds {entries} entries, as WeChat lists now (refreshed {age} s ago)"
        ),
    )
    .data(data);
    if age > 86_400 {
        check.status = Status::Warn;
        check = check.advise("the gate's last successful refresh is over a day old: WeChat asks for a daily refresh at least");
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_read_with_or_without_an_account_tag() {
        let text = "wasmcustom.wechat_gate.allowlist.entries: 3\n\
                    wasmcustom.wechat_gate.allowlist.last_success_unix: 1700000000\n\
                    wasmcustom.wechat_gate.forwarded: 9\n\
                    wasmcustom.wechat_gate.allowlist.entries.account=.=wxA;.;: 5\n\
                    wechat_gate.allowlist.last_success_unix.account=.=wxB;.;: 7\n\
                    wechat_gate.allowlist.entries_other.account=.=wxC;.;: 1\n\
                    cluster.x.upstream_rq: 1\n";
        let all = parse_stats(text);
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all.get(&None).and_then(|s| s.entries), Some(3));
        assert_eq!(
            all.get(&None).and_then(|s| s.last_success_unix),
            Some(1_700_000_000)
        );
        assert_eq!(
            all.get(&Some("wxA".into())).and_then(|s| s.entries),
            Some(5)
        );
        assert_eq!(
            all.get(&Some("wxB".into()))
                .and_then(|s| s.last_success_unix),
            Some(7)
        );
    }

    #[test]
    fn the_series_is_the_one_named_the_only_one_or_the_appids() {
        let all = parse_stats("wechat_gate.allowlist.entries.account=.=wxA;.;: 1\nwechat_gate.allowlist.entries.account=.=wxB;.;: 2\n");
        assert_eq!(pick(&all, None, "wxB").map(|(a, _)| a), Ok(Some("wxB")));
        assert_eq!(
            pick(&all, Some("wxA"), "wxB").map(|(a, _)| a),
            Ok(Some("wxA"))
        );
        assert!(pick(&all, None, "wxC").is_err_and(|e| e.contains("--gate-account")));
        assert!(pick(&BTreeMap::new(), None, "wx").is_err());
    }
}
