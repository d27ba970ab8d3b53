//! The shared ticket cache and the JS-SDK signature.

use super::NOW;
use crate::api::ticket::{jssdk_answer, jssdk_signature, Ticket, TICKET_MARGIN_SECONDS};

fn cached(expires_at: i64) -> Vec<u8> {
    Ticket {
        ticket: "TICKET".into(),
        expires_at,
    }
    .encode()
}

#[test]
fn a_cached_ticket_is_used_until_the_margin_before_it_expires() {
    let at = NOW + TICKET_MARGIN_SECONDS + 1;
    assert_eq!(
        Ticket::usable(&cached(at), NOW).map(|t| t.ticket),
        Some("TICKET".into())
    );
    assert!(Ticket::usable(&cached(at), NOW + 1).is_none());
    assert!(Ticket::usable(&cached(NOW - 1), NOW).is_none());
    assert!(Ticket::usable(b"not json", NOW).is_none());
}

#[test]
fn a_ticket_is_taken_only_from_a_good_getticket_reply() {
    let good = br#"{"errcode":0,"errmsg":"ok","ticket":"T1","expires_in":7200}"#;
    let t = Ticket::from_reply(good, NOW).expect("a ticket");
    assert_eq!((t.ticket.as_str(), t.expires_at), ("T1", NOW + 7200));
    for bad in [
        r#"{"errcode":40001,"errmsg":"invalid credential","ticket":"T1","expires_in":7200}"#,
        r#"{"errcode":0,"errmsg":"ok","expires_in":7200}"#,
        r#"{"errcode":0,"errmsg":"ok","ticket":"","expires_in":7200}"#,
        r#"{"errcode":0,"errmsg":"ok","ticket":"T1","expires_in":0}"#,
        "<html>",
    ] {
        assert!(Ticket::from_reply(bad.as_bytes(), NOW).is_none(), "{bad}");
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&t.answer(NOW + 200).body).expect("json");
    assert_eq!(
        answer,
        serde_json::json!({"errcode": 0, "errmsg": "ok", "ticket": "T1", "expires_in": 7000})
    );
    assert!(!format!("{t:?}").contains("T1"), "Debug shows no ticket");
}

const EXAMPLE_TICKET: &str =
    "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";
const EXAMPLE_URL: &str = "http://mp.weixin.qq.com?params=value";

#[test]
fn the_jssdk_signature_is_wechats_documented_example() {
    assert_eq!(
        jssdk_signature(
            EXAMPLE_TICKET,
            "Wm3WZYTPz0wzccnW",
            1_414_587_457,
            EXAMPLE_URL
        ),
        "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    );
}

#[test]
fn the_fragment_is_not_signed_nor_handed_back() {
    let with_fragment = format!("{EXAMPLE_URL}#wechat_redirect");
    assert_eq!(
        jssdk_signature(
            EXAMPLE_TICKET,
            "Wm3WZYTPz0wzccnW",
            1_414_587_457,
            &with_fragment
        ),
        "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    );
    let ticket = Ticket {
        ticket: EXAMPLE_TICKET.into(),
        expires_at: NOW + 7200,
    };
    let a = jssdk_answer(
        "wxAPP",
        &ticket,
        "Wm3WZYTPz0wzccnW",
        1_414_587_457,
        &with_fragment,
    );
    let v: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "errcode": 0, "errmsg": "ok", "appId": "wxAPP", "timestamp": 1_414_587_457,
            "nonceStr": "Wm3WZYTPz0wzccnW",
            "signature": "0f9de62fce790f9a083d5c99e95740ceb90c27ed",
            "url": EXAMPLE_URL,
        })
    );
    assert!(!String::from_utf8_lossy(&a.body).contains(EXAMPLE_TICKET));
}
