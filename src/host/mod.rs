//! The proxy-wasm adapter, wasm32 only: it gathers inputs, hands them to the pure
//! [`crate::gate`] and carries out what comes back. [`proxy`] makes every hostcall;
//! [`shared_data`] is the one compare-and-swap loop; [`root`] and [`http`] turn
//! callbacks into events and effects into hostcalls; [`worker`] is what they share.

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
pub fn start() {
    // Asking the host for its level is a restricted callback here (in `_initialize`):
    // the root context asks in on_vm_start and on_configure.
    proxy::start_logging();
    proxy_wasm::set_root_context(|context_id| Box::new(root::GateRoot::new(context_id)));
}
