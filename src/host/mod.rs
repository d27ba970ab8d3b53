//! The only code that talks to the proxy: proxy-wasm root and HTTP contexts, the
//! hostcalls they need, and the metrics. It gathers inputs, asks the pure core for a
//! decision and carries it out.

mod calls;
mod http;
mod metrics;
mod root;

/// Registers the root context. Called once when the VM starts.
pub fn start() {
    // Also installs a panic hook that logs at critical before the VM aborts.
    proxy_wasm::set_log_level(calls::host_log_level());
    proxy_wasm::set_root_context(|_| Box::new(root::GateRoot::new()));
}
