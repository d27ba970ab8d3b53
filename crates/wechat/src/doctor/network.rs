//! WeChat's view of the callback URL (`callback/check`): WeChat resolves the URL's
//! domain and pings each address once from the operator asked for. No DNS answer, or
//! every ping lost, means WeChat's pushes cannot reach the gate.

use super::report::{Check, Status};
use super::{failed, progress, CallError, Doctor};
use gate::query::encode_query;
use gate::token::wechat_api::ApiFailure;
use serde::Deserialize;
use serde_json::json;

const NAME: &str = "network";

#[derive(Debug, Deserialize)]
struct Reply {
    errcode: Option<i64>,
    errmsg: Option<String>,
    dns: Option<Vec<Dns>>,
    ping: Option<Vec<Ping>>,
}

#[derive(Debug, Deserialize)]
struct Dns {
    #[serde(default)]
    ip: String,
    #[serde(default)]
    real_operator: String,
}

#[derive(Debug, Deserialize)]
struct Ping {
    #[serde(default)]
    ip: String,
    #[serde(default)]
    from_operator: String,
    #[serde(default)]
    package_loss: String,
    #[serde(default)]
    time: String,
}

impl Ping {
    /// A ping that got no answer ("100%"); anything unreadable counts as lost.
    fn lost(&self) -> bool {
        let loss = self.package_loss.trim().trim_end_matches('%');
        loss.parse::<f64>().map_or(true, |l| l >= 100.0)
    }
}

fn ask(d: &Doctor, access: &str) -> Result<Reply, CallError> {
    let url = d.api.url(&format!(
        "/cgi-bin/callback/check?{}",
        encode_query(&[("access_token", access)])
    ));
    let body = json!({ "action": d.args.check_action, "check_operator": d.args.check_operator });
    let reply = d.http.post_json(&url, &body).map_err(CallError::NoReply)?;
    if reply.status != 200 {
        return Err(CallError::Api(ApiFailure::Status(u32::from(reply.status))));
    }
    let parsed: Reply =
        serde_json::from_slice(&reply.body).map_err(|_| CallError::Api(ApiFailure::BadReply))?;
    match parsed.errcode {
        Some(code) if code != 0 => Err(CallError::Api(ApiFailure::Errcode {
            code,
            message: parsed.errmsg.unwrap_or_default(),
        })),
        _ => Ok(parsed),
    }
}

fn table(reply: &Reply) -> Vec<String> {
    let dns = reply.dns.iter().flatten();
    let pings = reply.ping.iter().flatten();
    let w = dns
        .clone()
        .map(|d| d.ip.len())
        .chain(pings.clone().map(|p| p.ip.len()))
        .fold("address".len(), usize::max);
    let mut rows = vec![format!(
        "{:<4}  {:<w$}  {:<8}  {:>4}  {:>9}",
        "", "address", "operator", "loss", "time"
    )];
    for d in dns {
        rows.push(format!("{:<4}  {:<w$}  {}", "dns", d.ip, d.real_operator));
    }
    for p in pings {
        let time = if p.time.is_empty() { "-" } else { &p.time };
        rows.push(format!(
            "{:<4}  {:<w$}  {:<8}  {:>4}  {:>9}",
            "ping", p.ip, p.from_operator, p.package_loss, time
        ));
    }
    rows
}

pub(super) fn check(d: &Doctor, access: Option<&str>) -> Check {
    let Some(access) = access else {
        return Check::skipped(NAME, "an access token");
    };
    progress("asking WeChat to resolve and ping the callback URL (takes a few seconds)");
    let reply = match ask(d, access) {
        Ok(r) => r,
        Err(e) => return failed(NAME, "callback/check", e),
    };
    let dns = reply.dns.as_deref().unwrap_or_default();
    let pings = reply.ping.as_deref().unwrap_or_default();
    let lost = pings.iter().filter(|p| p.lost()).count();
    let asked_dns = d.args.check_action != "ping";
    let asked_ping = d.args.check_action != "dns";
    let summary = format!(
        "callback/check ({}, {}): {} DNS answers, {} of {} pings answered",
        d.args.check_action,
        d.args.check_operator,
        dns.len(),
        pings.len() - lost,
        pings.len()
    );
    let data = json!({
        "action": d.args.check_action, "operator": d.args.check_operator,
        "dns": dns.iter().map(|x| json!({"ip": x.ip, "real_operator": x.real_operator})).collect::<Vec<_>>(),
        "ping": pings.iter().map(|p| json!({
            "ip": p.ip, "from_operator": p.from_operator, "package_loss": p.package_loss, "time": p.time,
        })).collect::<Vec<_>>(),
    });
    let check = Check::new(NAME, Status::Pass, summary)
        .detail(table(&reply))
        .data(data);
    if asked_dns && dns.is_empty() {
        return Check {
            status: Status::Fail,
            ..check
        }
        .advise(
            "WeChat cannot resolve the callback URL's domain: its pushes cannot arrive. Check \
             the domain's public DNS records (not only an internal resolver's)",
        );
    }
    if asked_ping && (pings.is_empty() || lost == pings.len()) {
        return Check {
            status: Status::Fail,
            ..check
        }
        .advise(
            "the callback URL's addresses are unreachable from WeChat (every ping lost): open the \
             firewall / security group to WeChat's callback IPs (see callback_ips). If the host \
             only drops ICMP, pushes may still arrive: try `wechat-gate send` from outside",
        );
    }
    if lost > 0 {
        return Check {
            status: Status::Warn,
            ..check
        }
        .advise(format!(
            "{lost} of {} addresses did not answer WeChat's ping: remove them from DNS or open them",
            pings.len()
        ));
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(loss: &str) -> Ping {
        Ping {
            ip: "1.2.3.4".into(),
            from_operator: "UNICOM".into(),
            package_loss: loss.into(),
            time: String::new(),
        }
    }

    #[test]
    fn a_ping_is_lost_at_100_percent_or_when_unreadable() {
        assert!(!ping("0%").lost());
        assert!(ping("100%").lost());
        assert!(ping("").lost());
        assert!(!ping("50%").lost());
    }
}
