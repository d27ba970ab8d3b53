//! Safe mode's envelopes, in XML or (Mini Programs) JSON: the `Encrypt` of a pushed
//! body, the body the gate forwards when it passes a push on still encrypted, and the
//! sealed reply (`Encrypt`, `MsgSignature`, `TimeStamp`, `Nonce`) WeChat expects back.

use crate::message::{json_string, Format, Message};
use crate::signature::{as_str, sign};
use crate::xml::{cdata, element, ElementError};
use std::fmt;

/// A pushed envelope as WeChat sends it, in `format` (without `ToUserName` when `to`
/// is `None`).
pub fn push_body_in(format: Format, to: Option<&str>, encrypt: &str) -> String {
    match format {
        Format::Xml => push_body(to, encrypt),
        Format::Json => match to {
            Some(to) => format!(
                "{{\"ToUserName\":{},\"Encrypt\":{}}}",
                json_string(to),
                json_string(encrypt)
            ),
            None => format!("{{\"Encrypt\":{}}}", json_string(encrypt)),
        },
    }
}

/// The sealed reply in `format`.
pub fn reply_envelope_in(
    format: Format,
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypt: &str,
) -> String {
    if format == Format::Xml {
        return reply_envelope(token, timestamp, nonce, encrypt);
    }
    let signature = sign(&[token, timestamp, nonce, encrypt]);
    let timestamp = if !timestamp.is_empty() && timestamp.bytes().all(|b| b.is_ascii_digit()) {
        timestamp.to_string()
    } else {
        json_string(timestamp)
    };
    format!(
        "{{\"Encrypt\":{},\"MsgSignature\":{},\"TimeStamp\":{timestamp},\"Nonce\":{}}}",
        json_string(encrypt),
        json_string(as_str(&signature)),
        json_string(nonce),
    )
}

/// The one `Encrypt` of a read message; it must be non-empty and hold no markup (what
/// is not base64 fails decryption).
pub fn encrypt_of(message: &Message) -> Result<String, ExtractError> {
    let value = match message.get("Encrypt") {
        Ok(Some(v)) => v.trim(),
        Ok(None) => return Err(ExtractError::Missing),
        Err(ElementError::Repeated) => return Err(ExtractError::Repeated),
        Err(ElementError::Malformed) => return Err(ExtractError::Malformed),
    };
    if value.is_empty() || value.contains(['<', '>', '&', '"', '\\']) {
        return Err(ExtractError::Malformed);
    }
    Ok(value.to_string())
}

/// `<xml><ToUserName/><Encrypt/></xml>`, as WeChat sends a safe-mode push (without
/// `ToUserName` when `to` is `None`).
pub fn push_body(to: Option<&str>, encrypt: &str) -> String {
    let to = to
        .map(|t| format!("<ToUserName>{}</ToUserName>", cdata(t)))
        .unwrap_or_default();
    format!("<xml>{to}<Encrypt>{}</Encrypt></xml>", cdata(encrypt))
}

/// The encrypted reply WeChat expects for a safe-mode push.
pub fn reply_envelope(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let signature = sign(&[token, timestamp, nonce, encrypt]);
    // The timestamp and nonce come from the push's query: CDATA keeps any markup in
    // them inert.
    format!(
        "<xml>\n<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n<MsgSignature><![CDATA[{}]]></MsgSignature>\n\
         <TimeStamp>{}</TimeStamp>\n<Nonce>{}</Nonce>\n</xml>",
        as_str(&signature),
        if timestamp.bytes().all(|b| b.is_ascii_digit()) { timestamp.to_string() } else { cdata(timestamp) },
        cdata(nonce),
    )
}

/// Why the `Encrypt` element could not be taken from a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractError {
    Missing,
    Repeated,
    Malformed,
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExtractError::Missing => "the body has no Encrypt element",
            ExtractError::Repeated => "the body has more than one Encrypt element",
            ExtractError::Malformed => "the Encrypt element is malformed",
        })
    }
}

