use super::ips;
use crate::allowlist::CallbackAllowlist;
use crate::token::shared_list::{decode_shared_list, encode_shared_list};

#[test]
fn a_shared_list_reads_back_and_a_damaged_one_is_none() {
    let value = encode_shared_list(&ips(), 7).expect("encodes");
    assert_eq!(
        decode_shared_list(&value),
        Some(CallbackAllowlist::from_blocks(ips().blocks))
    );
    for bad in [&b""[..], b"{", b"{\"entries\": [\"x\"], \"fetched_at\": 1}"] {
        assert_eq!(decode_shared_list(bad), None);
    }
}
