//! Safe mode (`encrypt_type=aes`; every WeCom request), pure: what is WeChat's AES
//! scheme and nothing else. A push's body is read by [`crate::body`], which hands a
//! safe-mode one to this module.
//!
//! - [`SafeModeQuery`]: the query's part, and how the query itself is verified
//!   ([`QueryVerified`]: by its `signature`, or by the body on WeCom).
//! - [`verify`] (msg_signature.rs): the body's `Encrypt` checked against
//!   `msg_signature`, before anything is decrypted.
//! - [`open()`] (open.rs): the `Encrypt` decrypted with any of the rotated keys, its
//!   plaintext checked to be a push of the platform's for this account, and what the
//!   backend gets.
//! - [`seal_reply`] (reply.rs): the backend's reply to a decrypted push encrypted for
//!   WeChat.
//! - [`cipher`] (AES-256-CBC, WeChat's framing), [`envelope`] (XML and JSON).
//!
//! Nothing here forwards anything: the exchange keeps the body from the backend
//! until [`verify`] and [`open()`] have said yes.

pub mod cipher;
pub mod envelope;
mod msg_signature;
mod open;
mod reply;
#[cfg(test)]
mod tests;

pub use msg_signature::{verify, verify_with_any_token, SealedPush};
pub use open::{open, Opened};
pub use reply::{seal_reply, ReplyBody, ReplySeal};

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
