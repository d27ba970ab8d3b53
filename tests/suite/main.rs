//! The one integration-test binary (ripgrep's shape): one harness, compiled once.
//!
//! - `harness`: the backends, mock-api, the CLI, the wechatpy vectors.
//! - `offline`: what needs no Envoy (`cargo test --test suite offline::`).

mod harness;
mod offline;
