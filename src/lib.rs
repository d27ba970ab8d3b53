//! wechat-gate: a proxy-wasm HTTP filter that lets through only requests that really
//! come from WeChat.
//!
//! - [`gate`]: every decision, pure (no proxy-wasm, no I/O); builds and tests natively.
//! - `host` (wasm32 only): the proxy-wasm adapter. It gathers inputs, hands them to
//!   `gate` and carries out what comes back; the only code that names proxy-wasm.
//! - [`kit`] (native only): behaves like WeChat, for the CLI, the tests and the bench.
//!   It does not exist on wasm32, so the wasm build proves the filter never needs it.

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

pub mod gate;

#[cfg(not(target_arch = "wasm32"))]
pub mod kit;

#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    host::start();
}}
