//! WeChat API replies (`token::wechat_api`): `stable_token`/`token`/`gettoken`
//! and `getcallbackip`, for any status and body. A token never shows in `Debug`; a
//! list is never empty, never longer than `MAX_ENTRIES`, and never has an entry
//! broader than the bound (`/16`, `/48`).
#![no_main]

use arbitrary::Arbitrary;
use gate::allowlist::CallbackAllowlist;
use gate::token::wechat_api::{
    advice, parse_callback_ip_reply, parse_token_reply, too_broad, ApiFailure, MAX_ENTRIES,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    status: Option<u32>,
    ok: bool,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let status = if input.ok { Some(200) } else { input.status };
    match parse_token_reply(status, &input.body) {
        Ok(token) => {
            assert!(!token.value.is_empty() && token.expires_in > 0);
            assert_eq!(
                format!("{token:?}"),
                format!("AccessToken(<redacted>, expires_in {})", token.expires_in)
            );
        }
        Err(ApiFailure::Errcode { code, message }) => {
            let _ = advice(code);
            let _ = ApiFailure::Errcode { code, message }.to_string();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match parse_callback_ip_reply(status, &input.body) {
        Ok(ips) => {
            assert!(!ips.blocks.is_empty());
            assert_eq!(ips.blocks.len(), ips.entries.len());
            assert!(ips.entries.len() + ips.skipped.len() <= MAX_ENTRIES);
            assert!(!ips.blocks.iter().any(too_broad));
            // What is shared with other workers parses again as the same list.
            let shared = CallbackAllowlist::parse(ips.entries.iter().map(String::as_str))
                .expect("usable entries parse");
            assert_eq!(shared, CallbackAllowlist::from_blocks(ips.blocks));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
