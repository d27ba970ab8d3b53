//! WeChat's request signatures: `sha1` over the lexicographically sorted parts,
//! lowercase hex, and a constant-time comparison against what the request carries.
//!
//! `signature` = sha1(sort(token, timestamp, nonce)); safe mode's `msg_signature`
//! adds the `Encrypt` value as a fourth part. The same function serves both.

/// A 40-character lowercase hex SHA-1 digest.
pub type HexDigest = [u8; 40];

/// `sha1(sort(parts).concat())` as lowercase hex. Parts are sorted by their bytes,
/// which for UTF-8 is the same order as by code points (what WeChat and its SDKs use).
pub fn sign(parts: &[&str]) -> HexDigest {
    let mut sorted: Vec<&str> = parts.to_vec();
    // Three or four parts: an insertion sort, not a slice sort (kilobytes of `.wasm`).
    for i in 1..sorted.len() {
        let mut j = i;
        while j > 0 && sorted.get(j - 1) > sorted.get(j) {
            sorted.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut hasher = sha1_smol::Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    to_hex(&hasher.digest().bytes())
}

/// `signature` for the handshake and every push.
pub fn request_signature(token: &str, timestamp: &str, nonce: &str) -> HexDigest {
    sign(&[token, timestamp, nonce])
}

/// True when `given` is exactly the expected digest. The comparison takes the same
/// time wherever the first difference is; only the length (always 40 for a digest
/// WeChat sends) is allowed to short-cut.
pub fn signature_matches(expected: &HexDigest, given: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    let mut diff = 0u8;
    for (a, b) in expected.iter().zip(given) {
        diff |= a ^ b;
    }
    std::hint::black_box(diff) == 0
}

fn to_hex(bytes: &[u8; 20]) -> HexDigest {
    let digit = |n: u8| if n < 10 { b'0' + n } else { b'a' + (n - 10) };
    let mut out = [0u8; 40];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        if let [high, low] = pair {
            *high = digit(byte >> 4);
            *low = digit(byte & 0x0f);
        }
    }
    out
}

/// The digest as a `&str` (it is always ASCII hex).
pub fn as_str(digest: &HexDigest) -> &str {
    std::str::from_utf8(digest).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_documentation_example() {
        let d = request_signature("AAAAA", "1714036504", "1514711492");
        assert_eq!(as_str(&d), "f464b24fc39322e44b38aa78f5edd27bd1441696");
    }

    #[test]
    fn order_of_the_parts_does_not_matter() {
        assert_eq!(sign(&["b", "a", "c"]), sign(&["c", "b", "a"]));
    }

    #[test]
    fn every_order_of_four_parts_signs_their_sorted_concatenation() {
        let parts = ["nonce", "Encrypt+/=", "1700000000", "token"];
        let mut sorted = parts;
        sorted.sort_unstable();
        let want = to_hex(&sha1_smol::Sha1::from(sorted.concat()).digest().bytes());
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..4 {
                    for d in 0..4 {
                        let mut seen = [a, b, c, d];
                        seen.sort_unstable();
                        if seen == [0, 1, 2, 3] {
                            assert_eq!(sign(&[parts[a], parts[b], parts[c], parts[d]]), want);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn digest_is_lowercase_hex() {
        let d = request_signature("t", "1", "2");
        assert!(d
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
    }

    #[test]
    fn comparison_rejects_any_single_changed_byte_and_other_lengths() {
        let d = request_signature("token", "1700000000", "42");
        assert!(signature_matches(&d, &d));
        for i in 0..40 {
            let mut other = d;
            other[i] = if other[i] == b'0' { b'1' } else { b'0' };
            assert!(!signature_matches(&d, &other), "byte {i}");
        }
        assert!(!signature_matches(&d, &d[..39]));
        assert!(!signature_matches(&d, b""));
        let upper: Vec<u8> = d.iter().map(u8::to_ascii_uppercase).collect();
        if upper != d {
            assert!(
                !signature_matches(&d, &upper),
                "uppercase hex is not what WeChat sends"
            );
        }
    }
}
