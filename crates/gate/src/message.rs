//! A pushed message, XML or JSON, read just far enough for the gate: its top-level
//! fields and its identity for spotting WeChat's retries.
//!
//! Official Accounts push XML; Mini Programs push XML or JSON as their console says.
//! The format is taken from the body itself (its first character), never from the
//! content type alone. JSON is read by serde_json (its recursion limit bounds the
//! depth, `max_body_bytes` the size) into the root object's members in order, so that
//! a repeated member is seen and refused, as a repeated XML element is.

use crate::config::Platform;
use crate::xml::{self, ElementError};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// How a body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

impl Format {
    /// JSON when the body's first character (after whitespace and a UTF-8 byte-order
    /// mark) is `{`; XML otherwise.
    pub fn of(body: &[u8]) -> Format {
        let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::Json,
            _ => Format::Xml,
        }
    }

    /// How a body is written on `platform`: Official Accounts (and Open Platform and
    /// WeCom) push XML only; a Mini Program's console picks XML or JSON, read from
    /// the body.
    pub fn on(platform: Platform, body: &[u8]) -> Format {
        if platform.allows_json() {
            Format::of(body)
        } else {
            Format::Xml
        }
    }
}

/// The root's fields in order: each name with its text, or `None` for one that holds
/// structure of its own (nested elements, an object, an array, null). An XML
/// message borrows its names and text from the body it was read from (nothing is
/// copied to spot a retry); [`Message::into_owned`] keeps one beyond its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'b> {
    /// The XML root element's name; `None` for JSON (one object).
    root: Option<Cow<'b, str>>,
    fields: Vec<(Cow<'b, str>, Option<Cow<'b, str>>)>,
}

/// Why a body that reads is still no push of its platform's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAPush {
    /// The XML root is not `<xml>`.
    Root(String),
    /// It says neither what kind of push it is (`MsgType`, or `InfoType` where the
    /// platform has notifications) nor anything else that makes it one.
    NoKind { info_type: bool },
    /// A field every push of its kind carries is missing, empty, repeated or holds
    /// structure.
    Missing(&'static str),
}

impl fmt::Display for NotAPush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotAPush::Root(root) => write!(f, "its root is <{root}>, not <xml>"),
            NotAPush::NoKind { info_type: false } => f.write_str("it has no MsgType"),
            NotAPush::NoKind { info_type: true } => f.write_str("it has no MsgType or InfoType"),
            NotAPush::Missing(name) => write!(f, "it has no {name}"),
        }
    }
}

impl<'b> Message<'b> {
    /// Reads a body of either format.
    pub fn read(body: &'b [u8], format: Format) -> Result<Message<'b>, ElementError> {
        match format {
            Format::Xml => {
                #[cfg(feature = "attribution-twice-xml")]
                let _ = std::hint::black_box(xml::fields(std::hint::black_box(body)));
                let fields = xml::fields(body)?;
                Ok(Message {
                    root: Some(Cow::Borrowed(fields.root())),
                    fields: fields
                        .into_children()
                        .into_iter()
                        .map(|(name, text)| (Cow::Borrowed(name), text))
                        .collect(),
                })
            }
            Format::Json => read_json(body),
        }
    }

    /// The same message, owning what it holds (kept beyond the body it was read
    /// from).
    pub fn into_owned(self) -> Message<'static> {
        let owned = |c: Cow<'b, str>| Cow::<'static, str>::Owned(c.into_owned());
        Message {
            root: self.root.map(owned),
            fields: self
                .fields
                .into_iter()
                .map(|(name, text)| (owned(name), text.map(owned)))
                .collect(),
        }
    }

    /// Whether this is a push of `platform`'s, the least every push WeChat documents
    /// is: an XML root `<xml>` (or one JSON object) saying what kind of push it is.
    /// A message or event has `MsgType` and names the account it is for
    /// (`ToUserName`), except on WeCom, whose group bots' callbacks name their chat
    /// instead. On Open Platform and WeCom a notification has `InfoType` instead
    /// (`component_verify_ticket`, authorizations; a suite's `suite_ticket`), and on
    /// Open Platform names its component (`AppId`). Each a single field with text.
    pub fn check_push(&self, platform: Platform) -> Result<(), NotAPush> {
        if let Some(root) = self.root.as_deref().filter(|r| *r != "xml") {
            return Err(NotAPush::Root(root.chars().take(32).collect()));
        }
        let notifications = matches!(platform, Platform::OpenPlatform | Platform::Wecom);
        let required: &[&'static str] = if self.text("MsgType").is_some() {
            match platform {
                Platform::Wecom => &[],
                _ => &["ToUserName"],
            }
        } else if notifications && self.text("InfoType").is_some() {
            match platform {
                Platform::OpenPlatform => &["AppId"],
                _ => &[],
            }
        } else {
            return Err(NotAPush::NoKind {
                info_type: notifications,
            });
        };
        match required.iter().find(|name| self.text(name).is_none()) {
            Some(name) => Err(NotAPush::Missing(name)),
            None => Ok(()),
        }
    }

