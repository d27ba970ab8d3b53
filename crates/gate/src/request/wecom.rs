//! WeCom (企业微信)'s signed requests. Every request carries `msg_signature`, which
//! signs the token, timestamp and nonce with the handshake's `echostr` or the push's
//! `Encrypt`: no signature covers the query alone.
//!
//! - The GET handshake's `echostr` is encrypted: checked against `msg_signature`, and
//!   once its query is known to be unused (a used one is a replay), decrypted with the
//!   EncodingAESKey and the CorpID (or suite id) as ReceiveId: its plaintext is the
//!   answer.
//! - A push is judged on its head by its source and freshness only; its
//!   `msg_signature` is checked against the body's `Encrypt` (and the query recorded
//!   against replays) once the body has come. Held (hold mode), nothing reaches the
//!   backend before; streamed, its headers do, and a push that fails is reset
//!   upstream before its body completes.

use super::{
    check_freshness, check_source, method_of, non_empty, signed_params, Echostr, Method,
    RequestHead, Sources, Verdict,
};
use crate::config::Config;
use crate::query::parse_query;
use crate::rejection::{Reason, Rejection};
use crate::safe_mode::{cipher, verify_with_any_token, QueryVerified, SafeModeQuery};
use crate::tables::replay::QueryUse;

pub(super) fn check(
    req: &RequestHead<'_>,
    query: &[u8],
    config: &Config,
    sources: &Sources,
    now_unix: i64,
) -> Result<Verdict, Rejection> {
    let method = method_of(req)?;
    let q = parse_query(query).map_err(|e| Rejection::new(Reason::Malformed, e.to_string()))?;
    let p = signed_params(&q, "msg_signature", q.msg_signature.as_deref())?;
    let echostr = match method {
        Method::Get => Some(non_empty("echostr", q.echostr.as_deref())?),
        Method::Post => None,
    };
    let source = check_source(req.source, config, sources)?;
    let tolerance = config.timestamp_tolerance_seconds;
    let Some(echostr) = echostr else {
        check_freshness(p.timestamp_value, now_unix, tolerance)?;
        return Ok(Verdict::Forward {
            openid: None,
            source,
            safe: Some(SafeModeQuery {
                msg_signature: p.signature.to_string(),
                timestamp: p.timestamp.to_string(),
                nonce: p.nonce.to_string(),
                verified: QueryVerified::ByBody,
            }),
            // Recorded once the body's Encrypt has verified it.
            query: None,
            authorizer: None,
        });
    };
    let (_, expected) =
        verify_with_any_token(config, p.signature, &[p.timestamp, p.nonce, echostr])?;
    check_freshness(p.timestamp_value, now_unix, tolerance)?;
    Ok(Verdict::Echo {
        // Opened once the query is known to be unused: a used one is a replay.
        echostr: Echostr::Sealed(echostr.to_string()),
        source,
        query: QueryUse::of(&expected, p.timestamp_value, tolerance),
    })
}

/// WeCom's handshake plaintext is a short random token (digits, in practice): at most
/// 128 printable ASCII characters, none of them markup.
fn is_handshake_token(plain: &[u8]) -> bool {
    (1..=128).contains(&plain.len())
        && plain
            .iter()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'{' | b'}'))
}

/// The handshake's answer: the `echostr` decrypted, with any of the keys.
pub(super) fn open_echostr(config: &Config, echostr: &str) -> Result<String, Rejection> {
    let (Some(safe_mode), Some(receive_id)) = (&config.safe_mode, &config.appid) else {
        return Err(Rejection::new(
            Reason::Decrypt,
            "no EncodingAESKey to open the echostr with",
        ));
    };
    let mut failure = None;
    for (_, key) in safe_mode.keys.all() {
        match cipher::decrypt(key, receive_id, echostr) {
            Ok(plain) if is_handshake_token(&plain) => {
                return String::from_utf8(plain)
                    .map_err(|_| Rejection::new(Reason::Decrypt, "the echostr is not UTF-8"))
            }
            // A push's Encrypt under a push's query is signed exactly as an echostr
            // would be: answering it would decrypt a message for whoever saw it.
            Ok(_) => {
                return Err(Rejection::new(
                    Reason::Decrypt,
                    "the echostr's plaintext is not a handshake's token (a message?)",
                ))
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    Err(Rejection::new(
        Reason::Decrypt,
        failure.map_or_else(|| "no key".to_string(), |e| format!("echostr: {e}")),
    ))
}
