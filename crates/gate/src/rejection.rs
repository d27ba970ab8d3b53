//! Why the gate refuses a request: one reason per status code and counter, and the
//! short plain-text answer that names it. Every stage of a request (its head, its
//! body, the held-body deadline) refuses in these terms.

use std::borrow::Cow;

/// Declares [`Reason`] with its status and name in one row per variant, so that its
/// list, its statuses and its names cannot fall out of step.
macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $status:literal, $name:literal;)*) => {
        /// Why a request was refused. Each has its own status code and counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order (`reason as usize` is its place).
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            pub fn status(self) -> u32 {
                match self {
                    $(Reason::$variant => $status,)*
                }
            }

            /// The reason's tag in `wechat_gate_rejected_total{reason="…"}`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)*
                }
            }
        }
    };
}

reasons! {
    Method => 405, "method";
    Malformed => 400, "malformed";
    Source => 403, "source";
    Unavailable => 503, "unavailable";
    Signature => 401, "signature";
    Stale => 401, "stale";
    TooLarge => 413, "too_large";
    LengthRequired => 411, "length_required";
    /// Safe mode: `msg_signature` does not match the body's `Encrypt`.
    MsgSignature => 401, "msg_signature";
    /// Safe mode: `Encrypt` did not decrypt (padding, length, appid, base64).
    Decrypt => 401, "decrypt";
    /// A held push's body did not reach the filter in time.
    BodyTimeout => 408, "body_timeout";
    /// The decrypted message names another account than the route serves (Open
    /// Platform: its component or its authorizer).
    Account => 401, "account";
    /// Stream mode (or before the body mode is known): the worker already holds as
    /// many pushes on their headers, waiting for a body, as it may (a crowd of
    /// stalled clients). Answered with `Retry-After`: WeChat tries again.
    Busy => 503, "busy";
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
            Reason::Unavailable | Reason::Busy => &[("retry-after", RETRY_AFTER_SECONDS)],
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
    fn every_reason_has_the_documented_status_and_its_place() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
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
                (401, "account"),
                (503, "busy")
            ]
        );
    }
}
