//! The callback's query string, parsed strictly: the parameters WeChat sends are
//! percent-decoded (`+` is a space, as in any form encoding), must be valid UTF-8 and
//! must not repeat. Other parameters are ignored.

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::borrow::Cow;

/// The parameters of a callback request. Values are decoded; presence is checked by
/// the caller, which knows which are required for the method. A value with nothing
/// to decode is borrowed from the query, not copied (WeChat's never need decoding).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CallbackQuery<'q> {
    pub signature: Option<Cow<'q, str>>,
    pub timestamp: Option<Cow<'q, str>>,
    pub nonce: Option<Cow<'q, str>>,
    pub echostr: Option<Cow<'q, str>>,
    pub openid: Option<Cow<'q, str>>,
    pub encrypt_type: Option<Cow<'q, str>>,
    pub msg_signature: Option<Cow<'q, str>>,
}

/// Why a query could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    NotUtf8(String),
    Repeated(&'static str),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::NotUtf8(name) => write!(f, "query parameter {name} is not valid UTF-8"),
            QueryError::Repeated(name) => write!(f, "query parameter {name} is repeated"),
        }
    }
}

/// Parses the part of `:path` after `?` (without the `?`).
pub fn parse_query(query: &[u8]) -> Result<CallbackQuery<'_>, QueryError> {
    let mut q = CallbackQuery::default();
    for pair in query.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let mut halves = pair.splitn(2, |&b| b == b'=');
        let raw_key = halves.next().unwrap_or_default();
        let raw_value = halves.next().unwrap_or_default();
        let key = match decode(raw_key) {
            Some(k) => k,
            // A key we cannot read is not one of ours: ignore it like any other.
            None => continue,
        };
        let (name, slot) = match key.as_ref() {
            "signature" => ("signature", &mut q.signature),
            "timestamp" => ("timestamp", &mut q.timestamp),
            "nonce" => ("nonce", &mut q.nonce),
            "echostr" => ("echostr", &mut q.echostr),
            "openid" => ("openid", &mut q.openid),
            "encrypt_type" => ("encrypt_type", &mut q.encrypt_type),
            "msg_signature" => ("msg_signature", &mut q.msg_signature),
            _ => continue,
        };
        if slot.is_some() {
            return Err(QueryError::Repeated(name));
        }
        let value = decode(raw_value).ok_or_else(|| QueryError::NotUtf8(name.to_string()))?;
        *slot = Some(value);
    }
    Ok(q)
}

/// `application/x-www-form-urlencoded` decoding of one key or value; `None` when the
/// decoded bytes are not UTF-8.
fn decode(raw: &[u8]) -> Option<Cow<'_, str>> {
    // Nothing to decode (as every WeChat parameter): the bytes as they are.
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return std::str::from_utf8(raw).ok().map(Cow::Borrowed);
    }
    let plus_free: Cow<'_, [u8]> = if raw.contains(&b'+') {
        Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    match plus_free {
        Cow::Borrowed(bytes) => percent_decode(bytes).decode_utf8().ok(),
        Cow::Owned(bytes) => percent_decode(&bytes)
            .decode_utf8()
            .ok()
            .map(|s| Cow::Owned(s.into_owned())),
    }
}

/// `:path` with the safe-mode parameters (`encrypt_type`, `msg_signature`) taken out of
/// its query: what a backend that receives the decrypted message should see, so that
/// its own SDK, if it has one, takes the push for a plaintext one.
pub fn without_safe_mode_params(path: &[u8]) -> Vec<u8> {
    let mut halves = path.splitn(2, |&b| b == b'?');
    let path_only = halves.next().unwrap_or_default();
    let Some(query) = halves.next() else {
        return path.to_vec();
    };
    let kept: Vec<&[u8]> = query
        .split(|&b| b == b'&')
        .filter(|pair| {
            let key = pair.splitn(2, |&b| b == b'=').next().unwrap_or_default();
            !matches!(
                decode(key).as_deref(),
                Some("encrypt_type" | "msg_signature")
            )
        })
        .collect();
    let mut out = path_only.to_vec();
    if !kept.is_empty() {
        out.push(b'?');
        out.extend_from_slice(&kept.join(&b'&'));
    }
    out
}

