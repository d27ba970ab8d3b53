//! The reply to a decrypted push, sealed for WeChat: the backend's XML (or JSON)
//! encrypted into the push's envelope, signed with the token that verified the push.

use super::cipher::{self, AesKey};
use super::envelope;
use crate::message::Format;

/// The body WeChat gets for a backend's reply to a decrypted push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyBody {
    /// Empty, `success`, or no markup (neither XML nor JSON): sent as it is.
    AsIs,
    /// The encrypted envelope to send instead.
    Encrypted(String),
}

/// What the reply to a decrypted push is sealed with: the request's timestamp and
/// nonce, the account's token, key and appid.
pub struct ReplySeal<'a> {
    /// The push's format: the envelope goes back in it.
    pub format: Format,
    pub token: &'a str,
    pub key: &'a AesKey,
    pub appid: &'a str,
    pub timestamp: &'a str,
    pub nonce: &'a str,
}

/// Encrypts an XML reply into WeChat's envelope with the given fresh random prefix.
pub fn seal_reply(body: &[u8], seal: &ReplySeal<'_>, random16: &[u8; 16]) -> ReplyBody {
    // A UTF-8 byte-order mark (some Windows stacks write one) is not part of the XML.
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let trimmed = body.trim_ascii();
    // Markup of either format is sealed (in the push's envelope): a backend that
    // answers a JSON push in XML, or the other way round, never has it go out in
    // plaintext.
    let markup = matches!(trimmed.first(), Some(b'<' | b'{' | b'['));
    if trimmed == b"success" || !markup {
        return ReplyBody::AsIs;
    }
    let encrypt = cipher::encrypt(seal.key, seal.appid, body, random16);
    ReplyBody::Encrypted(envelope::reply_envelope_in(
        seal.format,
        seal.token,
        seal.timestamp,
        seal.nonce,
        &encrypt,
    ))
}
