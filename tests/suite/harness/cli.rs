//! The `wechat-gate` CLI as a process: no stdin, none of the three secrets nor a proxy
//! inherited from the environment, only the variables a test sets.

use std::process::{Command, Stdio};

/// Where the CLI takes its secrets from (and the proxies it must never use).
const CLEARED: [&str; 9] = [
    "WECHAT_TOKEN",
    "WECHAT_AES_KEY",
    "WECHAT_APPSECRET",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What a run printed and how it ended.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// stdout then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `wechat-gate args…` with `env` set in a clean environment.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wechat-gate"));
    cmd.args(args).stdin(Stdio::null());
    for var in CLEARED {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run wechat-gate");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
