//! What WeChat's errcodes mean to the operator running doctor, and what to do. The
//! table in docs/cli.md is this table.

use std::net::IpAddr;

/// One errcode's meaning and the operator's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub meaning: &'static str,
    pub todo: String,
}

/// The explanation of `code`, with `errmsg` for what WeChat names in it (40164's IP).
pub fn explain(code: i64, errmsg: &str) -> Option<Explained> {
    let (meaning, todo): (&'static str, String) = match code {
        -1 => ("WeChat is busy", "retry in a few seconds".into()),
        40001 => (
            "the AppSecret is wrong (or, for a call with a token, the token is not the latest)",
            "check the AppSecret (公众平台 → 设置与开发 → 基本配置 → AppSecret); if it was reset, \
             update every holder, the gate's WECHAT_APPSECRET included"
                .into(),
        ),
        40125 => (
            "the AppSecret is not valid",
            "check the AppSecret in the environment variable against 基本配置 → AppSecret \
             (reset it there if nobody knows it, then update the gate)"
                .into(),
        ),
        40013 => (
            "the AppID is not valid",
            "check --appid: the account's AppID (基本配置 → AppID, wx + 16 characters)".into(),
        ),
        40164 => (
            "this machine's egress IP is not in the account's IP whitelist",
            match seen_ip(errmsg) {
                Some(ip) => format!(
                    "add {ip} (the address WeChat saw) to 基本配置 → IP白名单, \
                     and every other egress address the gate uses"
                ),
                None => "add this machine's egress IP, as WeChat sees it (after any NAT), \
                         to 基本配置 → IP白名单"
                    .into(),
            },
        ),
        89503 => (
            "calls from this IP need the administrator's confirmation",
            "the administrator must confirm this IP's call in the WeChat message just sent to \
             them, then run doctor again; an IP in the IP whitelist needs no confirmation"
                .into(),
        ),
        89501 => (
            "this IP is waiting for the administrator's confirmation",
            "ask the administrator to confirm it in WeChat; calls from this IP fail until then"
                .into(),
        ),
        89506 => (
            "the administrator refused this IP twice within 24 hours",
            "calls from this IP are blocked for 24 hours; add it to the IP whitelist, or wait \
             and have the administrator confirm the next call"
                .into(),
        ),
        89507 => (
            "the administrator refused this IP within the last hour",
            "wait 1 hour before calling from this IP again, then have the administrator confirm"
                .into(),
        ),
        45009 => (
            "the daily quota of this API is used up",
            "wait for the daily reset (or reset the quota in the admin console); \
             lower the gate's refresh rate if it is the gate that used it"
                .into(),
        ),
        42001 => (
            "the access token has expired",
            "run doctor again (it fetches a fresh token)".into(),
        ),
        40014 => (
            "the access token is not valid",
            "run doctor again; if it persists, another caller may be using the classic token API"
                .into(),
        ),
        48001 => (
            "this account has no permission for this API",
            "check the account's type and verification (认证) status".into(),
        ),
        40201 => (
            "the account's callback URL is not set or not valid",
            "set the server URL in 基本配置 → 服务器配置".into(),
        ),
        _ => return None,
    };
    Some(Explained { meaning, todo })
}

/// The address in 40164's errmsg: `invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in
/// whitelist` (the IPv4 one when there is one, else the IPv6 one).
pub fn seen_ip(errmsg: &str) -> Option<IpAddr> {
    let after = |marker: &str| -> Option<IpAddr> {
        let rest = errmsg.split_once(marker)?.1;
        let word = rest.split([' ', ',']).next()?;
        word.parse().ok()
    };
    let ip = after("invalid ip ").or_else(|| after(" ipv6 "))?;
    match ip {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(ip, IpAddr::V4)),
        v4 => Some(v4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_errcode_of_the_table_has_advice() {
        for code in [
            -1, 40001, 40125, 40013, 40164, 89503, 89501, 89506, 89507, 45009,
        ] {
            assert!(explain(code, "").is_some(), "{code}");
        }
        assert_eq!(explain(12345, ""), None);
    }

    #[test]
    fn the_admin_confirmation_codes_tell_their_waiting_times() {
        assert!(explain(89506, "").is_some_and(|e| e.todo.contains("24 hours")));
        assert!(explain(89507, "").is_some_and(|e| e.todo.contains("1 hour")));
        assert!(explain(89503, "").is_some_and(|e| e.todo.contains("confirm")));
    }

    #[test]
    fn the_ip_wechat_saw_is_read_from_40164s_errmsg() {
        let msg = "invalid ip 47.100.1.2 ipv6 ::ffff:47.100.1.2, not in whitelist rid: 65e6-1";
        assert_eq!(seen_ip(msg), Some("47.100.1.2".parse().expect("ip")));
        assert!(explain(40164, msg).is_some_and(|e| e.todo.starts_with("add 47.100.1.2 ")));
        let v6 = "invalid ip  ipv6 240e:e1::5, not in whitelist";
        assert_eq!(seen_ip(v6), Some("240e:e1::5".parse().expect("ip")));
        assert_eq!(seen_ip("invalid ip, not in whitelist"), None);
        assert!(explain(40164, "invalid ip, not in whitelist")
            .is_some_and(|e| e.todo.contains("as WeChat sees it")));
    }
}
