//! The body of a verified push, pure: whether the gate must read it (safe mode, or
//! retries to spot), the safe-mode checks (`Encrypt` against `msg_signature`, then
//! decryption), the message's identity for deduplication, and the encrypted reply.
//!
//! Nothing here forwards anything: the exchange keeps the body from the backend
//! until [`check`] (or [`verify`], then [`open`]) has said yes.

pub mod cipher;
pub mod envelope;

use crate::config::Config;
use crate::message::{Format, Message};
use crate::request::{Reason, Rejection};
use crate::signature::HexDigest;
use crate::signature::{sign, signature_matches};
use crate::tables::replay::QueryUse;
use cipher::AesKey;

/// The query parameters of a safe-mode push (`encrypt_type=aes`; every WeCom push),
/// kept for the body check (`msg_signature`) and the encrypted reply (`timestamp`,
/// `nonce`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeModeQuery {
    pub msg_signature: String,
    pub timestamp: String,
    pub nonce: String,
    /// How the query is verified, and so which token `msg_signature` must be made
    /// with.
    pub verified: QueryVerified,
}

/// How a safe-mode push's query is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryVerified {
    /// By its `signature`, made with this token of the rotation (0: current):
    /// `msg_signature` and the sealed reply must use the same one.
    BySignature { token: usize },
    /// By the body (WeCom): no signature covers the query alone. `msg_signature`,
    /// checked once the body has come, verifies the query together with the body's
    /// `Encrypt`, with whichever token it was made; only then is the query recorded
    /// against replays.
    ByBody,
}

/// What the host must do with a push's body, decided on its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPlan {
    /// Set for `encrypt_type=aes`.
    pub safe: Option<SafeModeQuery>,
    /// The backend gets the plaintext (safe mode with `decrypt: true`).
    pub decrypt: bool,
    /// `dedupe_seconds` is on.
    pub dedupe: bool,
    /// Open Platform: the authorizer's AppID the path names; a decrypted message that
    /// names its authorizer must name this one.
    pub authorizer: Option<String>,
}

impl BodyPlan {
    /// `None` when the body need not be read at all: the push is forwarded on its
    /// headers, as it streams.
    pub fn for_push(config: &Config, safe: Option<SafeModeQuery>) -> Option<BodyPlan> {
        let decrypt = safe.is_some() && config.safe_mode.as_ref().is_some_and(|s| s.decrypt);
        let dedupe = config.dedupe_seconds > 0;
        (safe.is_some() || dedupe).then_some(BodyPlan {
            safe,
            decrypt,
            dedupe,
            authorizer: None,
        })
    }
}

/// A body that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// What the backend gets instead of the body as it came: the decrypted message
    /// (`decrypt: true`), or for a safe-mode push forwarded encrypted, a body rebuilt
    /// from its verified parts only (`Encrypt`, and `ToUserName` once decrypted):
    /// `msg_signature` covers nothing else, so nothing else goes on.
    pub body_for_backend: Option<Vec<u8>>,
    /// `body_for_backend` is the decrypted message.
    pub decrypted: bool,
    /// The message was decrypted (with or without handing it on), so what it says
    /// about itself is verified.
    pub message_read: bool,
    /// The sender (`FromUserName`) read from the decrypted message: verified, unlike
    /// the query's `openid`.
    pub sender: Option<String>,
    /// The message's identity, when it has one and retries are being spotted.
    pub identity: Option<u64>,
    /// Which of the rotated keys opened it (0: current): the reply is sealed with it.
    pub key: usize,
    /// The push's format: a sealed reply goes back in it.
    pub format: Format,
    /// Which of the rotated tokens verified `msg_signature` (0 without safe mode).
    pub token: usize,
}

