//! What `wechat-gate doctor` found: one `Check` per line of the report, rendered as
//! text for people or JSON for machines. Every string is passed through the
//! `Redactor` before it is printed, so neither the AppSecret nor the access token can
//! reach the output, whatever an upstream put in an error message.

use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Works, with something the operator should know.
    Warn,
    Fail,
    /// Not run (an earlier check failed, or nothing asked for it).
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One check: a one-line summary, what to do about it, and details (a table, a rule).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub summary: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub advice: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// A block to copy as it is (an egress rule): printed unindented after the checks,
    /// and in JSON inside `data`.
    #[serde(skip)]
    pub attachment: Option<(String, String)>,
}

impl Check {
    pub fn new(name: &'static str, status: Status, summary: impl Into<String>) -> Check {
        Check {
            name,
            status,
            summary: summary.into(),
            advice: Vec::new(),
            details: Vec::new(),
            data: Value::Null,
            attachment: None,
        }
    }

    pub fn advise(mut self, line: impl Into<String>) -> Check {
        self.advice.push(line.into());
        self
    }

    pub fn detail(mut self, lines: impl IntoIterator<Item = String>) -> Check {
        self.details.extend(lines);
        self
    }

    pub fn data(mut self, data: Value) -> Check {
        self.data = data;
        self
    }

    pub fn attach(mut self, title: impl Into<String>, text: impl Into<String>) -> Check {
        self.attachment = Some((title.into(), text.into()));
        self
    }

    /// A check that could not run because `needed` did not pass.
    pub fn skipped(name: &'static str, needed: &str) -> Check {
        Check::new(name, Status::Skip, format!("not run: needs {needed}"))
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub appid: String,
    pub api: String,
    pub checks: Vec<Check>,
}

impl Report {
    /// True when no check failed (warnings and skips allowed).
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    pub fn to_text(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = format!(
            "wechat-gate doctor: AppID {} via {}\n",
            self.appid, self.api
        );
        for c in &self.checks {
            let _ = writeln!(out, "{} {:width$}  {}", c.status.label(), c.name, c.summary);
            for line in &c.advice {
                let _ = writeln!(out, "     {:width$}  -> {line}", "");
            }
            for line in &c.details {
                let _ = writeln!(out, "     {:width$}  {line}", "");
            }
        }
        for (title, text) in self.checks.iter().filter_map(|c| c.attachment.as_ref()) {
            let _ = write!(out, "-- {title}:\n{text}");
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        let verdict = if failed == 0 {
            "all checks passed".to_string()
        } else {
            format!("{failed} check(s) failed")
        };
        let _ = writeln!(out, "{verdict}");
        out
    }

    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.insert("ok".into(), json!(self.ok()));
        }
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text + "\n"
    }
}

/// Replaces every secret it knows of with `<redacted>`.
#[derive(Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn add(&mut self, secret: &str) {
        // Short values would blank out ordinary words; WeChat's secrets are long.
        if secret.len() >= 6 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
        }
    }

    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "<redacted>");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: &[Status]) -> Report {
        Report {
            appid: "wx1".into(),
            api: "http://x".into(),
            checks: statuses
                .iter()
                .map(|s| Check::new("token", *s, "summary").advise("do this"))
                .collect(),
        }
    }

    #[test]
    fn a_report_fails_only_on_a_failed_check() {
        assert!(report(&[Status::Pass, Status::Warn, Status::Skip]).ok());
        assert!(!report(&[Status::Pass, Status::Fail]).ok());
    }

    #[test]
    fn text_has_one_line_per_check_then_its_advice() {
        let text = report(&[Status::Pass, Status::Fail]).to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert_eq!(lines.get(1), Some(&"PASS token  summary"));
        assert_eq!(lines.get(2), Some(&"            -> do this"));
        assert_eq!(lines.last(), Some(&"1 check(s) failed"));
    }

    #[test]
    fn json_says_ok_and_lists_checks() {
        let v: Value = serde_json::from_str(&report(&[Status::Warn]).to_json()).expect("json");
        assert_eq!(v["ok"], true);
        assert_eq!(v["checks"][0]["status"], "warn");
        assert!(v["checks"][0].get("details").is_none());
    }

    #[test]
    fn the_redactor_hides_every_secret_it_was_given() {
        let mut r = Redactor::default();
        r.add("s3cret-value");
        r.add("TOKEN_abcdef");
        r.add("ab");
        assert_eq!(
            r.clean("x s3cret-value y TOKEN_abcdef ab"),
            "x <redacted> y <redacted> ab"
        );
    }
}
