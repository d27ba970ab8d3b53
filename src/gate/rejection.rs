//! Why the gate refuses a request: one reason per status code and counter, and the
//! short plain-text answer that names it. Every stage of a request (its head, its
//! body, the held-body deadline) refuses in these terms.

use std::borrow::Cow;

/// Why a request was refused. Each has its own status code and counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Method,
    Malformed,
    Source,
    Unavailable,
    Signature,
    Stale,
    TooLarge,
    LengthRequired,
    /// Safe mode: `msg_signature` does not match the body's `Encrypt`.
    MsgSignature,
    /// Safe mode: `Encrypt` did not decrypt (padding, length, appid, base64).
    Decrypt,
    /// A held push's body did not reach the filter in time.
    BodyTimeout,
    /// The decrypted message names another account than the route serves (Open
    /// Platform: its component or its authorizer).
    Account,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::Method,
        Reason::Malformed,
        Reason::Source,
        Reason::Unavailable,
        Reason::Signature,
        Reason::Stale,
        Reason::TooLarge,
        Reason::LengthRequired,
        Reason::MsgSignature,
        Reason::Decrypt,
        Reason::BodyTimeout,
        Reason::Account,
    ];

    pub fn status(self) -> u32 {
        match self {
            Reason::Method => 405,
            Reason::Malformed => 400,
            Reason::Source => 403,
            Reason::Unavailable => 503,
            Reason::Signature
            | Reason::Stale
            | Reason::MsgSignature
            | Reason::Decrypt
            | Reason::Account => 401,
            Reason::TooLarge => 413,
            Reason::LengthRequired => 411,
            Reason::BodyTimeout => 408,
        }
    }

    /// The last part of the counter `wechat_gate.rejected.<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Method => "method",
            Reason::Malformed => "malformed",
            Reason::Source => "source",
            Reason::Unavailable => "unavailable",
            Reason::Signature => "signature",
            Reason::Stale => "stale",
            Reason::TooLarge => "too_large",
            Reason::LengthRequired => "length_required",
            Reason::MsgSignature => "msg_signature",
            Reason::Decrypt => "decrypt",
            Reason::BodyTimeout => "body_timeout",
            Reason::Account => "account",
        }
    }
}

/// A refusal: the reason and a short detail for the response body and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: Cow<'static, str>,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }

    /// The plain-text body sent back.
    pub fn body(&self) -> String {
        format!("wechat-gate: {}: {}\n", self.reason.name(), self.detail)
    }

    /// Extra response headers: `Allow` for 405, `Retry-After` for 503.
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        match self.reason {
            Reason::Method => &[("allow", "GET, POST")],
            Reason::Unavailable => &[("retry-after", RETRY_AFTER_SECONDS)],
            _ => &[],
        }
    }
}

/// How long a caller refused with 503 should wait before trying again.
pub const RETRY_AFTER_SECONDS: &str = "5";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_the_documented_status() {
        let table: Vec<(u32, &str)> = Reason::ALL.iter().map(|r| (r.status(), r.name())).collect();
        assert_eq!(
            table,
            [
                (405, "method"),
                (400, "malformed"),
                (403, "source"),
                (503, "unavailable"),
                (401, "signature"),
                (401, "stale"),
                (413, "too_large"),
                (411, "length_required"),
                (401, "msg_signature"),
                (401, "decrypt"),
                (408, "body_timeout"),
                (401, "account")
            ]
        );
    }
}
