//! The XML of a pushed message, read just far enough for the gate: one top-level
//! element's text (`Encrypt`, `MsgId`, …) and the message's identity for spotting
//! WeChat's retries. Not a general XML parser, and strict about what it accepts.

use std::fmt;

/// Why an element could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementError {
    /// The body is not UTF-8, the element is not closed, its CDATA is not closed,
    /// or its text holds markup.
    Malformed,
    /// The element appears more than once.
    Repeated,
}

impl fmt::Display for ElementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElementError::Malformed => "is malformed",
            ElementError::Repeated => "appears more than once",
        })
    }
}

/// The text of the element `<name>…</name>`: CDATA or plain text, the whitespace
/// around it ignored. `Ok(None)` when the body has no such element.
pub fn element<'b>(body: &'b [u8], name: &str) -> Result<Option<&'b str>, ElementError> {
    let text = std::str::from_utf8(body).map_err(|_| ElementError::Malformed)?;
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let Some(start) = text.find(&open) else {
        return Ok(None);
    };
    let after_open = start + open.len();
    let rest = text.get(after_open..).ok_or(ElementError::Malformed)?;
    let inner_len = rest.find(&close).ok_or(ElementError::Malformed)?;
    let inner = rest.get(..inner_len).ok_or(ElementError::Malformed)?.trim();
    if rest
        .get(inner_len + close.len()..)
        .is_some_and(|t| t.contains(&open))
    {
        return Err(ElementError::Repeated);
    }
    let value = match inner.strip_prefix("<![CDATA[") {
        Some(cdata) => cdata.strip_suffix("]]>").ok_or(ElementError::Malformed)?,
        None if inner.contains('<') => return Err(ElementError::Malformed),
        None => inner,
    };
    Ok(Some(value))
}

/// What makes a message the same message when WeChat sends it again: the account
/// (`ToUserName`) and `MsgId`, or for an event (no `MsgId`) `FromUserName`,
/// `CreateTime`, `Event` and `EventKey`. Returned as a 64-bit digest; `None` when
/// the body carries neither (or is malformed), and then nothing is deduplicated.
pub fn retry_identity(body: &[u8]) -> Option<u64> {
    let field = |name: &str| element(body, name).ok().flatten();
    let to = field("ToUserName")?;
    let mut parts: Vec<&str> = vec![to];
    if let Some(msg_id) = field("MsgId").filter(|m| !m.is_empty()) {
        parts.extend(["msg", msg_id]);
    } else {
        let from = field("FromUserName").filter(|f| !f.is_empty())?;
        let created = field("CreateTime").filter(|c| !c.is_empty())?;
        parts.extend([
            "event",
            from,
            created,
            field("Event").unwrap_or(""),
            field("EventKey").unwrap_or(""),
        ]);
    }
    let mut hasher = sha1_smol::Sha1::new();
    for part in parts {
        // Length-prefixed, so that no two different field lists hash alike.
        hasher.update(&u64::try_from(part.len()).unwrap_or(0).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.digest().bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8)?);
    Some(u64::from_be_bytes(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_text_comes_from_cdata_or_plain_text_with_whitespace_around() {
        assert_eq!(
            element(b"<xml><A><![CDATA[x y]]></A></xml>", "A"),
            Ok(Some("x y"))
        );
        assert_eq!(
            element(b"<xml>\n  <A>\n 12 \n</A>\n</xml>", "A"),
            Ok(Some("12"))
        );
        assert_eq!(element(b"<xml><B>1</B></xml>", "A"), Ok(None));
        assert_eq!(element(b"<xml><A></A></xml>", "A"), Ok(Some("")));
    }

    #[test]
    fn repeated_unclosed_or_nested_elements_are_errors() {
        assert_eq!(
            element(b"<xml><A>1</A><A>2</A></xml>", "A"),
            Err(ElementError::Repeated)
        );
        assert_eq!(
            element(b"<xml><A>1</xml>", "A"),
            Err(ElementError::Malformed)
        );
        assert_eq!(
            element(b"<xml><A><![CDATA[1</A></xml>", "A"),
            Err(ElementError::Malformed)
        );
        assert_eq!(
            element(b"<xml><A><B>1</B></A></xml>", "A"),
            Err(ElementError::Malformed)
        );
        assert_eq!(
            element(b"<xml><A>\xff</A></xml>", "A"),
            Err(ElementError::Malformed)
        );
    }

    #[test]
    fn an_element_name_is_not_matched_inside_a_longer_one() {
        let body = b"<xml><EventKey>k</EventKey><Event>subscribe</Event></xml>";
        assert_eq!(element(body, "Event"), Ok(Some("subscribe")));
        assert_eq!(element(body, "EventKey"), Ok(Some("k")));
    }

    fn text_message(to: &str, msg_id: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
             <CreateTime>1714036504</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content><![CDATA[hi]]></Content><MsgId>{msg_id}</MsgId></xml>"
        )
    }

    fn event(from: &str, created: &str, event: &str, key: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
             <CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
        )
    }

    #[test]
    fn a_message_is_identified_by_account_and_msg_id() {
        let a = retry_identity(text_message("gh_1", "1001").as_bytes());
        assert!(a.is_some());
        assert_eq!(a, retry_identity(text_message("gh_1", "1001").as_bytes()));
        assert_ne!(a, retry_identity(text_message("gh_1", "1002").as_bytes()));
        assert_ne!(a, retry_identity(text_message("gh_2", "1001").as_bytes()));
    }

    #[test]
    fn an_event_is_identified_by_sender_time_event_and_key() {
        let a = retry_identity(event("o1", "100", "CLICK", "k1").as_bytes());
        assert!(a.is_some());
        assert_eq!(
            a,
            retry_identity(event("o1", "100", "CLICK", "k1").as_bytes())
        );
        for other in [
            event("o2", "100", "CLICK", "k1"),
            event("o1", "101", "CLICK", "k1"),
            event("o1", "100", "VIEW", "k1"),
            event("o1", "100", "CLICK", "k2"),
        ] {
            assert_ne!(a, retry_identity(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn a_body_without_an_identity_is_not_deduplicated() {
        assert_eq!(retry_identity(b""), None);
        assert_eq!(
            retry_identity(b"<xml><ToUserName>a</ToUserName></xml>"),
            None
        );
        assert_eq!(retry_identity(b"not xml at all"), None);
        assert_eq!(
            retry_identity(
                b"<xml><ToUserName>a</ToUserName><MsgId>1</MsgId><MsgId>1</MsgId></xml>"
            ),
            retry_identity(b"<xml><ToUserName>a</ToUserName></xml>"),
        );
    }
}
