//! wechat-gate: a proxy-wasm HTTP filter that lets through only requests that really
//! come from WeChat.
//!
//! This crate is the proxy-wasm adapter: it gathers inputs, hands them to the pure
//! [`gate`] crate (every decision; no proxy-wasm, no I/O) and carries out what comes
//! back. [`proxy`] makes every hostcall; [`shared_data`] is the retry tables'
//! compare-and-swap loop; [`root`] and [`http`] turn callbacks into events and effects
//! into hostcalls, [`live_list`] likewise for the token machine ([`gate::token`]);
//! [`worker`] is what they share. It is the only crate that names proxy-wasm.

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

mod admission;
mod dedupe;
mod http;
mod live_list;
mod metrics;
mod proxy;
mod root;
mod shared_data;
mod worker;

/// Registers the root context. Called once when the VM starts.
fn start() {
    // Asking the host for its level is a restricted callback here (in `_initialize`):
    // the root context asks in on_vm_start and on_configure.
    proxy::start_logging();
    proxy_wasm::set_root_context(|context_id| Box::new(root::GateRoot::new(context_id)));
}

proxy_wasm::main! {{
    start();
}}