/// Characters left as they are in a query value (RFC 3986 unreserved).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_mode_params_are_taken_out_of_the_path_and_nothing_else() {
        let path =
            b"/wechat?signature=s&timestamp=1&nonce=2&openid=o&encrypt_type=aes&msg_signature=m";
        assert_eq!(
            without_safe_mode_params(path),
            b"/wechat?signature=s&timestamp=1&nonce=2&openid=o".to_vec()
        );
        assert_eq!(
            without_safe_mode_params(b"/w?%65ncrypt_type=aes&x=1"),
            b"/w?x=1".to_vec()
        );
        assert_eq!(
            without_safe_mode_params(b"/w?encrypt_type=aes"),
            b"/w".to_vec()
        );
        assert_eq!(without_safe_mode_params(b"/w"), b"/w".to_vec());
    }

    #[test]
    fn reads_the_parameters_wechat_sends() {
        let q = parse_query(
            b"signature=abc&timestamp=1714036504&nonce=1514711492&echostr=42&openid=o_x-1",
        )
        .expect("valid");
        assert_eq!(q.signature.as_deref(), Some("abc"));
        assert_eq!(q.timestamp.as_deref(), Some("1714036504"));
        assert_eq!(q.nonce.as_deref(), Some("1514711492"));
        assert_eq!(q.echostr.as_deref(), Some("42"));
        assert_eq!(q.openid.as_deref(), Some("o_x-1"));
    }

    #[test]
    fn values_are_percent_and_plus_decoded() {
        let q = parse_query(b"echostr=a%2Bb+c%20d%E5%BE%AE&nonce=%6e").expect("valid");
        assert_eq!(q.echostr.as_deref(), Some("a+b c d微"));
        assert_eq!(q.nonce.as_deref(), Some("n"));
    }

    #[test]
    fn percent_encoded_keys_are_recognised() {
        let q = parse_query(b"%73ignature=x").expect("valid");
        assert_eq!(q.signature.as_deref(), Some("x"));
    }

    #[test]
    fn repeated_parameter_is_an_error() {
        assert_eq!(
            parse_query(b"nonce=1&nonce=1"),
            Err(QueryError::Repeated("nonce"))
        );
        assert_eq!(
            parse_query(b"nonce=1&%6eonce=2"),
            Err(QueryError::Repeated("nonce"))
        );
    }

    #[test]
    fn non_utf8_value_is_an_error() {
        assert_eq!(
            parse_query(b"echostr=%FF%FE"),
            Err(QueryError::NotUtf8("echostr".into()))
        );
        assert_eq!(
            parse_query(b"nonce=\xff"),
            Err(QueryError::NotUtf8("nonce".into()))
        );
    }

    #[test]
    fn unknown_and_unreadable_keys_are_ignored() {
        let q = parse_query(b"x=1&%FF=2&&=3&nonce=4&signature").expect("valid");
        assert_eq!(q.nonce.as_deref(), Some("4"));
        assert_eq!(q.signature.as_deref(), Some(""));
    }

    #[test]
    fn huge_query_is_parsed_without_trouble() {
        let mut q = Vec::new();
        for i in 0..20_000 {
            q.extend_from_slice(format!("k{i}=v&").as_bytes());
        }
        q.extend_from_slice(b"nonce=1");
        assert_eq!(parse_query(&q).expect("valid").nonce.as_deref(), Some("1"));
    }

    #[test]
    fn value_may_contain_equals_signs() {
        let q = parse_query(b"echostr=a=b==").expect("valid");
        assert_eq!(q.echostr.as_deref(), Some("a=b=="));
    }
}
