//! WeChat's callback IP list, pure: [`wechat_api`] builds the API calls and reads
//! their replies; [`state`] decides when to fetch, who fetches, and what to do after
//! each reply. The host makes the calls and keeps the shared state.

pub mod state;
pub mod wechat_api;
