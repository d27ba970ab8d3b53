//! Which requests a gate guards: `path` matched exactly against the path part of
//! `:path`, or (Open Platform) a pattern whose one segment is an authorizer's AppID.

use crate::config::{Config, AUTHORIZER_PLACEHOLDERS};

/// How a request's path stands to the guarded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch<'p> {
    /// Not the guarded path: passed through untouched.
    Other,
    /// The guarded path; `authorizer` is the segment a pattern's `{appid}` or
    /// `$APPID$` stands for (Open Platform).
    Guarded { authorizer: Option<&'p [u8]> },
}

/// Whether a request with this `:path` is on the guarded path (every request is,
/// when the configuration names none). The host asks first, so that a request on
/// another path costs nothing more.
pub fn guards(path: Option<&[u8]>, config: &Config) -> bool {
    matches!(match_path(path, config), PathMatch::Guarded { .. })
}

/// How `path` stands to the configured one. A pattern's segment matches one
/// non-empty path segment: `/wechat/{appid}/callback` guards `/wechat/wx1/callback`
/// and `/wechat/anything/callback` alike, so that a segment that is no AppID is
/// refused, never passed through. Look-alikes many frameworks route to the same
/// handler (`/wechat/`, `/wechat;jsessionid=1`) are guarded too: checked, they are
/// as good as the path itself; unchecked, they never pass.
pub fn match_path<'p>(path: Option<&'p [u8]>, config: &Config) -> PathMatch<'p> {
    let Some(guarded) = &config.path else {
        return PathMatch::Guarded { authorizer: None };
    };
    let Some(path) = path else {
        return PathMatch::Other;
    };
    let path = comparable(split_path(path).0);
    let pattern = guarded.as_bytes();
    let placeholder = AUTHORIZER_PLACEHOLDERS
        .iter()
        .find_map(|h| find(pattern, h.as_bytes()).map(|at| (at, h.len())));
    let Some((at, len)) = placeholder else {
        return match path == pattern {
            true => PathMatch::Guarded { authorizer: None },
            false => PathMatch::Other,
        };
    };
    let before = pattern.get(..at).unwrap_or_default();
    let after = pattern.get(at + len..).unwrap_or_default();
    let segment = path
        .strip_prefix(before)
        .and_then(|rest| rest.strip_suffix(after));
    match segment {
        Some(s) if !s.is_empty() && !s.contains(&b'/') => PathMatch::Guarded {
            authorizer: Some(s),
        },
        _ => PathMatch::Other,
    }
}

/// The path as frameworks route it: without `;` parameters (servlet containers drop
/// them) and trailing slashes (most routers ignore one).
fn comparable(path: &[u8]) -> &[u8] {
    let path = path.split(|&b| b == b';').next().unwrap_or_default();
    let mut end = path.len();
    while end > 1 && path.get(end - 1) == Some(&b'/') {
        end -= 1;
    }
    path.get(..end).unwrap_or(path)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An AppID as WeChat issues them: `wx` and 16 lowercase hex digits.
pub fn is_plausible_appid(s: &[u8]) -> bool {
    s.len() == 18
        && s.starts_with(b"wx")
        && s.get(2..).is_some_and(|h| {
            h.iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        })
}

/// Splits `:path` into the path and the query (without `?`).
pub(super) fn split_path(path: &[u8]) -> (&[u8], &[u8]) {
    let mut halves = path.splitn(2, |&b| b == b'?');
    (
        halves.next().unwrap_or_default(),
        halves.next().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(platform: &str, path: &str) -> Config {
        let json = format!(
            r#"{{"platform": "{platform}", "path": "{path}", "token": "t", "appid": "wxc0c0c0c0c0c0c0c0", "source": {{"mode": "off"}}, "safe_mode": {{"encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}}}}"#
        );
        crate::config::parse(json.as_bytes(), &|_| None).expect("config")
    }

    #[test]
    fn a_pattern_guards_one_segment_and_hands_it_over() {
        for pattern in ["/wechat/{appid}/callback", "/wechat/$APPID$/callback"] {
            let c = cfg("open_platform", pattern);
            assert_eq!(
                match_path(Some(b"/wechat/wx570bc396a51b8ff8/callback?x=1"), &c),
                PathMatch::Guarded {
                    authorizer: Some(&b"wx570bc396a51b8ff8"[..])
                }
            );
            // Anything in the segment is guarded (and then refused if no AppID).
            assert!(guards(Some(b"/wechat/evil/callback"), &c));
            for other in [
                &b"/wechat//callback"[..],
                b"/wechat/a/b/callback",
                b"/wechat/wx1/callbackx",
                b"/other",
            ] {
                assert_eq!(
                    match_path(Some(other), &c),
                    PathMatch::Other,
                    "{}",
                    String::from_utf8_lossy(other)
                );
            }
        }
        let c = cfg("open_platform", "/events/$APPID$");
        assert!(guards(Some(b"/events/wx570bc396a51b8ff8"), &c));
    }

    #[test]
    fn appids_look_like_wechats() {
        assert!(is_plausible_appid(b"wx570bc396a51b8ff8"));
        for bad in [
            &b"wx570bc396a51b8ff"[..],
            b"wx570bc396a51b8ffG",
            b"gh_570bc396a51b8f",
            b"WX570bc396a51b8ff8",
        ] {
            assert!(!is_plausible_appid(bad));
        }
    }
}
