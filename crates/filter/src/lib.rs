//! wechat-gate: a proxy-wasm HTTP filter that lets through only requests that really
//! come from WeChat.
//!
//! This crate is the proxy-wasm adapter: it gathers inputs, hands them to the pure
//! [`gate`] crate (every decision; no proxy-wasm, no I/O) and carries out what comes
//! back. [`host`] is every hostcall, as a trait ([`host::Host`]) with its proxy-wasm
//! implementation; [`root`] and [`http`], the contexts, turn callbacks into events and
//! [`effects`] carries out what the events return, generic over the host; [`worker`]
//! is what they share; [`shared_data`] is the one compare-and-swap loop; [`sdk`] hands
//! the SDK's callbacks to the contexts. It is the only crate that names proxy-wasm.

// Nothing a request carries may make the filter panic: no unwrap, expect, panic or
// unchecked indexing outside tests.
// Functions fit on a screen (STYLE.md; the threshold is in clippy.toml).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
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
mod api;
mod dedupe;
mod effects;
mod host;
mod http;
mod live_list;
mod metrics;
mod parking;
mod root;
mod sdk;
mod shared_data;
#[cfg(test)]
mod tests;
mod worker;

use host::wasm::ProxyWasm;

/// Registers the root context, on the real host. Called once when the VM starts.
fn start() {
    // Asking the host for its level is a restricted callback here (in `_initialize`):
    // the root context asks in on_vm_start and on_configure.
    ProxyWasm::start_logging();
    proxy_wasm::set_root_context(|context_id| Box::new(root::GateRoot::new(context_id, ProxyWasm)));
}

proxy_wasm::main! {{
    start();
}}