    /// The text of the one field called `name`; `Ok(None)` if there is none.
    pub fn get(&self, name: &str) -> Result<Option<&str>, ElementError> {
        let mut found = self.fields.iter().filter(|(n, _)| n == name);
        let Some((_, value)) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(ElementError::Repeated);
        }
        value.as_deref().map(Some).ok_or(ElementError::Malformed)
    }

    /// `get`, forgiving: `None` for a field that is missing, empty or unreadable.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).ok().flatten().filter(|v| !v.is_empty())
    }

    /// The message's identity across WeChat's retries: `ToUserName` + `MsgId` (`MsgID`
    /// in job-result events). Without one, an event (it must have `ToUserName`,
    /// `FromUserName` and `CreateTime`; an Open Platform authorization event `AppId`,
    /// `CreateTime` and `InfoType`) is the whole of its fields, names and values in
    /// order: a retry is the same message, while two events of one second differ
    /// somewhere (WeCom's contact changes all come from `sys`, told apart by
    /// `ChangeType`, `UserID` or `ExternalUserID`). `None` when nothing identifies it:
    /// better no deduplication than a wrong one.
    pub fn retry_identity(&self) -> Option<u64> {
        // A MsgId that is there but unreadable (repeated, holding structure) identifies
        // nothing.
        if ["MsgId", "MsgID"].iter().any(|n| self.get(n).is_err()) {
            return None;
        }
        let f = |name| self.text(name);
        let mut hasher = sha1_smol::Sha1::new();
        let mut part = |part: &str| {
            // Length-prefixed, so that no two different field lists hash alike.
            hasher.update(&u64::try_from(part.len()).unwrap_or(0).to_be_bytes());
            hasher.update(part.as_bytes());
        };
        if let Some(msg_id) = f("MsgId").or_else(|| f("MsgID")) {
            for p in [f("ToUserName")?, "msg", msg_id] {
                part(p);
            }
        } else {
            let required: &[&str] = match f("InfoType") {
                Some(_) => &["AppId", "CreateTime"],
                None => &["ToUserName", "FromUserName", "CreateTime"],
            };
            if required.iter().any(|name| f(name).is_none()) {
                return None;
            }
            part("fields");
            for (name, value) in &self.fields {
                part(name);
                // A field holding structure counts by its name alone.
                part(value.as_deref().unwrap_or("\u{0}"));
            }
        }
        let digest = hasher.digest().bytes();
        Some(u64::from_be_bytes(digest.get(..8)?.try_into().ok()?))
    }
}

/// A JSON object's members, in order, repeats kept (serde_json's own map keeps the
/// last of a repeated member silently).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(V)
    }
}

fn read_json(body: &[u8]) -> Result<Message<'static>, ElementError> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let Members(members) = serde_json::from_slice(body).map_err(|_| ElementError::Malformed)?;
    let fields = members
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => Some(s),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Null | Value::Array(_) | Value::Object(_) => None,
            };
            (Cow::Owned(name), text.map(Cow::Owned))
        })
        .collect();
    Ok(Message { root: None, fields })
}

