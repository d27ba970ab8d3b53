//! The two address lists: `getcallbackip` (where WeChat's pushes come from, what the
//! gate allows) and `get_api_domain_ip` (where api.weixin.qq.com is, for egress rules).

use super::report::{Check, Status};
use super::{egress, failed, CallError, Doctor};
use gate::query::encode_query;
use gate::token::wechat_api::{callback_ip_call, parse_callback_ip_reply, CallbackIps};
use serde_json::json;

/// The callback IP check, and the entries (for comparing with a running gate).
pub(super) struct CallbackOutcome {
    pub check: Check,
    pub entries: Option<Vec<String>>,
}

/// How many entries are single IPv4, single IPv6 addresses and CIDR blocks.
fn split(entries: &[String]) -> (usize, usize, usize) {
    let cidr = entries.iter().filter(|e| e.contains('/')).count();
    let v6 = entries
        .iter()
        .filter(|e| !e.contains('/') && e.contains(':'))
        .count();
    (entries.len() - cidr - v6, v6, cidr)
}

/// GETs `path` (with the token in it) and parses an `ip_list` reply.
fn fetch(d: &Doctor, path: &str) -> Result<CallbackIps, CallError> {
    let reply = d.http.get(&d.api.url(path)).map_err(CallError::NoReply)?;
    parse_callback_ip_reply(Some(u32::from(reply.status)), &reply.body).map_err(CallError::Api)
}

pub(super) fn callback_ips(d: &Doctor, access: Option<&str>) -> CallbackOutcome {
    const NAME: &str = "callback_ips";
    let Some(access) = access else {
        return CallbackOutcome {
            check: Check::skipped(NAME, "an access token"),
            entries: None,
        };
    };
    let ips = match fetch(d, &callback_ip_call(access).path) {
        Ok(ips) => ips,
        Err(e) => {
            return CallbackOutcome {
                check: failed(NAME, "getcallbackip", e),
                entries: None,
            }
        }
    };
    let (v4, v6, cidr) = split(&ips.entries);
    let mut check = Check::new(
        NAME,
        Status::Pass,
        format!(
            "getcallbackip: {} entries ({v4} IPv4, {v6} IPv6, {cidr} CIDR blocks)",
            ips.entries.len()
        ),
    )
    .data(json!({
        "entries": ips.entries.len(), "ipv4": v4, "ipv6": v6, "cidr": cidr,
        "skipped": ips.skipped,
    }));
    if !ips.skipped.is_empty() {
        check.status = Status::Warn;
        check = check.advise(format!(
            "{} entries are not addresses and are ignored (by the gate too): {:?}",
            ips.skipped.len(),
            ips.skipped
        ));
    }
    CallbackOutcome {
        check,
        entries: Some(ips.entries),
    }
}

/// WeChat's own warning, repeated wherever the addresses are shown.
pub(super) const REFRESH_ADVICE: &str =
    "WeChat changes these addresses without notice: do not pin them for good; regenerate \
     the rule daily (e.g. from cron) and prefer a DNS-based rule where your platform has one";

pub(super) fn api_domain_ips(d: &Doctor, access: Option<&str>) -> Check {
    const NAME: &str = "api_domain_ips";
    let Some(access) = access else {
        return Check::skipped(NAME, "an access token");
    };
    let path = format!(
        "/cgi-bin/get_api_domain_ip?{}",
        encode_query(&[("access_token", access)])
    );
    let ips = match fetch(d, &path) {
        Ok(ips) => ips,
        Err(e) => return failed(NAME, "get_api_domain_ip", e),
    };
    let mut check = Check::new(
        NAME,
        Status::Pass,
        format!(
            "get_api_domain_ip: {} addresses of api.weixin.qq.com",
            ips.entries.len()
        ),
    )
    .advise(REFRESH_ADVICE)
    .detail([ips.entries.join(", ")]);
    let mut data = json!({ "ip_list": ips.entries });
    if let Some(format) = d.args.egress {
        let rule = egress::render(format, &ips.entries);
        if let Some(map) = data.as_object_mut() {
            map.insert(
                "egress".into(),
                json!({ "format": format.name(), "rule": rule }),
            );
        }
        check = check.attach(format!("egress rule ({})", format.name()), rule);
    }
    check.data(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_into_ipv4_ipv6_and_cidr() {
        let entries: Vec<String> = [
            "1.2.3.4",
            "10.0.0.0/8",
            "240e:e1::1",
            "240e::/32",
            "5.6.7.8",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(split(&entries), (2, 1, 2));
    }
}