/// The text of the one `<Encrypt>` element (CDATA or plain text, surrounding
/// whitespace ignored); it must be non-empty and hold no markup.
pub fn extract_encrypt(body: &[u8]) -> Result<String, ExtractError> {
    let value = match element(body, "Encrypt") {
        Ok(Some(v)) => v,
        Ok(None) => return Err(ExtractError::Missing),
        Err(ElementError::Repeated) => return Err(ExtractError::Repeated),
        Err(ElementError::Malformed) => return Err(ExtractError::Malformed),
    };
    if value.is_empty() || value.contains(['<', '>', '&']) {
        return Err(ExtractError::Malformed);
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_element_is_found_in_cdata_or_plain_text() {
        assert_eq!(
            extract_encrypt(b"<xml><Encrypt><![CDATA[abc+/=]]></Encrypt></xml>").as_deref(),
            Ok("abc+/=")
        );
        assert_eq!(
            extract_encrypt(b"<xml>\n  <Encrypt>\n abc \n</Encrypt>\n</xml>").as_deref(),
            Ok("abc")
        );
        assert_eq!(
            extract_encrypt(b"<xml><ToUserName>x</ToUserName></xml>"),
            Err(ExtractError::Missing)
        );
        assert_eq!(
            extract_encrypt(b"<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>"),
            Err(ExtractError::Repeated)
        );
        assert_eq!(
            extract_encrypt(b"<xml><Encrypt>abc</xml>"),
            Err(ExtractError::Malformed)
        );
        assert_eq!(
            extract_encrypt(b"<xml><Encrypt><![CDATA[abc</Encrypt></xml>"),
            Err(ExtractError::Malformed)
        );
        assert_eq!(
            extract_encrypt(b"<xml><Encrypt></Encrypt></xml>"),
            Err(ExtractError::Malformed)
        );
        assert_eq!(
            extract_encrypt(b"<xml><Encrypt>\xff</Encrypt></xml>"),
            Err(ExtractError::Malformed)
        );
    }

    #[test]
    fn json_envelopes_are_json_and_read_back() {
        let body = push_body_in(Format::Json, Some("gh_\"1"), "abc+/=");
        let m = Message::read(body.as_bytes(), Format::Json).expect("json");
        assert_eq!(m.get("ToUserName"), Ok(Some("gh_\"1")));
        assert_eq!(encrypt_of(&m).as_deref(), Ok("abc+/="));
        let reply = reply_envelope_in(Format::Json, "tok", "1714036504", "n<1>", "abc");
        let v: serde_json::Value = serde_json::from_str(&reply).expect("json reply");
        assert_eq!(v["TimeStamp"], 1714036504);
        assert_eq!(v["Nonce"], "n<1>");
        assert_eq!(
            v["MsgSignature"],
            as_str(&sign(&["tok", "1714036504", "n<1>", "abc"]))
        );
        for bad in [
            r#"{"Encrypt":""}"#,
            r#"{"Encrypt":"a<b"}"#,
            r#"{"Encrypt":null}"#,
        ] {
            let m = Message::read(bad.as_bytes(), Format::Json).expect("json");
            assert_eq!(encrypt_of(&m), Err(ExtractError::Malformed), "{bad}");
        }
        let m = Message::read(br#"{"Encrypt":"a","Encrypt":"b"}"#, Format::Json).expect("json");
        assert_eq!(encrypt_of(&m), Err(ExtractError::Repeated));
    }

    #[test]
    fn a_forwarded_push_body_holds_the_encrypt_it_was_built_from() {
        let body = push_body(Some("gh_1"), "abc+/=");
        assert_eq!(
            body,
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[abc+/=]]></Encrypt></xml>"
        );
        assert_eq!(extract_encrypt(body.as_bytes()).as_deref(), Ok("abc+/="));
        assert_eq!(
            push_body(None, "x"),
            "<xml><Encrypt><![CDATA[x]]></Encrypt></xml>"
        );
    }
}
