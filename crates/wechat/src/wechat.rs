//! What WeChat's servers send: the signed query, a text message in XML or JSON, a
//! safe-mode push (XML or, for Mini Programs, JSON), WeCom's `msg_signature`-only
//! queries and encrypted `echostr`, and how WeChat opens a sealed reply. Used by the
//! CLI and the tests to behave like WeChat.

use gate::message::{Format, Message};
use gate::query::encode_query;
use gate::safe_mode::cipher::{self, AesKey};
use gate::safe_mode::envelope;
use gate::signature::{as_str, request_signature, sign, signature_matches};
use gate::xml::cdata;

/// `signature=…&timestamp=…&nonce=…` followed by `extra` pairs, every value encoded.
pub fn signed_query(token: &str, timestamp: &str, nonce: &str, extra: &[(&str, &str)]) -> String {
    let digest = request_signature(token, timestamp, nonce);
    query_signed_by(("signature", as_str(&digest)), timestamp, nonce, extra)
}

/// WeCom's query: `msg_signature` over the token, timestamp, nonce and `signed` (the
/// handshake's encrypted `echostr`, or a push's `Encrypt`), then `extra` pairs.
pub fn wecom_query(
    token: &str,
    timestamp: &str,
    nonce: &str,
    signed: &str,
    extra: &[(&str, &str)],
) -> String {
    let digest = sign(&[token, timestamp, nonce, signed]);
    query_signed_by(("msg_signature", as_str(&digest)), timestamp, nonce, extra)
}

/// The `signature` pair, `timestamp`, `nonce`, then `extra`, every value encoded.
fn query_signed_by(
    signature: (&str, &str),
    timestamp: &str,
    nonce: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut pairs = vec![signature, ("timestamp", timestamp), ("nonce", nonce)];
    pairs.extend_from_slice(extra);
    encode_query(&pairs)
}

/// WeCom's handshake `echostr`: `plaintext` encrypted for the CorpID, as WeCom sends it.
pub fn wecom_echostr(key: &AesKey, corpid: &str, plaintext: &str, random16: &[u8; 16]) -> String {
    cipher::encrypt(key, corpid, plaintext.as_bytes(), random16)
}

/// The JSON a Mini Program's push carries for a text message (data format JSON).
pub fn text_message_json(
    to_account: &str,
    from_openid: &str,
    create_time: &str,
    content: &str,
    msg_id: u64,
) -> String {
    serde_json::json!({
        "ToUserName": to_account,
        "FromUserName": from_openid,
        "CreateTime": create_time.parse::<u64>().unwrap_or(0),
        "MsgType": "text",
        "Content": content,
        "MsgId": msg_id,
    })
    .to_string()
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

/// A safe-mode push: its body and the query parameters that go with it.
pub struct SafePushOut {
    pub body: String,
    pub msg_signature: String,
}

/// Encrypts `message` (the plaintext XML, or JSON for a Mini Program that pushes
/// JSON) as WeChat does in safe mode: the body is `<xml><ToUserName/><Encrypt/></xml>`
/// (`{"ToUserName","Encrypt"}` for JSON), or in compat mode the message's own XML
/// elements with `Encrypt` added; `msg_signature` signs the `Encrypt` value.
#[allow(clippy::too_many_arguments)]
pub fn safe_mode_push(
    key: &AesKey,
    appid: &str,
    token: &str,
    timestamp: &str,
    nonce: &str,
    to_account: &str,
    message: &str,
    compat: bool,
    random16: &[u8; 16],
) -> SafePushOut {
    let encrypt = cipher::encrypt(key, appid, message.as_bytes(), random16);
    let format = Format::of(message.as_bytes());
    let body = match message.rfind("</xml>") {
        _ if format == Format::Json => envelope::push_body_in(format, Some(to_account), &encrypt),
        Some(end) if compat => format!(
            "{}<Encrypt>{}</Encrypt></xml>",
            message.get(..end).unwrap_or(message),
            cdata(&encrypt)
        ),
        _ => envelope::push_body(Some(to_account), &encrypt),
    };
    SafePushOut {
        body,
        msg_signature: as_str(&sign(&[token, timestamp, nonce, &encrypt])).to_string(),
    }
}

/// Opens a sealed reply as WeChat does: its `MsgSignature` must sign its `Encrypt`
/// with the token and the push's own `timestamp` and `nonce`, and it must decrypt
/// for `appid`. Returns the reply's plaintext.
pub fn open_reply(
    envelope: &[u8],
    key: &AesKey,
    appid: &str,
    token: &str,
    timestamp: &str,
    nonce: &str,
) -> Result<Vec<u8>, String> {
    let sealed =
        Message::read(envelope, Format::of(envelope)).map_err(|e| format!("the reply {e}"))?;
    let field = |name: &str| {
        sealed
            .get(name)
            .map_err(|e| format!("{name} {e}"))?
            .map(str::to_string)
            .ok_or_else(|| format!("the reply has no {name}"))
    };
    let encrypt = field("Encrypt")?;
    if field("TimeStamp")? != timestamp || field("Nonce")? != nonce {
        return Err("TimeStamp or Nonce is not the push's".into());
    }
    let expected = sign(&[token, timestamp, nonce, &encrypt]);
    if !signature_matches(&expected, field("MsgSignature")?.as_bytes()) {
        return Err("MsgSignature does not match".into());
    }
    cipher::decrypt(key, appid, &encrypt).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    #[test]
    fn a_safe_mode_push_verifies_and_decrypts_with_the_gates_own_checks() {
        let key = AesKey::from_encoding_aes_key(KEY).expect("key");
        let message = text_message_xml("gh_1", "o_1", "1700000000", "hi", 42);
        for compat in [false, true] {
            let out = safe_mode_push(
                &key,
                "wx1",
                "tok",
                "1700000000",
                "9",
                "gh_1",
                &message,
                compat,
                &[5u8; 16],
            );
            let encrypt = envelope::extract_encrypt(out.body.as_bytes()).expect("Encrypt");
            assert_eq!(
                out.msg_signature,
                as_str(&sign(&["tok", "1700000000", "9", &encrypt]))
            );
            assert_eq!(
                cipher::decrypt(&key, "wx1", &encrypt).expect("decrypts"),
                message.as_bytes()
            );
            assert_eq!(out.body.contains("<MsgId>42</MsgId>"), compat);
        }
    }

    #[test]
    fn a_sealed_reply_opens_only_with_the_pushs_timestamp_nonce_and_token() {
        let key = AesKey::from_encoding_aes_key(KEY).expect("key");
        let encrypt = cipher::encrypt(&key, "wx1", b"<xml>r</xml>", &[1u8; 16]);
        let envelope = envelope::reply_envelope("tok", "100", "7", &encrypt);
        let open = |appid, token, ts, nonce| {
            open_reply(envelope.as_bytes(), &key, appid, token, ts, nonce)
        };
        assert_eq!(open("wx1", "tok", "100", "7"), Ok(b"<xml>r</xml>".to_vec()));
        assert!(open("wx1", "tok", "101", "7").is_err());
        assert!(open("wx1", "tok", "100", "8").is_err());
        assert!(open("wx1", "other", "100", "7").is_err());
        assert!(open("wx2", "tok", "100", "7").is_err());
    }

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
        let parsed = gate::query::parse_query(q.as_bytes()).expect("parses");
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
