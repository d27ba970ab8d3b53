//! WeChat's callback IP list and the account's access token, pure: [`wechat_api`]
//! builds the API calls and reads their replies; [`state`] decides when to fetch and
//! who fetches; [`plan`] what to do after each reply; [`shared_list`] is the list as
//! published for every worker. The host makes the calls and keeps the shared state.

pub mod plan;
pub mod shared_list;
pub mod state;
#[cfg(test)]
mod tests;
pub mod wechat_api;
