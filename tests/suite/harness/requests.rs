//! The suite's account and the requests WeChat sends it: signed queries with nonces
//! no other request of the run carries, text messages, and the one family of
//! helpers that sends them to the gate's path.

use super::envoy::Envoy;
use super::now;
use std::sync::atomic::{AtomicUsize, Ordering};
use wechat::http1::client::Response;

/// The account's token.
pub const TOKEN: &str = "e2e-token-5d1f";
/// A source on the static allowlist of `gate_config`.
pub const LISTED: &str = "127.0.0.2";
/// A source on no allowlist.
pub const UNLISTED: &str = "127.0.0.3";

/// A nonce no other request of this test run carries (WeChat's are random): every
/// signed query may be used once, a second use is a replay.
pub fn nonce() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}{:06}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A signed query for `token` at `timestamp`, with `extra` parameters.
pub fn signed(token: &str, timestamp: i64, nonce: &str, extra: &[(&str, &str)]) -> String {
    wechat::wechat::signed_query(token, &timestamp.to_string(), nonce, extra)
}

/// A query signed with the account's token now, with a fresh nonce.
pub fn fresh() -> String {
    signed(TOKEN, now(), &nonce(), &[])
}

/// The XML of a text message, as WeChat posts it.
pub fn text_xml(openid: &str, content: &str, msg_id: u64) -> String {
    wechat::wechat::text_message_xml("gh_e2e", openid, &now().to_string(), content, msg_id)
}

impl Envoy {
    /// A push as WeChat sends it: `POST /wechat?{query}`, `content-type: text/xml`.
    pub fn post(&self, query: &str, body: &str, source: &str) -> Response {
        self.send(
            "POST",
            &format!("/wechat?{query}"),
            &[("content-type", b"text/xml")],
            body.as_bytes(),
            source,
        )
    }

    /// A handshake signed with `token` now, from the listed source.
    pub fn handshake(&self, token: &str, echostr: &str) -> Response {
        let query = signed(token, now(), &nonce(), &[("echostr", echostr)]);
        self.send("GET", &format!("/wechat?{query}"), &[], b"", LISTED)
    }

    /// A push of `<xml/>` signed now, from `source`: its status.
    pub fn post_from(&self, source: &str) -> u16 {
        self.post(&fresh(), "<xml/>", source).status
    }
}
