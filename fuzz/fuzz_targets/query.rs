//! The callback's query string (`gate::query`): any bytes parse or are refused, and
//! what parses encodes back to the same parameters.
#![no_main]

use gate::query::{encode_query, parse_query, without_safe_mode_params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let stripped = without_safe_mode_params(data);
    assert!(stripped.len() <= data.len());
    let Ok(q) = parse_query(data) else {
        return;
    };
    // Whatever was read survives encoding and parsing again.
    let fields = [
        ("signature", &q.signature),
        ("timestamp", &q.timestamp),
        ("nonce", &q.nonce),
        ("echostr", &q.echostr),
        ("openid", &q.openid),
        ("encrypt_type", &q.encrypt_type),
        ("msg_signature", &q.msg_signature),
    ];
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    let encoded = encode_query(&pairs);
    let again = parse_query(encoded.as_bytes()).expect("an encoded query parses");
    assert_eq!(again, q);
    // The safe-mode parameters are gone from the path, the others stay.
    let path = [b"/p?".as_slice(), data].concat();
    let stripped_path = without_safe_mode_params(&path);
    let q2 = parse_query(
        stripped_path
            .splitn(2, |&b| b == b'?')
            .nth(1)
            .unwrap_or_default(),
    );
    if let Ok(q2) = q2 {
        assert_eq!(q2.encrypt_type, None);
        assert_eq!(q2.msg_signature, None);
        assert_eq!(q2.signature, q.signature);
        assert_eq!(q2.nonce, q.nonce);
    }
});
