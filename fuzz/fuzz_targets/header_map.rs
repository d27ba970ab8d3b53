//! The proxy-wasm serialized header map (`gate::header_map`): any bytes decode or are
//! refused, never out of bounds; what decodes encodes back to itself.
#![no_main]

use gate::header_map::{decode, encode, spans, HeaderMap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = decode(data);
    let spanned = spans(data);
    assert_eq!(decoded.is_some(), spanned.is_some());
    let Some(pairs) = decoded else {
        assert!(HeaderMap::from_serialized(data.to_vec()).is_none());
        return;
    };
    for ((name, value), (n, v)) in pairs.iter().zip(spanned.unwrap_or_default()) {
        assert_eq!(data.get(n), Some(*name));
        assert_eq!(data.get(v), Some(*value));
    }
    let map = HeaderMap::from_serialized(data.to_vec()).expect("it decoded");
    if let Some((name, value)) = pairs.first() {
        if let Ok(name) = std::str::from_utf8(name) {
            // The first of a repeated name wins.
            let first = pairs
                .iter()
                .find(|(n, _)| *n == name.as_bytes())
                .map(|p| p.1);
            assert_eq!(map.get(name), first);
            let _ = value;
        }
    }
    let _ = map.names_where(|n| n.starts_with(b"x-"));
    let again = encode(&pairs);
    assert_eq!(decode(&again), Some(pairs.clone()));
    if !pairs.is_empty() {
        // A map carries nothing past its last value, so its encoding is a prefix.
        assert_eq!(data.get(..again.len()), Some(again.as_slice()));
    }
});
