//! Native only, never in the filter: what behaves like WeChat for the CLI, the tests
//! and the bench. [`wechat`] signs queries, builds pushes and opens sealed replies as
//! WeChat's servers do; [`client`] is a small HTTP/1.1 client; [`mock_api`] stands
//! in for WeChat's API server.

pub mod client;
pub mod mock_api;
pub mod wechat;
