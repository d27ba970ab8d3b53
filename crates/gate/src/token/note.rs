//! The refresh's log lines: what happened, at which level. They name clusters,
//! errcodes and WeChat's own messages, never the AppSecret or a token.

use super::plan::Call;
use super::wechat_api::ApiFailure;
use crate::errcodes::{self, Handling};
use crate::exchange::Level;
use std::fmt;

/// Which list a worker keeps admitting from when a fetch fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The last good live list.
    LastGood,
    /// Only the static entries: no live list has loaded yet.
    Static,
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kept::LastGood => "last good",
            Kept::Static => "static",
        })
    }
}

/// A log line of the refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The call in flight got no answer within the lease; it is given up.
    NoAnswer,
    /// The host refused to make a call (an undefined cluster, most likely).
    CannotCall { cluster: String, reason: String },
    /// A call failed (WeChat's errcode advice in the line).
    CallFailed {
        call: Call,
        cluster: String,
        failure: ApiFailure,
    },
    /// A list refused for what it holds: a warning the first time in a failure
    /// streak, then at debug.
    ListRefused {
        cluster: String,
        failure: ApiFailure,
        kept: Kept,
        first: bool,
    },
    /// Entries of a good list that are not addresses.
    Skipped { entries: Vec<String> },
    /// A good list, published for every worker.
    Published {
        entries: usize,
        cluster: String,
        refresh_seconds: u64,
    },
    /// Every upstream failed; the next try is `retry_seconds` away.
    GaveUp {
        failure: ApiFailure,
        kept: Kept,
        retry_seconds: i64,
    },
}

impl Note {
    pub fn level(&self) -> Level {
        match self {
            Note::Published { .. } => Level::Info,
            Note::ListRefused { first: false, .. } => Level::Debug,
            Note::GaveUp { failure, .. } if failure.is_refused_list() => Level::Debug,
            Note::NoAnswer
            | Note::CannotCall { .. }
            | Note::CallFailed { .. }
            | Note::ListRefused { first: true, .. }
            | Note::Skipped { .. }
            | Note::GaveUp { .. } => Level::Warn,
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("callback IP list: ")?;
        match self {
            Note::NoAnswer => f.write_str("a call got no answer within the lease; giving it up"),
            Note::CannotCall { cluster, reason } => {
                write!(f, "cannot call cluster {cluster} ({reason}): is it defined?")
            }
            Note::CallFailed {
                call,
                cluster,
                failure,
            } => {
                let what = match call {
                    Call::Token { .. } => "access token",
                    Call::List { .. } => "getcallbackip",
                };
                let hint = hint(*call, failure);
                write!(f, "{what} from cluster {cluster} failed: {failure}{hint}")
            }
            Note::ListRefused {
                cluster,
                failure,
                kept,
                first: true,
            } => write!(
                f,
                "getcallbackip from cluster {cluster}: {failure}; keeping the {kept} list \
                 (counted in wechat_gate.allowlist.list_refused; not logged again until a good list)"
            ),
            Note::ListRefused {
                cluster, failure, ..
            } => write!(f, "getcallbackip from cluster {cluster}: {failure}"),
            Note::Skipped { entries } => write!(
                f,
                "skipped {} entries that are not addresses: {entries:?}",
                entries.len()
            ),
            Note::Published {
                entries,
                cluster,
                refresh_seconds,
            } => write!(
                f,
                "{entries} entries from cluster {cluster}; next refresh in {refresh_seconds} s"
            ),
            Note::GaveUp {
                failure,
                kept,
                retry_seconds,
            } if failure.is_refused_list() => write!(
                f,
                "list refused; keeping the {kept} list; next try in {retry_seconds} s"
            ),
            Note::GaveUp {
                failure,
                kept,
                retry_seconds,
            } => write!(
                f,
                "every upstream failed (last: {failure}); keeping the {kept} list; next try in \
                 {retry_seconds} s"
            ),
        }
    }
}

/// What WeChat's errcode means for the operator, or what the filter does about it.
fn hint(call: Call, failure: &ApiFailure) -> String {
    let ApiFailure::Errcode { code, message } = failure else {
        return String::new();
    };
    let Some(e) = errcodes::lookup(*code) else {
        return String::new();
    };
    match e.handling {
        Handling::NewToken if matches!(call, Call::List { .. }) => {
            ": the token is dropped and a new one fetched".to_string()
        }
        Handling::Retry => format!(": {}, retrying", e.meaning),
        Handling::NewToken | Handling::Operator => {
            format!(": {}: {}", e.meaning, e.todo(message))
        }
    }
}
