//! A push's whole body checked against its [`BodyPlan`]: read as its platform's
//! format; a plaintext push only for its identity (to spot WeChat's retries); a
//! safe-mode push through [`safe_mode`], its `Encrypt` verified ([`verify`]) before
//! it is opened ([`open`]). What passes is [`Checked`]: what the backend gets, and
//! what the exchange needs for the gate's headers, the retry table and the sealed
//! reply.

use super::BodyPlan;
use crate::config::Config;
use crate::message::{Format, Message};
use crate::rejection::Rejection;
use crate::safe_mode::{self, SealedPush};
use crate::tables::replay::QueryUse;

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

/// Checks a whole push body against its plan: [`verify`], then [`open`].
pub fn check(body: &[u8], plan: &BodyPlan, config: &Config) -> Result<Checked, Rejection> {
    open(verify(body, plan, config)?, plan, config)
}

/// A push body whose signature is checked, not yet opened.
pub enum Verified {
    /// A plaintext push: nothing in its body to verify, read only for its identity.
    Plain(Checked),
    /// A safe-mode push whose `Encrypt` matches `msg_signature`.
    Sealed(SealedPush),
}

impl Verified {
    /// WeCom: the query, which only now is verified (by the body): to be recorded
    /// against replays before anything is decrypted.
    pub fn query_verified_by_body(&self) -> Option<QueryUse> {
        match self {
            Verified::Sealed(sealed) => sealed.query_verified_by_body,
            Verified::Plain(_) => None,
        }
    }
}

/// The first half of [`check`]: the body read as its platform's format and a
/// safe-mode push's `Encrypt` checked against `msg_signature`.
pub fn verify(body: &[u8], plan: &BodyPlan, config: &Config) -> Result<Verified, Rejection> {
    let format = Format::on(config.platform, body);
    match &plan.safe {
        Some(query) => safe_mode::verify(body, format, query, config).map(Verified::Sealed),
        None => {
            let identity = identity(plan, body, format);
            Ok(Verified::Plain(Checked::unread(identity, format)))
        }
    }
}

/// The second half of [`check`]: a safe-mode push opened ([`safe_mode::open`]), and
/// what its message says about itself taken (verified) from it.
pub fn open(verified: Verified, plan: &BodyPlan, config: &Config) -> Result<Checked, Rejection> {
    let sealed = match verified {
        Verified::Plain(checked) => return Ok(checked),
        Verified::Sealed(sealed) => sealed,
    };
    let opened = safe_mode::open(sealed, plan.decrypt, plan.authorizer.as_deref(), config)?;
    let message = opened.message.as_ref();
    Ok(Checked {
        decrypted: opened.decrypted,
        message_read: message.is_some(),
        sender: message
            .and_then(|m| m.text("FromUserName"))
            .map(str::to_string),
        identity: message
            .filter(|_| plan.dedupe)
            .and_then(Message::retry_identity),
        key: opened.key,
        format: opened.format,
        token: opened.token,
        body_for_backend: Some(opened.body_for_backend),
    })
}

impl Checked {
    /// A plaintext body: passed on as it came.
    fn unread(identity: Option<u64>, format: Format) -> Checked {
        Checked {
            body_for_backend: None,
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

fn identity(plan: &BodyPlan, body: &[u8], format: Format) -> Option<u64> {
    if !plan.dedupe {
        return None;
    }
    Message::read(body, format).ok()?.retry_identity()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1714036504</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content><MsgId>99</MsgId></xml>";

    fn config(safe_mode: &str, dedupe: u64) -> Config {
        let json = format!(
            r#"{{"token": "tok", "appid": "wx1234", "dedupe_seconds": {dedupe}, "source": {{"mode": "off"}}{safe_mode}}}"#
        );
        crate::config::parse(json.as_bytes(), &|_| None).expect("config")
    }

    fn plan(config: &Config, safe: Option<safe_mode::SafeModeQuery>) -> BodyPlan {
        BodyPlan::for_push(config, safe).expect("the body is read")
    }

    #[test]
    fn a_plaintext_push_is_read_only_to_spot_retries() {
        // Read when parking may keep it (the default), else only to spot retries.
        assert!(BodyPlan::for_push(&config("", 0), None).is_some());
        let no_parking = r#", "park": {"max_messages": 0}"#;
        assert_eq!(BodyPlan::for_push(&config(no_parking, 0), None), None);
        let c = config("", 15);
        let checked = check(MESSAGE.as_bytes(), &plan(&c, None), &c).expect("passes");
        assert_eq!(checked.body_for_backend, None);
        assert!(checked.identity.is_some());
        let checked = check(b"anything", &plan(&c, None), &c).expect("passes");
        assert_eq!(checked.identity, None);
    }
}