/// Decrypts with the current key, else the previous one (WeChat's rule while an
/// EncodingAESKey is rotated); which opened it, and the plaintext.
fn decrypt_with_any(
    keys: &crate::config::Rotation<AesKey>,
    appid: &str,
    encrypt: &str,
) -> Result<(usize, Vec<u8>), Rejection> {
    let mut first_error = None;
    for (i, key) in keys.all() {
        match cipher::decrypt(key, appid, encrypt) {
            Ok(plain) => return Ok((i, plain)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(Rejection::new(
        Reason::Decrypt,
        first_error.map_or_else(|| "no key".to_string(), |e| e.to_string()),
    ))
}

/// Checks a whole push body against its plan: [`verify`], then [`open`].
pub fn check(body: &[u8], plan: &BodyPlan, config: &Config) -> Result<Checked, Rejection> {
    open(verify(body, plan, config)?, plan, config)
}

/// A push body whose signature is checked, not yet opened.
pub enum Verified {
    /// A plaintext push: nothing in its body to verify, read only for its identity.
    Plain(Checked),
    /// A safe-mode push whose `Encrypt` matches `msg_signature`.
    Sealed(Sealed),
}

/// A safe-mode push's `Encrypt`, verified by `msg_signature`, not yet decrypted.
pub struct Sealed {
    /// WeCom: the query, verified only now by `msg_signature`: to be recorded against
    /// replays before anything is decrypted, so that a used one is a replay whatever
    /// it carries.
    pub query: Option<QueryUse>,
    outer: Message,
    encrypt: String,
    /// Which of the rotated tokens verified `msg_signature`.
    token: usize,
    format: Format,
}

/// The first half of [`check`]: the body read as its platform's format and a
/// safe-mode push's `Encrypt` checked against `msg_signature`.
pub fn verify(body: &[u8], plan: &BodyPlan, config: &Config) -> Result<Verified, Rejection> {
    let format = format_on(config, body);
    let Some(safe) = &plan.safe else {
        let identity = identity(plan, body, format);
        return Ok(Verified::Plain(Checked::unread(None, identity, format)));
    };
    let outer = Message::read(body, format)
        .map_err(|e| Rejection::new(Reason::Malformed, format!("the body {e}")))?;
    let encrypt = envelope::encrypt_of(&outer)
        .map_err(|e| Rejection::new(Reason::Malformed, e.to_string()))?;
    let (token, digest) = check_msg_signature(config, safe, &encrypt)?;
    // WeCom: the query is first verified here, and only now recorded against replays.
    let query = match safe.verified {
        QueryVerified::ByBody => safe
            .timestamp
            .parse()
            .ok()
            .and_then(|ts| QueryUse::of(&digest, ts, config.timestamp_tolerance_seconds)),
        QueryVerified::BySignature { .. } => None,
    };
    Ok(Verified::Sealed(Sealed {
        query,
        outer,
        encrypt,
        token,
        format,
    }))
}

/// The second half of [`check`]: a verified `Encrypt` decrypted (with a key
/// configured) into a message of the platform's format, checked, and what the
/// backend gets.
pub fn open(verified: Verified, plan: &BodyPlan, config: &Config) -> Result<Checked, Rejection> {
    let Sealed {
        outer,
        encrypt,
        token,
        format,
        ..
    } = match verified {
        Verified::Plain(checked) => return Ok(checked),
        Verified::Sealed(sealed) => sealed,
    };
    let (Some(safe_mode), Some(appid)) = (&config.safe_mode, &config.appid) else {
        // No key configured: the signature is all that can be checked, and nothing in
        // the message can be read (so nothing identifies it as a retry).
        // The outer ToUserName is unsigned, but backends built on Tencent's sample
        // code fail without one: it goes on when it looks like an account id.
        let to = outer
            .text("ToUserName")
            .filter(|t| is_plausible_account_id(t));
        let rebuilt = envelope::push_body_in(format, to, &encrypt).into_bytes();
        return Ok(Checked {
            token,
            ..Checked::unread(Some(rebuilt), None, format)
        });
    };
    let (key, plaintext) = decrypt_with_any(&safe_mode.keys, appid, &encrypt)?;
    let inner = read_plaintext(config, &plaintext)?;
    let field = |name: &str| inner.text(name).map(str::to_string);
    check_account(appid, plan.authorizer.as_deref(), &inner)?;
    let sender = field("FromUserName");
    let identity = plan.dedupe.then(|| inner.retry_identity()).flatten();
    let body_for_backend = if plan.decrypt {
        plaintext
    } else {
        envelope::push_body_in(format, field("ToUserName").as_deref(), &encrypt).into_bytes()
    };
    Ok(Checked {
        body_for_backend: Some(body_for_backend),
        decrypted: plan.decrypt,
        message_read: true,
        sender,
        identity,
        key,
        format,
        token,
    })
}

/// How a body is written on the account's platform: Official Accounts (and Open
/// Platform and WeCom) push XML only; a Mini Program's console picks XML or JSON,
/// read from the body.
fn format_on(config: &Config, body: &[u8]) -> Format {
    if config.platform.allows_json() {
        Format::of(body)
    } else {
        Format::Xml
    }
}

/// A decrypted push must be a message in a format of its platform, and a push of
/// the platform's ([`Message::check_push`]). Whatever else opens under a valid
/// `msg_signature` (a WeCom handshake's `echostr`, posted as a push under the
/// handshake's query; text; JSON to an Official Account; `<xml/>`, `{}`, another
/// document) is refused, never handed to the backend as a verified message.
fn read_plaintext(config: &Config, plaintext: &[u8]) -> Result<Message, Rejection> {
    let message = Message::read(plaintext, format_on(config, plaintext)).map_err(|_| {
        Rejection::new(
            Reason::Malformed,
            if config.platform.allows_json() {
                "the decrypted Encrypt is not a message (XML or JSON)"
            } else {
                "the decrypted Encrypt is not a message (XML)"
            },
        )
    })?;
    message.check_push(config.platform).map_err(|why| {
        Rejection::new(
            Reason::Malformed,
            format!(
                "the decrypted Encrypt is not a message ({}): {why}",
                config.platform.name()
            ),
        )
    })?;
    Ok(message)
}

/// Open Platform: a decrypted message that names its accounts must name this
/// route's: an authorization event's `AppId` is the component's, a message's
/// `AuthorizerAppid` the authorizer the path names. A name given twice, or holding
/// structure, names nothing for sure and is refused likewise.
fn check_account(
    component: &str,
    authorizer: Option<&str>,
    message: &Message,
) -> Result<(), Rejection> {
    let wrong = |what: &str| {
        Rejection::new(
            Reason::Account,
            format!("the message's {what} is not this route's"),
        )
    };
    let named = |what: &str| message.get(what).map_err(|_| wrong(what));
    if message.text("InfoType").is_some() && named("AppId")?.is_some_and(|a| a != component) {
        return Err(wrong("AppId"));
    }
    match (authorizer, named("AuthorizerAppid")?) {
        (Some(expected), Some(named)) if named != expected => Err(wrong("AuthorizerAppid")),
        _ => Ok(()),
    }
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
            return crate::request::verify_msg_signature(config, &safe.msg_signature, &parts)
                .map_err(|_| mismatch())
        }
    };
    let token = config.token.get(index).ok_or_else(mismatch)?;
    let expected = sign(&[token.expose(), parts[0], parts[1], parts[2]]);
    if !signature_matches(&expected, safe.msg_signature.as_bytes()) {
        return Err(mismatch());
    }
    Ok((index, expected))
}

impl Checked {
    /// A body that was not decrypted: passed on as it came, or rebuilt.
    fn unread(body_for_backend: Option<Vec<u8>>, identity: Option<u64>, format: Format) -> Checked {
        Checked {
            body_for_backend,
            decrypted: false,
            message_read: false,
            sender: None,
            identity,
            key: 0,
            format,
            token: 0,
        }
    }
}

/// An account's original id (`gh_…`): 1 to 64 letters, digits, `_` or `-`.
fn is_plausible_account_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn identity(plan: &BodyPlan, body: &[u8], format: Format) -> Option<u64> {
    if !plan.dedupe {
        return None;
    }
    Message::read(body, format).ok()?.retry_identity()
}

/// What becomes of a backend's reply to a decrypted push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
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
pub fn seal_reply(body: &[u8], seal: &ReplySeal<'_>, random16: &[u8; 16]) -> Reply {
    // A UTF-8 byte-order mark (some Windows stacks write one) is not part of the XML.
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let trimmed = body.trim_ascii();
    // Markup of either format is sealed (in the push's envelope): a backend that
    // answers a JSON push in XML, or the other way round, never has it go out in
    // plaintext.
    let markup = matches!(trimmed.first(), Some(b'<' | b'{' | b'['));
    if trimmed == b"success" || !markup {
        return Reply::AsIs;
    }
    let encrypt = cipher::encrypt(seal.key, seal.appid, body, random16);
    Reply::Encrypted(envelope::reply_envelope_in(
        seal.format,
        seal.token,
        seal.timestamp,
        seal.nonce,
        &encrypt,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::as_str;

    const TOKEN: &str = "tok";
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx1234";
    const TS: &str = "1714036504";
    const NONCE: &str = "42";
    const MESSAGE: &str = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1714036504</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content><MsgId>99</MsgId></xml>";

    fn config(safe_mode: &str, dedupe: u64) -> Config {
        let json = format!(
            r#"{{"token": "{TOKEN}", "appid": "{APPID}", "dedupe_seconds": {dedupe}, "source": {{"mode": "off"}}{safe_mode}}}"#
        );
        crate::config::parse(json.as_bytes(), &|_| None).expect("config")
    }

    fn decrypting() -> Config {
        config(
            &format!(r#", "safe_mode": {{"encoding_aes_key": "{KEY}", "decrypt": true}}"#),
            15,
        )
    }

    fn key() -> AesKey {
        AesKey::from_encoding_aes_key(KEY).expect("key")
    }

    /// A push as WeChat sends it: the body and its msg_signature.
    fn safe_push(message: &str, token: &str) -> (String, SafeModeQuery) {
        let encrypt = cipher::encrypt(&key(), APPID, message.as_bytes(), &[7u8; 16]);
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        );
        let msg_signature = as_str(&sign(&[token, TS, NONCE, &encrypt])).to_string();
        (
            body,
            SafeModeQuery {
                msg_signature,
                timestamp: TS.into(),
                nonce: NONCE.into(),
                verified: QueryVerified::BySignature { token: 0 },
            },
        )
    }

    fn plan(config: &Config, safe: Option<SafeModeQuery>) -> BodyPlan {
        BodyPlan::for_push(config, safe).expect("the body is read")
    }

    fn reason(r: Result<Checked, Rejection>) -> Reason {
        r.expect_err("rejected").reason
    }

    #[test]
    fn a_plaintext_push_is_read_only_to_spot_retries() {
        assert_eq!(BodyPlan::for_push(&config("", 0), None), None);
        let c = config("", 15);
        let checked = check(MESSAGE.as_bytes(), &plan(&c, None), &c).expect("passes");
        assert_eq!(checked.body_for_backend, None);
        assert!(checked.identity.is_some());
        let checked = check(b"anything", &plan(&c, None), &c).expect("passes");
        assert_eq!(checked.identity, None);
    }

    #[test]
    fn a_safe_push_is_verified_decrypted_and_identified() {
        let c = decrypting();
        let (body, safe) = safe_push(MESSAGE, TOKEN);
        let checked = check(body.as_bytes(), &plan(&c, Some(safe)), &c).expect("passes");
        assert_eq!(
            checked.body_for_backend.as_deref(),
            Some(MESSAGE.as_bytes())
        );
        assert!(checked.decrypted);
        assert_eq!(checked.sender.as_deref(), Some("o1"));
        assert_eq!(
            checked.identity,
            Message::read(MESSAGE.as_bytes(), Format::Xml)
                .expect("xml")
                .retry_identity()
        );
    }

    #[test]
    fn without_decrypt_only_the_verified_parts_of_the_body_go_on() {
        let c = config(
            &format!(r#", "safe_mode": {{"encoding_aes_key": "{KEY}"}}"#),
            15,
        );
        let (body, safe) = safe_push(MESSAGE, TOKEN);
        let p = plan(&c, Some(safe));
        assert!(!p.decrypt);
        // Compat-mode fields beside Encrypt are not covered by msg_signature: dropped.
        let compat = body.replace("</xml>", "<Content>forged</Content></xml>");
        let checked = check(compat.as_bytes(), &p, &c).expect("passes");
        assert!(!checked.decrypted);
        let forwarded =
            String::from_utf8(checked.body_for_backend.clone().expect("rebuilt")).expect("utf-8");
        assert!(forwarded
            .starts_with("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA["));
        assert!(!forwarded.contains("forged"), "{forwarded}");
        assert_eq!(
            envelope::extract_encrypt(forwarded.as_bytes()),
            envelope::extract_encrypt(body.as_bytes())
        );
        assert!(
            checked.identity.is_some(),
            "still decrypted to find the MsgId"
        );
    }

    #[test]
    fn a_wrong_msg_signature_is_401() {
        let c = decrypting();
        let (body, safe) = safe_push(MESSAGE, "another-token");
        assert_eq!(
            reason(check(body.as_bytes(), &plan(&c, Some(safe)), &c)),
            Reason::MsgSignature
        );
        let (body, safe) = safe_push(MESSAGE, TOKEN);
        let tampered = body.replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A", 1);
        assert_eq!(
            reason(check(tampered.as_bytes(), &plan(&c, Some(safe)), &c)),
            Reason::MsgSignature
        );
    }

    #[test]
    fn a_missing_repeated_or_malformed_encrypt_is_400() {
        let c = decrypting();
        let (_, safe) = safe_push(MESSAGE, TOKEN);
        for body in [
            "<xml><ToUserName>gh_1</ToUserName></xml>",
            "<xml><Encrypt>a</Encrypt><Encrypt>a</Encrypt></xml>",
            "<xml><Encrypt><![CDATA[abc</Encrypt></xml>",
            "",
        ] {
            assert_eq!(
                reason(check(body.as_bytes(), &plan(&c, Some(safe.clone())), &c)),
                Reason::Malformed,
                "{body}"
            );
        }
    }

    #[test]
    fn a_plaintext_that_is_not_a_message_is_400_whether_handed_on_or_not() {
        let verify_only = config(
            &format!(r#", "safe_mode": {{"encoding_aes_key": "{KEY}"}}"#),
            15,
        );
        for c in [decrypting(), verify_only] {
            for plaintext in [
                "4872341879287",
                "<xml>",
                "",
                r#"{"MsgId":1}"#,
                "<xml/>",
                "<xml></xml>",
                "<html><body>hi</body></html>",
                "<xml><ToUserName>gh_1</ToUserName><Content>hi</Content></xml>",
            ] {
                let (body, safe) = safe_push(plaintext, TOKEN);
                let r = check(body.as_bytes(), &plan(&c, Some(safe)), &c);
                assert_eq!(reason(r.clone()), Reason::Malformed, "{plaintext:?}");
                assert!(r.expect_err("refused").detail.contains("not a message"));
            }
        }
    }

    #[test]
    fn a_correctly_signed_body_that_does_not_decrypt_is_401_decrypt() {
        let c = decrypting();
        let other_app = cipher::encrypt(&key(), "wxOTHER", MESSAGE.as_bytes(), &[1u8; 16]);
        for encrypt in [other_app.as_str(), "bm90IGJsb2Nrcw==", "!!!"] {
            let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
            let safe = SafeModeQuery {
                msg_signature: as_str(&sign(&[TOKEN, TS, NONCE, encrypt])).to_string(),
                timestamp: TS.into(),
                nonce: NONCE.into(),
                verified: QueryVerified::BySignature { token: 0 },
            };
            assert_eq!(
                reason(check(body.as_bytes(), &plan(&c, Some(safe)), &c)),
                Reason::Decrypt,
                "{encrypt}"
            );
        }
    }

    #[test]
    fn without_a_key_a_safe_push_is_verified_and_passed_on_as_its_encrypt_alone() {
        let c = config("", 15);
        let (body, safe) = safe_push(MESSAGE, TOKEN);
        let checked = check(body.as_bytes(), &plan(&c, Some(safe)), &c).expect("passes");
        let forwarded = checked.body_for_backend.expect("rebuilt");
        assert!(forwarded
            .starts_with(b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA["));
        // An outer ToUserName that is not an account id does not go on.
        let odd = body.replace("gh_1", "gh 1");
        let (_, safe) = safe_push(MESSAGE, TOKEN);
        let checked = check(odd.as_bytes(), &plan(&c, Some(safe)), &c).expect("passes");
        assert!(checked
            .body_for_backend
            .expect("rebuilt")
            .starts_with(b"<xml><Encrypt><![CDATA["));

        assert_eq!(checked.identity, None, "nothing verified identifies it");
        assert_eq!(checked.sender, None);
    }

    #[test]
    fn compat_mode_bodies_pass_and_are_identified() {
        let c = decrypting();
        let (body, safe) = safe_push(MESSAGE, TOKEN);
        let compat = body.replace(
            "</xml>",
            "<FromUserName>o1</FromUserName><MsgId>99</MsgId></xml>",
        );
        let checked = check(compat.as_bytes(), &plan(&c, Some(safe)), &c).expect("passes");
        assert_eq!(
            checked.body_for_backend.as_deref(),
            Some(MESSAGE.as_bytes())
        );
    }

    fn seal(key: &AesKey) -> ReplySeal<'_> {
        ReplySeal {
            format: Format::Xml,
            token: TOKEN,
            key,
            appid: APPID,
            timestamp: TS,
            nonce: NONCE,
        }
    }

    #[test]
    fn an_xml_reply_is_sealed_into_an_envelope_that_opens_again() {
        let k = key();
        let reply = "<xml><Content><![CDATA[回复]]></Content></xml>";
        let Reply::Encrypted(envelope) = seal_reply(reply.as_bytes(), &seal(&k), &[9u8; 16]) else {
            panic!("encrypted");
        };
        let encrypt = envelope::extract_encrypt(envelope.as_bytes()).expect("Encrypt");
        let signature = crate::xml::element(envelope.as_bytes(), "MsgSignature")
            .expect("readable")
            .expect("present");
        assert_eq!(signature, as_str(&sign(&[TOKEN, TS, NONCE, &encrypt])));
        assert_eq!(
            cipher::decrypt(&k, APPID, &encrypt).expect("opens"),
            reply.as_bytes()
        );
    }

    #[test]
    fn a_byte_order_mark_before_the_xml_is_dropped_and_the_reply_sealed() {
        let k = key();
        let Reply::Encrypted(envelope) =
            seal_reply(b"\xef\xbb\xbf<xml>r</xml>", &seal(&k), &[2u8; 16])
        else {
            panic!("encrypted");
        };
        let encrypt = envelope::extract_encrypt(envelope.as_bytes()).expect("Encrypt");
        assert_eq!(
            cipher::decrypt(&k, APPID, &encrypt).expect("opens"),
            b"<xml>r</xml>"
        );
    }

    #[test]
    fn empty_success_and_non_xml_replies_stay_as_they_are() {
        let k = key();
        for body in [&b""[..], b"success", b"  success\n", b"\n", b"ok"] {
            assert_eq!(seal_reply(body, &seal(&k), &[0u8; 16]), Reply::AsIs);
        }
    }
}
