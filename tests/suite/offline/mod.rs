//! What needs no Envoy: the wechatpy vectors through the gate's own decision,
//! mock-api over HTTP (the callback role's calls, the API role's calls and faults), the CLI's secrets, and `wechat-gate doctor` against mock-api.

mod cli_https;
mod cli_secrets;
mod cli_timeouts;
pub mod dashboard;
mod doctor;
mod mock_api;
mod mock_api_calls;
mod mock_api_faults;
mod readme;
mod vectors;
