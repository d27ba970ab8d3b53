//! The tickets WeChat hands out for an access token (`ticket/getticket`), kept in the
//! proxy's shared data for every worker, and the JS-SDK signature made with the
//! `jsapi` one (JS-SDK 说明文档, 附录1), so that a backend needs neither.

use super::{Answer, JSON};
use serde::{Deserialize, Serialize};

/// A ticket is handed out from the cache until this long before it expires.
pub const TICKET_MARGIN_SECONDS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketType {
    Jsapi,
    WxCard,
}

impl TicketType {
    /// `type=jsapi|wx_card` in a getticket query (another type is not cached).
    pub fn of_query(query: &str) -> Option<TicketType> {
        match super::route::query_value(query, "type").as_deref() {
            Some("jsapi") => Some(TicketType::Jsapi),
            Some("wx_card") => Some(TicketType::WxCard),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TicketType::Jsapi => "jsapi",
            TicketType::WxCard => "wx_card",
        }
    }

    /// The shared-data key of the account's ticket of this type.
    pub fn key(self, appid: &str) -> String {
        format!("wechat_gate.{appid}.ticket.{}", self.name())
    }
}

/// A cached ticket (a secret of the account's: never logged).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub ticket: String,
    /// Unix seconds when WeChat says it expires.
    pub expires_at: i64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    errcode: i64,
    ticket: Option<String>,
    expires_in: Option<i64>,
}

impl Ticket {
    /// The cached value, if it is one and good for more than the margin at `now`.
    pub fn usable(bytes: &[u8], now: i64) -> Option<Ticket> {
        let t: Ticket = serde_json::from_slice(bytes).ok()?;
        (now < t.expires_at.saturating_sub(TICKET_MARGIN_SECONDS)).then_some(t)
    }

    /// The ticket in WeChat's getticket reply (errcode 0), received at `now`.
    pub fn from_reply(body: &[u8], now: i64) -> Option<Ticket> {
        let r: Reply = serde_json::from_slice(body).ok()?;
        match (r.errcode, r.ticket, r.expires_in) {
            (0, Some(ticket), Some(expires_in)) if !ticket.is_empty() && expires_in > 0 => {
                Some(Ticket {
                    ticket,
                    expires_at: now.saturating_add(expires_in),
                })
            }
            _ => None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// WeChat's own getticket answer for it, as of `now`.
    pub fn answer(&self, now: i64) -> Answer {
        let body = serde_json::json!({
            "errcode": 0,
            "errmsg": "ok",
            "ticket": self.ticket,
            "expires_in": self.expires_at.saturating_sub(now).max(0),
        });
        Answer::json(body.to_string().into_bytes())
    }
}

/// JS-SDK's signature of page `url` (its `#fragment` dropped): SHA-1, hex, of
/// `jsapi_ticket=…&noncestr=…&timestamp=…&url=…`.
pub fn jssdk_signature(ticket: &str, nonce: &str, timestamp: i64, url: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    let plain = format!("jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url}");
    sha1_smol::Sha1::from(plain.as_bytes()).digest().to_string()
}

/// The gate's jssdk-config answer: what `wx.config` needs for page `url`.
pub fn jssdk_answer(
    appid: &str,
    ticket: &Ticket,
    nonce: &str,
    timestamp: i64,
    url: &str,
) -> Answer {
    let url = url.split('#').next().unwrap_or(url);
    let body = serde_json::json!({
        "errcode": 0,
        "errmsg": "ok",
        "appId": appid,
        "timestamp": timestamp,
        "nonceStr": nonce,
        "signature": jssdk_signature(&ticket.ticket, nonce, timestamp, url),
        "url": url,
    });
    Answer {
        headers: vec![("content-type", JSON.to_string())],
        ..Answer::json(body.to_string().into_bytes())
    }
}
