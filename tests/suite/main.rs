//! The one integration-test binary (ripgrep's shape): one harness, compiled once.
//!
//! - `harness`: Envoy (config builder and process), the backends, mock-api, the CLI,
//!   the wechatpy vectors and bridge, and the requests WeChat sends.
//! - `offline`: what needs no Envoy (`cargo test -p wechat-gate-cli --test suite offline::`).
//! - `envoy`: the gate in a real Envoy 1.40 (`cargo test -p wechat-gate-cli --test suite
//!   envoy::`); a missing Envoy or .wasm fails, it never skips.

mod envoy;
mod harness;
mod offline;
