//! The only code that talks to the proxy: proxy-wasm root and HTTP contexts, the
//! hostcalls they need, and the metrics. It gathers inputs, asks the pure core for a
//! decision and carries it out.

mod admission;
mod calls;
mod dedupe;
mod held;
mod http;
mod live_list;
mod metrics;
mod root;

/// Registers the root context. Called once when the VM starts.
pub fn start() {
    // Also installs a panic hook that logs at critical before the VM aborts. Asking the
    // host for its level is a restricted callback here (in `_initialize`): the root
    // context asks in on_vm_start and on_configure.
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::GateRoot::new()));
}
