//! The gate's own answers in the API role: each a status and a JSON body in WeChat's
//! shape (`{"errcode": N, "errmsg": "wechat-gate: …"}`), so an SDK reports it as it
//! reports WeChat's errors. The table is the one place the codes are kept (the README
//! and docs/api-role.md list them).

use super::{Answer, Outcome, JSON};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A path the gate will not send to WeChat (empty, `.` or `..` segment, an
    /// encoded or unexpected byte), or jssdk-config without `url`.
    BadPath,
    /// The caller's address is not in `callers`.
    NotACaller,
    /// An unknown endpoint of the gate's own (`<path>/wechat-gate/…`).
    NoSuchEndpoint,
    /// A body over `max_body_bytes`.
    TooLarge,
    /// No upstream could be reached, or the connection broke after the call was
    /// sent (then it is not repeated), or WeChat's reply was too large.
    Unreachable,
    /// No access token to be had.
    NoToken,
    /// WeChat did not answer in time after the call was sent.
    TimedOut,
}

/// Every refusal: status, errcode, what the caller is told.
const TABLE: &[(Refusal, u32, i64, &str)] = &[
    (
        Refusal::BadPath,
        400,
        94000,
        "the path is not one the gate sends to WeChat",
    ),
    (
        Refusal::NotACaller,
        403,
        94030,
        "this address is not in the gate's callers",
    ),
    (
        Refusal::NoSuchEndpoint,
        404,
        94040,
        "no such endpoint of the gate's",
    ),
    (
        Refusal::TooLarge,
        413,
        94130,
        "the body is larger than max_body_bytes",
    ),
    (
        Refusal::Unreachable,
        502,
        95020,
        "WeChat could not be reached",
    ),
    (Refusal::NoToken, 503, 95030, "no access token to be had"),
    (
        Refusal::TimedOut,
        504,
        95040,
        "WeChat did not answer in time; the call may have been executed and was not repeated",
    ),
];

impl Refusal {
    fn row(self) -> (u32, i64, &'static str) {
        TABLE
            .iter()
            .find(|(r, ..)| *r == self)
            .map_or((500, 95000, "internal"), |(_, s, c, m)| (*s, *c, *m))
    }

    /// The refusal whose errcode is `code` (doctor reads the gate's answers by it).
    pub fn of_errcode(code: i64) -> Option<Refusal> {
        TABLE
            .iter()
            .find(|(_, _, c, _)| *c == code)
            .map(|(r, ..)| *r)
    }

    /// Every refusal, in the table's order.
    pub fn all() -> impl Iterator<Item = Refusal> {
        TABLE.iter().map(|(r, ..)| *r)
    }

    pub fn status(self) -> u32 {
        self.row().0
    }

    pub fn errcode(self) -> i64 {
        self.row().1
    }

    /// The answer, its errmsg the table's text.
    pub fn answer(self) -> Answer {
        self.answer_saying("")
    }

    /// The answer, its errmsg the table's text and `detail` (never a secret).
    pub fn answer_saying(self, detail: &str) -> Answer {
        let (status, errcode, text) = self.row();
        let errmsg = if detail.is_empty() {
            format!("wechat-gate: {text}")
        } else {
            format!("wechat-gate: {text}: {detail}")
        };
        let body = serde_json::json!({ "errcode": errcode, "errmsg": errmsg });
        Answer {
            status,
            headers: vec![("content-type", JSON.to_string())],
            body: body.to_string().into_bytes(),
            outcome: if status < 500 {
                Outcome::Refused
            } else {
                Outcome::Unanswered
            },
        }
    }
}

/// The caller's words for WeChat's errcode `code` when no token can be had: what to
/// do about it, from the errcode table.
/// `errmsg` is WeChat's (only an address is taken from it, for 40164).
pub fn no_token_detail(code: Option<i64>, errmsg: &str) -> String {
    match code {
        None => "WeChat's token API could not be reached from the proxy".to_string(),
        Some(code) => match crate::errcodes::lookup(code) {
            Some(e) => format!(
                "WeChat answered errcode {code} ({}): {}",
                e.meaning,
                e.todo(errmsg)
            ),
            None => format!("WeChat answered errcode {code}"),
        },
    }
}
