//! A safe-mode push's body verified: its `Encrypt` read from the envelope and
//! checked against `msg_signature`, which signs the token, the query's timestamp and
//! nonce, and that `Encrypt` (WeCom's handshake: its `echostr`).

use super::{envelope, QueryVerified, SafeModeQuery};
use crate::config::Config;
use crate::message::{Format, Message};
use crate::rejection::{Reason, Rejection};
use crate::signature::{sign, signature_matches, HexDigest};
use crate::tables::replay::QueryUse;

/// A safe-mode push's `Encrypt`, verified by `msg_signature`, not yet decrypted.
pub struct SealedPush {
    /// The query, when the body is what verifies it ([`QueryVerified::ByBody`]): to
    /// be recorded against replays before anything is decrypted, so that a used one
    /// is a replay whatever it carries.
    pub query_verified_by_body: Option<QueryUse>,
    pub(super) outer: Message<'static>,
    pub(super) encrypt: String,
    /// Which of the rotated tokens verified `msg_signature`.
    pub(super) token: usize,
    pub(super) format: Format,
}

/// A safe-mode push's body (in `format`) read and its `Encrypt` checked against
/// `msg_signature`.
pub fn verify(
    body: &[u8],
    format: Format,
    query: &SafeModeQuery,
    config: &Config,
) -> Result<SealedPush, Rejection> {
    let outer = Message::read(body, format)
        .map_err(|e| Rejection::new(Reason::Malformed, format!("the body {e}")))?
        .into_owned();
    let encrypt = envelope::encrypt_of(&outer)
        .map_err(|e| Rejection::new(Reason::Malformed, e.to_string()))?;
    let (token, digest) = check_msg_signature(config, query, &encrypt)?;
    // WeCom: the query is first verified here, and only now recorded against replays.
    let query_verified_by_body = match query.verified {
        QueryVerified::ByBody => query
            .timestamp
            .parse()
            .ok()
            .and_then(|ts| QueryUse::of(&digest, ts, config.timestamp_tolerance_seconds)),
        QueryVerified::BySignature { .. } => None,
    };
    Ok(SealedPush {
        query_verified_by_body,
        outer,
        encrypt,
        token,
        format,
    })
}

/// `msg_signature` must sign the body's `Encrypt` with the token that signed the
/// query, or (WeCom, no query signature) with any token: which one, and the digest.
fn check_msg_signature(
    config: &Config,
    safe: &SafeModeQuery,
    encrypt: &str,
) -> Result<(usize, HexDigest), Rejection> {
    let mismatch = || {
        Rejection::new(
            Reason::MsgSignature,
            "msg_signature does not match the body's Encrypt",
        )
    };
    let parts = [safe.timestamp.as_str(), safe.nonce.as_str(), encrypt];
    let index = match safe.verified {
        QueryVerified::BySignature { token } => token,
        QueryVerified::ByBody => {
            return verify_with_any_token(config, &safe.msg_signature, &parts)
                .map_err(|_| mismatch())
        }
    };
    let token = config.token.get(index).ok_or_else(mismatch)?;
    #[cfg(feature = "attribution-twice-sha1")]
    let _ = std::hint::black_box(sign(std::hint::black_box(&[
        token.expose(),
        parts[0],
        parts[1],
        parts[2],
    ])));
    let expected = sign(&[token.expose(), parts[0], parts[1], parts[2]]);
    if !signature_matches(&expected, safe.msg_signature.as_bytes()) {
        return Err(mismatch());
    }
    Ok((index, expected))
}

/// Which token (of a rotation) makes `msg_signature` sign `parts`, and the digest.
/// Every token is tried, in constant time each.
pub fn verify_with_any_token(
    config: &Config,
    msg_signature: &str,
    parts: &[&str],
) -> Result<(usize, HexDigest), Rejection> {
    let mut matched = None;
    for (i, token) in config.token.all() {
        let mut all = vec![token.expose()];
        all.extend_from_slice(parts);
        let expected = sign(&all);
        if signature_matches(&expected, msg_signature.as_bytes()) && matched.is_none() {
            matched = Some((i, expected));
        }
    }
    matched.ok_or_else(|| {
        Rejection::new(
            Reason::MsgSignature,
            "msg_signature does not match the request",
        )
    })
}
