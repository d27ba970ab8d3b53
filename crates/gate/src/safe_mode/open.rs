//! A verified safe-mode push opened: its `Encrypt` decrypted (with a key
//! configured) into a message of the platform's, checked, and what the backend gets.
//! Without a key only the signature could be checked: the `Encrypt` goes on alone.

use super::cipher::{self, AesKey};
use super::{envelope, SealedPush};
use crate::config::{Config, Rotation};
use crate::message::{Format, Message};
use crate::rejection::{Reason, Rejection};

/// A safe-mode push that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// What the backend gets instead of the body as it came: the decrypted message
    /// (`decrypt: true`), or a body rebuilt from its verified parts only (`Encrypt`,
    /// and `ToUserName` once decrypted): `msg_signature` covers nothing else, so
    /// nothing else goes on.
    pub body_for_backend: Vec<u8>,
    /// `body_for_backend` is the decrypted message.
    pub decrypted: bool,
    /// The decrypted message, so verified (with or without handing it on); `None`
    /// without a key, when nothing in it can be read.
    pub message: Option<Message<'static>>,
    /// Which of the rotated keys opened it (0: current): the reply is sealed with it.
    pub key: usize,
    /// Which of the rotated tokens verified `msg_signature`.
    pub token: usize,
    /// The push's format: a sealed reply goes back in it.
    pub format: Format,
}

/// Opens a verified push: decrypted (`decrypt`: handed on decrypted) with any of the
/// keys, read, and checked against the account (and Open Platform's `authorizer`).
pub fn open(
    sealed: SealedPush,
    decrypt: bool,
    authorizer: Option<&str>,
    config: &Config,
) -> Result<Opened, Rejection> {
    let SealedPush {
        outer,
        encrypt,
        token,
        format,
        ..
    } = sealed;
    let (Some(safe_mode), Some(appid)) = (&config.safe_mode, &config.appid) else {
        // No key configured: the signature is all that can be checked, and nothing in
        // the message can be read (so nothing identifies it as a retry).
        // The outer ToUserName is unsigned, but backends built on Tencent's sample
        // code fail without one: it goes on when it looks like an account id.
        let to = outer
            .text("ToUserName")
            .filter(|t| is_plausible_account_id(t));
        return Ok(Opened {
            body_for_backend: envelope::push_body_in(format, to, &encrypt).into_bytes(),
            decrypted: false,
            message: None,
            key: 0,
            token,
            format,
        });
    };
    let (key, plaintext) = decrypt_with_any(&safe_mode.keys, appid, &encrypt)?;
    let inner = read_plaintext(config, &plaintext)?;
    check_account(appid, authorizer, &inner)?;
    let body_for_backend = if decrypt {
        plaintext
    } else {
        envelope::push_body_in(format, inner.text("ToUserName"), &encrypt).into_bytes()
    };
    Ok(Opened {
        body_for_backend,
        decrypted: decrypt,
        message: Some(inner),
        key,
        token,
        format,
    })
}

/// Decrypts with the current key, else the previous one (WeChat's rule while an
/// EncodingAESKey is rotated); which opened it, and the plaintext.
fn decrypt_with_any(
    keys: &Rotation<AesKey>,
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

/// A decrypted push must be a message in a format of its platform, and a push of
/// the platform's ([`Message::check_push`]). Whatever else opens under a valid
/// `msg_signature` (a WeCom handshake's `echostr`, posted as a push under the
/// handshake's query; text; JSON to an Official Account; `<xml/>`, `{}`, another
/// document) is refused, never handed to the backend as a verified message.
fn read_plaintext(config: &Config, plaintext: &[u8]) -> Result<Message<'static>, Rejection> {
    let message =
        Message::read(plaintext, Format::on(config.platform, plaintext)).map_err(|_| {
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
    Ok(message.into_owned())
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

/// An account's original id (`gh_…`): 1 to 64 letters, digits, `_` or `-`.
fn is_plausible_account_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
