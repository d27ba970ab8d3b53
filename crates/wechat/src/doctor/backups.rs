//! Which of WeChat's API domains answer from here, and how fast, so the operator can
//! choose the gate's `upstreams`: api (the main one), api2 (disaster recovery), and the
//! regional sh., sz. and hk. hosts. Probed in parallel with a call that spends no quota
//! worth speaking of (`getcallbackip`, or without a token an errcode reply).

use super::report::{Check, Status};
use super::{progress, Doctor};
use gate::query::encode_query;
use serde_json::{json, Value};
use std::time::Duration;

const NAME: &str = "backup_domains";

pub const DOMAINS: [&str; 5] = [
    "api.weixin.qq.com",
    "api2.weixin.qq.com",
    "sh.api.weixin.qq.com",
    "sz.api.weixin.qq.com",
    "hk.api.weixin.qq.com",
];

/// One domain's result.
enum Probe {
    Reached(Duration),
    Failed(String),
    /// `--api` is not WeChat's and `--resolve` does not map it: not probed.
    NotProbed,
}

/// Is this host WeChat's own API? Only then are the other domains probed directly.
fn is_wechat(host: &str) -> bool {
    DOMAINS.iter().any(|d| d.eq_ignore_ascii_case(host))
}

/// A WeChat-shaped reply: JSON with `ip_list` or `errcode`.
fn answered_like_wechat(status: u16, body: &[u8]) -> bool {
    status == 200
        && serde_json::from_slice::<Value>(body)
            .is_ok_and(|v| v.get("ip_list").is_some() || v.get("errcode").is_some())
}

fn probe(d: &Doctor, domain: &str, access: Option<&str>) -> Probe {
    if !is_wechat(&d.api.host) && !d.http.is_mapped(domain) {
        return Probe::NotProbed;
    }
    let query = access.map_or(String::new(), |a| {
        format!("?{}", encode_query(&[("access_token", a)]))
    });
    let url = format!("{}://{domain}/cgi-bin/getcallbackip{query}", d.api.scheme);
    match d.http.get(&url) {
        Ok(r) if answered_like_wechat(r.status, &r.body) => Probe::Reached(r.elapsed),
        Ok(r) => Probe::Failed(format!("HTTP {} that is not WeChat's JSON", r.status)),
        Err(why) => Probe::Failed(why),
    }
}

pub(super) fn check(d: &Doctor, access: Option<&str>) -> Check {
    progress("probing WeChat's API domains");
    let probes: Vec<Probe> = std::thread::scope(|s| {
        let handles: Vec<_> = DOMAINS
            .iter()
            .map(|domain| s.spawn(move || probe(d, domain, access)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Probe::Failed("probe crashed".into()))
            })
            .collect()
    });
    let mut rows = Vec::new();
    let mut data = Vec::new();
    let (mut reached, mut probed) = (Vec::new(), 0usize);
    for (domain, p) in DOMAINS.iter().zip(&probes) {
        let (text, value) = match p {
            Probe::Reached(t) => {
                probed += 1;
                reached.push(*domain);
                let ms = t.as_millis();
                (
                    format!("reached in {ms} ms"),
                    json!({"domain": domain, "reached": true, "ms": ms}),
                )
            }
            Probe::Failed(why) => {
                probed += 1;
                (
                    format!("not reached: {why}"),
                    json!({"domain": domain, "reached": false, "error": why}),
                )
            }
            Probe::NotProbed => (
                "not probed (--api is not WeChat's; map it with --resolve)".to_string(),
                json!({"domain": domain, "reached": null}),
            ),
        };
        rows.push(format!("{domain:<22} {text}"));
        data.push(value);
    }
    let summary = if probed == 0 {
        "not probed: --api is not WeChat's (map the domains to test addresses with --resolve)"
            .to_string()
    } else {
        format!("{} of {probed} API domains probed answered", reached.len())
    };
    let status = match (probed, reached.len()) {
        (0, _) => Status::Skip,
        (_, 0) => Status::Fail,
        (p, r) if r < p => Status::Warn,
        _ => Status::Pass,
    };
    let mut check = Check::new(NAME, status, summary)
        .detail(rows)
        .data(json!({ "domains": data }));
    if !reached.is_empty() {
        check = check.advise(format!(
            "use those that answered as the gate's upstreams, in order: {}",
            reached.join(", ")
        ));
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wechats_json_counts_as_an_answer() {
        assert!(answered_like_wechat(200, br#"{"ip_list":[]}"#));
        assert!(answered_like_wechat(
            200,
            br#"{"errcode":41001,"errmsg":"access_token missing"}"#
        ));
        assert!(!answered_like_wechat(200, b"<html>captive portal</html>"));
        assert!(!answered_like_wechat(502, br#"{"errcode":1}"#));
        assert!(is_wechat("API2.weixin.qq.com") && !is_wechat("127.0.0.1"));
    }
}
