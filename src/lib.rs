//! wechat-gate: a proxy-wasm HTTP filter that lets through only requests that really
//! come from WeChat. Everything but `host` is pure and unit-tests natively; `host`
//! (the only code that imports proxy-wasm) is built for `wasm32` only.

pub mod allowlist;
pub mod config;
pub mod header_map;
pub mod query;
pub mod signature;
pub mod verify;

#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    host::start();
}}
