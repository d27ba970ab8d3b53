//! Secrets for the CLI come from the environment, never from an argument (an argument
//! shows in `ps`, shell history and CI logs). Each command names the variable it reads
//! (`WECHAT_TOKEN`, `WECHAT_AES_KEY`, `WECHAT_APPSECRET` by default) and takes a
//! `--…-env NAME` flag to read another. The value itself is never printed.

use std::fmt;

/// A secret that could not be read: the variable is unset, empty or not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSecret {
    /// The variable that was read.
    pub var: String,
    /// What the secret is, e.g. "the token".
    pub what: &'static str,
    /// The flag that names another variable, e.g. "--token-env".
    pub flag: &'static str,
}

impl fmt::Display for MissingSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{var} is not set: export {what} in {var} (or name another variable with {flag} NAME); \
             secrets are never taken as arguments",
            var = self.var,
            what = self.what,
            flag = self.flag,
        )
    }
}

impl std::error::Error for MissingSecret {}

/// The value of `var`, which holds `what` (named by `flag`); unset or empty is an error.
pub fn read(var: &str, what: &'static str, flag: &'static str) -> Result<String, MissingSecret> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(MissingSecret {
            var: var.to_string(),
            what,
            flag,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named_with_the_flag_that_renames_it() {
        let e = read(
            "WECHAT_GATE_SURELY_UNSET_0x5eed",
            "the token",
            "--token-env",
        )
        .expect_err("unset");
        let text = e.to_string();
        assert!(
            text.starts_with("WECHAT_GATE_SURELY_UNSET_0x5eed is not set"),
            "{text}"
        );
        assert!(text.contains("--token-env NAME"), "{text}");
    }
}
