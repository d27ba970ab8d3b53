//! wechat-gate: a proxy-wasm HTTP filter that lets through only requests that really
//! come from WeChat. Everything but `host` is pure and unit-tests natively; `host`
//! (the only code that imports proxy-wasm) is built for `wasm32` only, and `client`
//! (the CLI's and tests' HTTP client), `doctor`, `mock_api` and `secret_env` natively only.

// Nothing a request carries may make the filter panic: no unwrap, expect, panic or
// unchecked indexing outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod allowlist;
pub mod config;
pub mod crypto;
pub mod dedupe;
pub mod header_map;
pub mod message;
pub mod push_body;
pub mod query;
pub mod refresh;
pub mod signature;
pub mod verify;
pub mod wechat_api;
pub mod wechat_push;

#[cfg(not(target_arch = "wasm32"))]
pub mod client;
#[cfg(not(target_arch = "wasm32"))]
pub mod doctor;
#[cfg(not(target_arch = "wasm32"))]
pub mod mock_api;
#[cfg(not(target_arch = "wasm32"))]
pub mod secret_env;

#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    host::start();
}}
