//! One call to WeChat made for a caller: the request for the current upstream with
//! the real token (or the AppSecret), and WeChat's reply judged: answered, a refused
//! token (fetch a new one and send once more), a transport failure before the call
//! was sent (the next upstream), or one after it was (never sent twice).
//!
//! Envoy answers a failed call itself, in text: `no healthy upstream`, `upstream
//! connect error or disconnect/reset before headers. … reset reason: connection
//! failure …` (not sent), other reset reasons (sent, then broken), `upstream request
//! timeout` (sent, no answer). WeChat answers in JSON or with media, never those.

use super::refusal::Refusal;
use super::route::{Kind, Target};
use super::ticket::{self, Ticket, TicketType};
use super::{Answer, Outcome};
use crate::config::WechatApi;
use crate::token::Outgoing;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use std::time::Duration;

/// WeChat's errcodes for a token that is not (or no longer) good.
pub const REFUSED_TOKEN: [i64; 3] = [40001, 40014, 42001];

/// The JS-SDK signature asked for: the page and the values signed with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jssdk {
    pub url: String,
    pub nonce: String,
    pub timestamp: i64,
}

/// One caller's call. `Debug` shows no token.
#[derive(Clone)]
pub struct Call {
    target: Target,
    jssdk: Option<Jssdk>,
    content_type: Option<String>,
    body: Vec<u8>,
    upstream: usize,
    token_retried: bool,
    /// The token the call was last sent with.
    sent_with: Option<String>,
    /// WeChat refused `sent_with`: the call waits for another.
    refused: bool,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.target.method)
            .field("path", &self.target.path)
            .field("upstream", &self.upstream)
            .field("token_retried", &self.token_retried)
            .finish_non_exhaustive()
    }
}

/// WeChat's reply to a call, as the host hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// `None`: the call failed with no reply (a reset).
    pub status: Option<u32>,
    pub content_type: Option<String>,
    pub disposition: Option<String>,
    pub body: Vec<u8>,
}

/// What comes after a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Answer the caller (and cache this ticket).
    Answer {
        answer: Answer,
        ticket: Option<Ticket>,
    },
    /// WeChat refused the token: wait for another ([`Call::refused_token`]), then
    /// [`Call::request`] again.
    NewToken,
    /// Not sent: [`Call::request`] again, for the next upstream.
    FailOver,
}

#[derive(Deserialize)]
struct Errcode {
    errcode: Option<i64>,
}

impl Call {
    pub fn new(target: Target, content_type: Option<String>) -> Call {
        Call {
            target,
            jssdk: None,
            content_type,
            body: Vec::new(),
            upstream: 0,
            token_retried: false,
            sent_with: None,
            refused: false,
        }
    }

    /// The JS-SDK signature for a page: signed with the cached jsapi ticket, or
    /// after a getticket call.
    pub fn jssdk(jssdk: Jssdk) -> Call {
        let target = Target {
            method: "GET".into(),
            path: "/cgi-bin/ticket/getticket".into(),
            query: "type=jsapi".into(),
            kind: Kind::Ticket(TicketType::Jsapi),
        };
        Call {
            jssdk: Some(jssdk),
            ..Call::new(target, None)
        }
    }

    pub fn set_body(&mut self, body: Vec<u8>) {
        self.body = body;
    }

    pub fn needs_token(&self) -> bool {
        !matches!(self.target.kind, Kind::Secret | Kind::Caller)
    }

    /// The ticket the call is for, which the cache may answer.
    pub fn ticket(&self) -> Option<TicketType> {
        match self.target.kind {
            Kind::Ticket(t) => Some(t),
            _ => None,
        }
    }

    /// The token WeChat refused for this call, while it waits for another.
    pub fn refused_token(&self) -> Option<&str> {
        self.sent_with.as_deref().filter(|_| self.refused)
    }

    /// The answer from a cached ticket, as of `now`.
    pub fn answer_from(&self, appid: &str, ticket: &Ticket, now: i64) -> Answer {
        match &self.jssdk {
            Some(j) => ticket::jssdk_answer(appid, ticket, &j.nonce, j.timestamp, &j.url),
            None => ticket.answer(now),
        }
    }

    /// The request for the current upstream, with `token` (for a call that needs
    /// one); `None` when every upstream has been tried.
    pub fn request(&mut self, api: &WechatApi, token: Option<&str>) -> Option<Outgoing> {
        let upstream = api.upstreams.get(self.upstream)?;
        self.refused = false;
        self.sent_with = token.filter(|_| self.needs_token()).map(str::to_string);
        let path = format!("{}?{}", self.target.path, self.query(api));
        let mut headers = vec![
            (":method", self.target.method.clone()),
            (":path", path),
            (":authority", upstream.authority.clone()),
        ];
        if let Some(ct) = &self.content_type {
            headers.push(("content-type", ct.clone()));
        }
        Some(Outgoing {
            cluster: upstream.cluster.clone(),
            headers,
            body: (!self.body.is_empty()).then(|| self.body.clone()),
            timeout: Duration::from_millis(api.timeout_ms),
        })
    }

