//! What WeChat's servers send: the signed query and the XML of a text message.
//! Used by the CLI and the tests to behave like WeChat.

use crate::signature::{as_str, request_signature};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters left as they are in a query value (RFC 3986 unreserved).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `signature=…&timestamp=…&nonce=…` followed by `extra` pairs, every value encoded.
pub fn signed_query(token: &str, timestamp: &str, nonce: &str, extra: &[(&str, &str)]) -> String {
    let digest = request_signature(token, timestamp, nonce);
    let mut pairs: Vec<(&str, &str)> = vec![
        ("signature", as_str(&digest)),
        ("timestamp", timestamp),
        ("nonce", nonce),
    ];
    pairs.extend_from_slice(extra);
    encode_query(&pairs)
}

/// Encodes `k=v&k=v` with every value percent-encoded.
pub fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY_VALUE),
                utf8_percent_encode(v, QUERY_VALUE)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `text` inside CDATA; a `]]>` in it is split across two sections, as XML requires.
pub fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

/// The XML WeChat posts for a text message a user sent to the account.
pub fn text_message_xml(
    to_account: &str,
    from_openid: &str,
    create_time: &str,
    content: &str,
    msg_id: u64,
) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime>\
         <MsgType><![CDATA[text]]></MsgType><Content>{}</Content><MsgId>{}</MsgId></xml>",
        cdata(to_account),
        cdata(from_openid),
        create_time,
        cdata(content),
        msg_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_query_carries_the_official_example_signature() {
        let q = signed_query("AAAAA", "1714036504", "1514711492", &[("echostr", "a b")]);
        assert_eq!(
            q,
            "signature=f464b24fc39322e44b38aa78f5edd27bd1441696&timestamp=1714036504&nonce=1514711492&echostr=a%20b"
        );
    }

    #[test]
    fn query_values_are_encoded_and_decode_back() {
        let q = encode_query(&[("echostr", "a+b/c=d&e微")]);
        let parsed = crate::query::parse_query(q.as_bytes()).expect("parses");
        assert_eq!(parsed.echostr.as_deref(), Some("a+b/c=d&e微"));
    }

    #[test]
    fn cdata_survives_its_own_terminator() {
        assert_eq!(cdata("a]]>b"), "<![CDATA[a]]]]><![CDATA[>b]]>");
    }

    #[test]
    fn text_message_has_the_fields_wechat_sends() {
        let x = text_message_xml("gh_1", "o_1", "1700000000", "hi", 42);
        for part in [
            "<ToUserName><![CDATA[gh_1]]>",
            "<FromUserName><![CDATA[o_1]]>",
            "<CreateTime>1700000000</CreateTime>",
            "<Content><![CDATA[hi]]>",
            "<MsgId>42</MsgId>",
        ] {
            assert!(x.contains(part), "{part}");
        }
    }
}
