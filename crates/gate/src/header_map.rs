//! The proxy-wasm serialized header map, decoded without trusting it (and encoded): a `u32` count,
//! then a (`u32` name length, `u32` value length) pair for each header, then each
//! name and value followed by a NUL. Anything out of bounds yields `None`, never a
//! panic. (The SDK's own decoder unwraps names as UTF-8.)

/// Where each (name, value) lies in a serialized header map: decoded once, looked
/// up many times.
pub type Spans = Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>;

/// Decodes a serialized header map into the positions of its names and values.
pub fn spans(bytes: &[u8]) -> Option<Spans> {
    Some(
        decode(bytes)?
            .into_iter()
            .map(|(n, v)| (offset_in(bytes, n), offset_in(bytes, v)))
            .collect(),
    )
}

/// The range `part` (a subslice of `whole`) covers.
fn offset_in(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

/// Decodes a serialized header map into (name, value) byte slices.
pub fn decode(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)?;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    let mut data = sizes_end;
    let mut pairs = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let at = 4 + i * 8;
        let name_len = read_u32(bytes, at)?;
        let value_len = read_u32(bytes, at + 4)?;
        let (name, next) = terminated(bytes, data, name_len)?;
        let (value, next) = terminated(bytes, next, value_len)?;
        data = next;
        pairs.push((name, value));
    }
    Some(pairs)
}

/// `len` bytes at `at`, which must be followed by a NUL; and the offset after it.
fn terminated(bytes: &[u8], at: usize, len: usize) -> Option<(&[u8], usize)> {
    let end = at.checked_add(len)?;
    let field = bytes.get(at..end)?;
    (bytes.get(end) == Some(&0)).then_some((field, end + 1))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(raw)).ok()
}

/// A request's headers as the host hands them over in one hostcall (each hostcall
/// costs about as much as the whole verdict): decoded once, looked up many times.
#[derive(Clone)]
pub struct HeaderMap {
    buffer: Vec<u8>,
    spans: Spans,
}

impl HeaderMap {
    /// `None` if the serialized map does not decode.
    pub fn from_serialized(buffer: Vec<u8>) -> Option<HeaderMap> {
        let spans = spans(&buffer)?;
        Some(HeaderMap { buffer, spans })
    }

    /// A map of these pairs (the tests' and the bench's way in).
    pub fn from_pairs(pairs: &[(&[u8], &[u8])]) -> HeaderMap {
        let buffer = encode(pairs);
        let spans = spans(&buffer).unwrap_or_default();
        HeaderMap { buffer, spans }
    }

    /// Every (name, value) pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .filter_map(|(n, v)| Some((self.buffer.get(n.clone())?, self.buffer.get(v.clone())?)))
    }

    /// The first value of `name` (lower case, as Envoy keeps names).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The names of the headers for which `pick` is true.
    pub fn names_where(&self, pick: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
        self.pairs()
            .filter(|(n, _)| pick(n))
            .map(|(n, _)| n.to_vec())
            .collect()
    }
}

/// Serializes (name, value) pairs the same way, for the hostcalls that take a map.
pub fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = len(pairs.len()).to_vec();
    for (n, v) in pairs {
        out.extend_from_slice(&len(n.len()));
        out.extend_from_slice(&len(v.len()));
    }
    for (n, v) in pairs {
        out.extend_from_slice(n);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_including_non_utf8_values() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/wechat"),
            (b"x-odd", b"\xff\xfe"),
            (b"empty", b""),
        ];
        assert_eq!(decode(&encode(&pairs)), Some(pairs));
    }

    #[test]
    fn spans_point_at_the_names_and_values() {
        let buf = encode(&[(b":path", b"/w"), (b"a", b"bc")]);
        let spans = spans(&buf).expect("valid");
        let text: Vec<(&[u8], &[u8])> = spans
            .iter()
            .map(|(n, v)| (&buf[n.clone()], &buf[v.clone()]))
            .collect();
        assert_eq!(text, vec![(&b":path"[..], &b"/w"[..]), (b"a", b"bc")]);
    }

    #[test]
    fn empty_buffer_is_an_empty_map() {
        assert_eq!(decode(&[]), Some(vec![]));
    }

    #[test]
    fn truncated_or_lying_buffers_are_refused() {
        let good = encode(&[(b"a", b"b")]);
        for cut in 1..good.len() {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        let mut lying = good.clone();
        lying[0] = 0xff;
        assert_eq!(decode(&lying), None);
        let mut long_name = good;
        long_name[4] = 0xff;
        assert_eq!(decode(&long_name), None);
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), None);
    }
}