    /// The caller's query with what the gate sets first: the token, or the AppID and
    /// AppSecret; whatever the caller sent for those is dropped.
    fn query(&self, api: &WechatApi) -> String {
        let enc = |v: &str| utf8_percent_encode(v, NON_ALPHANUMERIC).to_string();
        if self.target.kind == Kind::Caller {
            return self.target.query.clone();
        }
        let (mut out, drop): (String, &[&str]) = match self.target.kind {
            Kind::Secret => (
                format!(
                    "appid={}&secret={}",
                    enc(&api.appid),
                    enc(api.secret.expose())
                ),
                &["appid", "secret", "access_token"],
            ),
            _ => (
                format!(
                    "access_token={}",
                    enc(self.sent_with.as_deref().unwrap_or(""))
                ),
                &["access_token"],
            ),
        };
        for pair in self.target.query.split('&').filter(|p| !p.is_empty()) {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            if !drop.contains(&key) {
                out.push('&');
                out.push_str(pair);
            }
        }
        out
    }

    /// Judges WeChat's reply (or Envoy's for it) at `now`.
    pub fn on_reply(&mut self, api: &WechatApi, reply: &Reply, now: i64) -> Next {
        match transport(reply) {
            Some(Transport::NotSent) => return self.fail_over(api),
            Some(Transport::Broken) => {
                return answer(Refusal::Unreachable.answer_saying(
                    "the connection broke after the call was sent; it was not repeated",
                ))
            }
            Some(Transport::TimedOut) => return answer(Refusal::TimedOut.answer()),
            None => {}
        }
        let errcode = errcode_of(reply);
        if errcode.is_some_and(|c| REFUSED_TOKEN.contains(&c))
            && !self.token_retried
            && self.sent_with.is_some()
        {
            self.token_retried = true;
            self.refused = true;
            return Next::NewToken;
        }
        let ticket = self
            .ticket()
            .and_then(|_| Ticket::from_reply(&reply.body, now));
        if let (Some(t), Some(_)) = (&ticket, &self.jssdk) {
            return Next::Answer {
                answer: self.answer_from(&api.appid, t, now),
                ticket,
            };
        }
        let mut headers = Vec::new();
        if let Some(ct) = &reply.content_type {
            headers.push(("content-type", ct.clone()));
        }
        if let Some(cd) = &reply.disposition {
            headers.push(("content-disposition", cd.clone()));
        }
        Next::Answer {
            answer: Answer {
                status: reply.status.unwrap_or(502),
                headers,
                body: reply.body.clone(),
                outcome: match errcode {
                    Some(c) if c != 0 => Outcome::Errcode,
                    _ => Outcome::Answered,
                },
            },
            ticket,
        }
    }

    fn fail_over(&mut self, api: &WechatApi) -> Next {
        if self.next_upstream(api) {
            Next::FailOver
        } else {
            answer(Refusal::Unreachable.answer_saying("no upstream could be reached"))
        }
    }

    /// On to the next upstream (the host would not send the call): false if there
    /// is none.
    pub fn next_upstream(&mut self, api: &WechatApi) -> bool {
        self.upstream += 1;
        self.upstream < api.upstreams.len()
    }
}

fn answer(answer: Answer) -> Next {
    Next::Answer {
        answer,
        ticket: None,
    }
}

/// WeChat's errcode in a JSON reply.
fn errcode_of(reply: &Reply) -> Option<i64> {
    let first = reply.body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice::<Errcode>(&reply.body)
        .ok()
        .and_then(|e| e.errcode)
}

enum Transport {
    NotSent,
    Broken,
    TimedOut,
}

/// Envoy's own answer for a call that failed, read from its text (see the module
/// doc); `None` for WeChat's answers.
fn transport(reply: &Reply) -> Option<Transport> {
    let Some(status) = reply.status else {
        return Some(Transport::Broken);
    };
    let text = std::str::from_utf8(&reply.body).unwrap_or("");
    let plain = reply
        .content_type
        .as_deref()
        .is_none_or(|ct| ct.starts_with("text/plain"));
    if !plain {
        return None;
    }
    match status {
        504 if text.starts_with("upstream request timeout") => Some(Transport::TimedOut),
        503 if text.starts_with("no healthy upstream") => Some(Transport::NotSent),
        503 if text.starts_with("upstream connect error or disconnect/reset before headers") => {
            let not_sent = ["connection failure", "connection timeout", "overflow"]
                .iter()
                .any(|why| text.contains(why));
            Some(if not_sent {
                Transport::NotSent
            } else {
                Transport::Broken
            })
        }
        _ => None,
    }
}