/// A JSON string value, escaped, with its quotes.
pub fn json_string(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>99</MsgId></xml>";
    const JSON: &str = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"text","Content":"hi","MsgId":99}"#;

    #[test]
    fn the_format_is_read_from_the_body() {
        assert_eq!(Format::of(b"  \n{\"a\":1}"), Format::Json);
        assert_eq!(Format::of(b"\xef\xbb\xbf{}"), Format::Json);
        assert_eq!(Format::of(b"<xml/>"), Format::Xml);
        assert_eq!(Format::of(b""), Format::Xml);
    }

    #[test]
    fn the_same_message_in_xml_or_json_has_the_same_fields_and_identity() {
        let x = Message::read(XML.as_bytes(), Format::Xml).expect("xml");
        let j = Message::read(JSON.as_bytes(), Format::Json).expect("json");
        for name in [
            "ToUserName",
            "FromUserName",
            "CreateTime",
            "Content",
            "MsgId",
        ] {
            assert_eq!(x.get(name), j.get(name), "{name}");
        }
        assert!(x.retry_identity().is_some());
        assert_eq!(x.retry_identity(), j.retry_identity());
    }

    #[test]
    fn a_repeated_json_member_is_refused_as_a_repeated_element_is() {
        let j = Message::read(br#"{"MsgId":1,"MsgId":2,"ToUserName":"gh"}"#, Format::Json)
            .expect("json");
        assert_eq!(j.get("MsgId"), Err(ElementError::Repeated));
        assert_eq!(j.retry_identity(), None);
    }

    #[test]
    fn members_holding_structure_are_unreadable_and_bad_json_is_malformed() {
        let j = Message::read(br#"{"MsgId":{"a":1},"Content":[1],"X":null}"#, Format::Json)
            .expect("json");
        for name in ["MsgId", "Content", "X"] {
            assert_eq!(j.get(name), Err(ElementError::Malformed), "{name}");
        }
        for bad in [&b"{"[..], b"[1,2]", b"\"s\"", b"{\"a\":}", b"{}x"] {
            assert_eq!(
                Message::read(bad, Format::Json),
                Err(ElementError::Malformed)
            );
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            Message::read(deep.as_bytes(), Format::Json),
            Err(ElementError::Malformed),
            "nesting is bounded, never a stack overflow"
        );
    }

    #[test]
    fn events_and_authorization_events_have_their_own_identity() {
        let ev = |key: &str| {
            Message::read(
                format!(r#"{{"ToUserName":"gh","FromUserName":"o","CreateTime":5,"Event":"CLICK","EventKey":"{key}"}}"#).as_bytes(),
                Format::Json,
            )
            .expect("json")
            .retry_identity()
        };
        assert!(ev("a").is_some());
        assert_ne!(ev("a"), ev("b"));
        let auth = |ticket_time: u32| {
            Message::read(
                format!("<xml><AppId>wxc</AppId><CreateTime>{ticket_time}</CreateTime><InfoType>component_verify_ticket</InfoType><ComponentVerifyTicket>t</ComponentVerifyTicket></xml>").as_bytes(),
                Format::Xml,
            )
            .expect("xml")
            .retry_identity()
        };
        assert!(auth(1).is_some());
        assert_ne!(auth(1), auth(2));
    }

    fn push_on(platform: Platform, body: &str) -> Result<(), NotAPush> {
        Message::read(body.as_bytes(), Format::of(body.as_bytes()))
            .expect("reads")
            .check_push(platform)
    }

    const TICKET: &str = "<xml><AppId>wxc</AppId><CreateTime>1</CreateTime><InfoType>component_verify_ticket</InfoType><ComponentVerifyTicket>t</ComponentVerifyTicket></xml>";

    #[test]
    fn a_push_is_an_xml_root_or_json_object_that_says_what_kind_of_push_it_is() {
        for &platform in Platform::ALL {
            assert_eq!(push_on(platform, XML), Ok(()), "{platform:?}");
            assert_eq!(push_on(platform, JSON), Ok(()), "{platform:?}");
            for empty in ["<xml/>", "<xml></xml>", "{}", r#"{"a":[1,2,3]}"#] {
                assert!(
                    matches!(push_on(platform, empty), Err(NotAPush::NoKind { .. })),
                    "{platform:?} {empty}"
                );
            }
            for foreign in [
                "<html><body>hi</body></html>",
                "<a/>",
                "<XML><MsgType>text</MsgType></XML>",
            ] {
                assert!(
                    matches!(push_on(platform, foreign), Err(NotAPush::Root(_))),
                    "{platform:?} {foreign}"
                );
            }
            // A kind given twice, empty or holding structure says nothing.
            for unreadable in [
                "<xml><ToUserName>gh</ToUserName><MsgType>text</MsgType><MsgType>event</MsgType></xml>",
                "<xml><ToUserName>gh</ToUserName><MsgType></MsgType></xml>",
                "<xml><ToUserName>gh</ToUserName><MsgType><a/></MsgType></xml>",
            ] {
                assert!(push_on(platform, unreadable).is_err(), "{platform:?} {unreadable}");
            }
        }
    }

    #[test]
    fn a_message_names_its_account_except_on_wecom() {
        let anonymous = "<xml><FromUserName>o</FromUserName><MsgType>text</MsgType></xml>";
        for platform in [
            Platform::OfficialAccount,
            Platform::MiniProgram,
            Platform::OpenPlatform,
        ] {
            assert_eq!(
                push_on(platform, anonymous),
                Err(NotAPush::Missing("ToUserName"))
            );
        }
        // A WeCom group bot's callback names its chat, not an account.
        let bot = "<xml><ChatId>wrk</ChatId><MsgType>text</MsgType><MsgId>m1</MsgId></xml>";
        assert_eq!(push_on(Platform::Wecom, bot), Ok(()));
    }

    #[test]
    fn notifications_are_pushes_only_where_the_platform_sends_them() {
        assert_eq!(push_on(Platform::OpenPlatform, TICKET), Ok(()));
        let suite = "<xml><SuiteId>ww1</SuiteId><InfoType>suite_ticket</InfoType><TimeStamp>1</TimeStamp><SuiteTicket>t</SuiteTicket></xml>";
        assert_eq!(push_on(Platform::Wecom, suite), Ok(()));
        assert_eq!(
            push_on(Platform::OpenPlatform, suite),
            Err(NotAPush::Missing("AppId")),
            "a component's notification names the component"
        );
        for platform in [Platform::OfficialAccount, Platform::MiniProgram] {
            assert_eq!(
                push_on(platform, TICKET),
                Err(NotAPush::NoKind { info_type: false })
            );
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
