//! WeChat's errcodes: what each means, what the operator should do, and what the filter
//! does by itself. The one table behind the filter's log lines and `wechat-gate doctor`
//! (docs/cli.md and docs/operating.md print it). 基本配置 is 公众平台 → 设置与开发 → 基本配置.

use std::net::IpAddr;

/// What the filter does when a call ends in the errcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// The token is bad or expired: drop it and get a new one.
    NewToken,
    /// WeChat is busy: try again.
    Retry,
    /// Only the operator can fix it.
    Operator,
}

/// One errcode's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errcode {
    pub code: i64,
    pub meaning: &'static str,
    /// The operator's next step; see [`Errcode::todo`] for 40164's address.
    todo: &'static str,
    pub handling: Handling,
}

const fn row(code: i64, handling: Handling, meaning: &'static str, todo: &'static str) -> Errcode {
    Errcode {
        code,
        meaning,
        todo,
        handling,
    }
}

use Handling::{NewToken, Operator, Retry};

const TABLE: [Errcode; 16] = [
    row(-1, Retry, "WeChat is busy", "retry in a few seconds"),
    row(
        40001,
        NewToken,
        "the AppSecret is wrong (or, for a call with a token, the token is not the latest)",
        "check the AppSecret (基本配置 → AppSecret); if it was reset, update every holder, \
         the gate included",
    ),
    row(
        40013,
        Operator,
        "the AppID is not valid",
        "check the AppID: the account's, in 基本配置 → AppID (wx + 16 characters)",
    ),
    row(
        40014,
        NewToken,
        "the access token is not valid",
        "get a new token (the gate does; by hand, run doctor again); if it persists, \
         another caller may be using the classic token API",
    ),
    row(
        40125,
        Operator,
        "the AppSecret is not valid",
        "check the AppSecret against 基本配置 → AppSecret (reset it there if nobody knows it, \
         then update the gate)",
    ),
    row(
        40164,
        Operator,
        "this machine's egress IP is not in the account's IP whitelist",
        "add this machine's egress IP, as WeChat sees it (after any NAT), to 基本配置 → IP白名单",
    ),
    row(
        40201,
        Operator,
        "the account's callback URL is not set or not valid",
        "set the server URL in 基本配置 → 服务器配置",
    ),
    row(
        41002,
        Operator,
        "the call has no AppID",
        "set the AppID (the gate's appid, doctor's --appid)",
    ),
    row(
        41004,
        Operator,
        "the call has no AppSecret",
        "set the AppSecret: its environment variable is empty or unset",
    ),
    row(
        42001,
        NewToken,
        "the access token has expired",
        "get a new token (the gate does; by hand, run doctor again)",
    ),
    row(
        45009,
        Operator,
        "the daily quota of this API is used up",
        "wait for the daily reset (or reset the quota in the admin console); lower the gate's \
         refresh rate if it is the gate that used it",
    ),
    row(
        48001,
        Operator,
        "this account has no permission for this API",
        "check the account's type and verification (认证) status",
    ),
    row(
        89501,
        Operator,
        "this IP is waiting for the administrator's confirmation",
        "ask the administrator to confirm it in WeChat; calls from this IP fail until then",
    ),
    row(
        89503,
        Operator,
        "calls from this IP need the administrator's confirmation",
        "the administrator must confirm this IP's call in the WeChat message just sent to \
         them; an IP in the IP whitelist needs no confirmation",
    ),
    row(
        89506,
        Operator,
        "the administrator refused this IP twice within 24 hours",
        "calls from this IP are blocked for 24 hours; add it to the IP whitelist, or wait and \
         have the administrator confirm the next call",
    ),
    row(
        89507,
        Operator,
        "the administrator refused this IP within the last hour",
        "wait 1 hour before calling from this IP again, then have the administrator confirm",
    ),
];

/// The row of `code`, if WeChat's errcode is one the table knows.
pub fn lookup(code: i64) -> Option<&'static Errcode> {
    TABLE.iter().find(|e| e.code == code)
}

impl Errcode {
    /// The operator's next step, naming the address WeChat saw when 40164's `errmsg`
    /// holds it. `errmsg` is WeChat's text; only an address is taken from it.
    pub fn todo(&self, errmsg: &str) -> String {
        match (self.code, seen_ip(errmsg)) {
            (40164, Some(ip)) => format!(
                "add {ip} (the address WeChat saw) to 基本配置 → IP白名单, and every other \
                 egress address the gate uses"
            ),
            _ => self.todo.to_string(),
        }
    }
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
    fn every_errcode_the_operator_meets_has_a_row() {
        for code in [
            -1, 40001, 40013, 40014, 40125, 40164, 41002, 41004, 42001, 45009, 48001, 89501, 89503,
            89506, 89507, 40201,
        ] {
            assert!(
                lookup(code).is_some_and(|e| !e.meaning.is_empty() && !e.todo("").is_empty()),
                "{code}"
            );
        }
        assert_eq!(lookup(12345), None);
        assert_eq!(lookup(0), None);
    }

    #[test]
    fn each_errcode_has_one_row() {
        for (i, e) in TABLE.iter().enumerate() {
            assert!(
                !TABLE.iter().skip(i + 1).any(|other| other.code == e.code),
                "{}",
                e.code
            );
        }
    }

    #[test]
    fn the_admin_confirmation_codes_tell_their_waiting_times() {
        let todo = |code| lookup(code).map(|e| e.todo(""));
        assert!(todo(89506).is_some_and(|t| t.contains("24 hours")));
        assert!(todo(89507).is_some_and(|t| t.contains("1 hour")));
        assert!(todo(89503).is_some_and(|t| t.contains("confirm")));
    }

    #[test]
    fn the_ip_wechat_saw_is_read_from_40164s_errmsg() {
        let todo = |msg| lookup(40164).map(|e| e.todo(msg));
        let msg = "invalid ip 47.100.1.2 ipv6 ::ffff:47.100.1.2, not in whitelist rid: 65e6-1";
        assert_eq!(seen_ip(msg), Some("47.100.1.2".parse().expect("ip")));
        assert!(todo(msg).is_some_and(|t| t.starts_with("add 47.100.1.2 ")));
        let v6 = "invalid ip  ipv6 240e:e1::5, not in whitelist";
        assert_eq!(seen_ip(v6), Some("240e:e1::5".parse().expect("ip")));
        assert_eq!(seen_ip("invalid ip, not in whitelist"), None);
        assert!(
            todo("invalid ip, not in whitelist").is_some_and(|t| t.contains("as WeChat sees it"))
        );
    }

    #[test]
    fn only_40164_takes_an_address_from_the_errmsg() {
        let msg = "invalid ip 47.100.1.2, not in whitelist";
        assert!(lookup(89503).is_some_and(|e| !e.todo(msg).contains("47.100.1.2")));
    }
}
