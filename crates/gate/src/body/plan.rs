//! What a verified push's body needs, decided on its headers: the size rule every
//! push obeys, and whether the gate must read the body at all (safe mode, or
//! retries to spot) and what for.

use crate::config::Config;
use crate::rejection::{Reason, Rejection};
use crate::safe_mode::SafeModeQuery;

/// What the gate must do with a push's body, decided on its headers.
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
        // A push that may be parked is read whole: parking keeps what went upstream.
        (safe.is_some() || dedupe || config.parks()).then_some(BodyPlan {
            safe,
            decrypt,
            dedupe,
            authorizer: None,
        })
    }
}

/// The body-size rule for a verified POST, decided on its headers: the body must be
/// declared (`content-length`, as WeChat always sends) and within `max_body_bytes`, or
/// absent (`end_of_stream` on the headers). A body of unknown length is refused with
/// 411 rather than streamed: nothing reaches the backend before its size is known.
pub fn check_declared(
    content_length: Option<&[u8]>,
    end_of_stream: bool,
    max_body_bytes: u64,
) -> Result<(), Rejection> {
    let Some(raw) = content_length else {
        if end_of_stream {
            return Ok(());
        }
        return Err(Rejection::new(
            Reason::LengthRequired,
            "a POST must declare its content-length (WeChat always does)",
        ));
    };
    let len = std::str::from_utf8(raw)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Rejection::new(Reason::Malformed, "content-length is not a number"))?;
    check_size(len, max_body_bytes)
}

/// The body received so far (`size` bytes) against `max_body_bytes`.
pub fn check_received(size: usize, max_body_bytes: u64) -> Result<(), Rejection> {
    u64::try_from(size).map_or(Err(too_large(max_body_bytes)), |n| {
        check_size(n, max_body_bytes)
    })
}

fn check_size(len: u64, max_body_bytes: u64) -> Result<(), Rejection> {
    if len > max_body_bytes {
        return Err(too_large(max_body_bytes));
    }
    Ok(())
}

fn too_large(max_body_bytes: u64) -> Rejection {
    Rejection::new(
        Reason::TooLarge,
        format!("body is larger than max_body_bytes ({max_body_bytes})"),
    )
}

/// The declared `content-length`, as a number (once [`check_declared`] passed it).
pub fn declared_length(content_length: Option<&[u8]>) -> Option<u64> {
    content_length.and_then(|d| std::str::from_utf8(d).ok()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_over_the_limit_is_413() {
        assert_eq!(check_declared(Some(b"10"), false, 10), Ok(()));
        assert_eq!(
            check_declared(Some(b"11"), false, 10).map_err(|r| r.reason),
            Err(Reason::TooLarge)
        );
        assert_eq!(
            check_declared(Some(b"11"), false, 10).map_err(|r| r.reason.status()),
            Err(413)
        );
    }

    #[test]
    fn body_of_unknown_length_is_411_and_no_body_is_fine() {
        assert_eq!(
            check_declared(None, false, 10).map_err(|r| r.reason.status()),
            Err(411)
        );
        assert_eq!(check_declared(None, true, 10), Ok(()));
    }

    #[test]
    fn content_length_that_is_not_a_number_is_400() {
        for bad in [
            &b"99999999999999999999999999"[..],
            b"-1",
            b"",
            b"1 0",
            b"0x10",
        ] {
            assert_eq!(
                check_declared(Some(bad), false, 10).map_err(|r| r.reason),
                Err(Reason::Malformed)
            );
        }
    }
}
