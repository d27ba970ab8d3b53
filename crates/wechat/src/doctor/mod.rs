//! `wechat-gate doctor`: checks, against WeChat's API (or mock-api), everything a gate
//! needs from it, and says what to do about each problem: the access token (and what
//! its errcode means), the callback IP list (and whether a running gate holds the same),
//! the API's own addresses (as a ready egress rule), WeChat's view of the callback URL
//! (DNS and ping), and which backup API domains answer. With `--gate-api URL`, an
//! API-role gate instead, from where a backend runs (no AppSecret needed).
//!
//! The AppSecret comes from the environment only; neither it nor the access token is
//! ever printed (every line goes through `report::Redactor`). Native only.

mod backups;
mod egress;
mod gate;
mod gate_api;
mod ips;
mod network;
pub mod report;
mod token;

pub use egress::EgressFormat;
pub use report::{Check, Report, Status};

use crate::client::{self, Client, Options};
use ::gate::config::TokenApi;
use std::time::Duration;
use ureq::http::Uri;

/// The doctor's `user-agent`.
const USER_AGENT: &str = concat!("wechat-gate-doctor/", env!("CARGO_PKG_VERSION"));

/// `--token-api`: the configuration's own [`TokenApi`], by the same names (`wecom` is
/// chosen by `platform`, never by name, so it is not offered).
fn token_api_parser() -> impl clap::builder::TypedValueParser<Value = TokenApi> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("stable")
            .help("`POST /cgi-bin/stable_token`: shares the token with every other holder"),
        PossibleValue::new("classic")
            .help("`GET /cgi-bin/token`: invalidates every other holder's token (the gate's too)"),
    ])
    .try_map(|name| {
        serde_json::from_value(serde_json::Value::String(name)).map_err(|e| e.to_string())
    })
}

/// The command line of `wechat-gate doctor`.
#[derive(clap::Args, Debug, Clone)]
pub struct DoctorArgs {
    /// The account's AppID (not needed with --gate-api).
    #[arg(long, required_unless_present = "gate_api")]
    pub appid: Option<String>,
    /// The environment variable that holds the AppSecret.
    #[arg(long, value_name = "NAME", default_value = "WECHAT_APPSECRET")]
    pub secret_env: String,
    /// WeChat's API (or mock-api, or a proxy to WeChat's API).
    #[arg(long, value_name = "URL", default_value = "https://api.weixin.qq.com")]
    pub api: String,
    #[arg(long, value_parser = token_api_parser(), default_value = "stable")]
    pub token_api: TokenApi,
    /// A running gate's Envoy admin address (e.g. http://127.0.0.1:9901): compare its list.
    #[arg(long, value_name = "URL")]
    pub gate_admin: Option<String>,
    /// The gate's account name in its stats, when it serves several.
    #[arg(long, value_name = "NAME", requires = "gate_admin")]
    pub gate_account: Option<String>,
    /// An API-role gate's URL, its `path` included (e.g.
    /// http://127.0.0.1:10001/wechat-api/mp): check it end to end with a harmless call,
    /// as a backend would (no AppSecret needed; WeChat's own checks are not run).
    #[arg(long, value_name = "URL")]
    pub gate_api: Option<String>,
    /// Print the API's addresses as an egress rule in this format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub egress: Option<EgressFormat>,
    /// What WeChat checks of the callback URL.
    #[arg(long, value_parser = ["all", "dns", "ping"], default_value = "all")]
    pub check_action: String,
    /// Where WeChat checks the callback URL from.
    #[arg(long, value_parser = ["DEFAULT", "CHINANET", "UNICOM", "CAP"], default_value = "DEFAULT")]
    pub check_operator: String,
    /// Send connections for HOST to ADDR:PORT (repeatable), like curl's --resolve.
    #[arg(long, value_name = "HOST=ADDR:PORT")]
    pub resolve: Vec<String>,
    /// Timeout of each call, in seconds.
    #[arg(long, value_name = "S", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--api` split: scheme, host, and the base URL without a trailing `/`.
#[derive(Debug, Clone)]
pub struct ApiBase {
    pub scheme: String,
    pub host: String,
    pub base: String,
}

impl ApiBase {
    pub fn parse(url: &str) -> Result<ApiBase, String> {
        let bad = |why: &str| format!("--api {url}: {why}");
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            _ => return Err(bad("must start with http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?.to_string();
        if uri.query().is_some() {
            return Err(bad("no query, please"));
        }
        Ok(ApiBase {
            scheme,
            host,
            base: url.trim_end_matches('/').to_string(),
        })
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }
}

/// What every check needs.
pub struct Doctor {
    pub http: Client,
    pub api: ApiBase,
    pub appid: String,
    secret: String,
    pub args: DoctorArgs,
}

/// A usage error (exit 2): a missing secret, a bad flag value.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Runs what `args` ask for: an API-role gate's checks (`--gate-api`), else WeChat's.
pub fn run(args: DoctorArgs) -> Result<Report, UsageError> {
    match &args.gate_api {
        Some(url) => gate_api::run(&http_client(&args)?, url),
        None => Ok(Doctor::new(args)?.run()),
    }
}

/// The client for `--timeout` and `--resolve`.
fn http_client(args: &DoctorArgs) -> Result<Client, UsageError> {
    let overrides = args
        .resolve
        .iter()
        .map(|r| client::parse_override(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(UsageError)?;
    Client::new(&Options {
        overrides,
        ..Options::new(Duration::from_secs(args.timeout), USER_AGENT)
    })
    .map_err(UsageError)
}

impl Doctor {
    pub fn new(args: DoctorArgs) -> Result<Doctor, UsageError> {
        let appid = args
            .appid
            .clone()
            .ok_or_else(|| UsageError("--appid is required (or --gate-api URL)".into()))?;
        let secret = crate::secret_env::read(&args.secret_env, "the AppSecret", "--secret-env")
            .map_err(|e| UsageError(e.to_string()))?;
        let api = ApiBase::parse(&args.api).map_err(UsageError)?;
        if let Some(admin) = &args.gate_admin {
            ApiBase::parse(admin).map_err(|e| UsageError(e.replace("--api", "--gate-admin")))?;
        }
        Ok(Doctor {
            http: http_client(&args)?,
            api,
            appid,
            secret,
            args,
        })
    }

    /// Runs every check, in order; the later ones use the token the first one got.
    pub fn run(&self) -> Report {
        let mut redactor = report::Redactor::default();
        redactor.add(&self.secret);
        let (token_check, token) = token::check(self);
        let mut checks = vec![token_check];
        if let Some(t) = &token {
            redactor.add(&t.value);
        }
        let access = token.as_ref().map(|t| t.value.as_str());
        let callback = ips::callback_ips(self, access);
        checks.push(callback.check);
        if let Some(admin) = &self.args.gate_admin {
            checks.push(gate::compare(self, admin, callback.entries.as_deref()));
        }
        checks.push(ips::api_domain_ips(self, access));
        checks.push(network::check(self, access));
        checks.push(backups::check(self, access));
        let clean = |s: &String| redactor.clean(s);
        for c in &mut checks {
            c.summary = clean(&c.summary);
            c.advice = c.advice.iter().map(clean).collect();
            c.details = c.details.iter().map(clean).collect();
            if let Some((_, text)) = &mut c.attachment {
                *text = redactor.clean(text);
            }
            c.data = serde_json::from_str(&redactor.clean(&c.data.to_string()))
                .unwrap_or(serde_json::Value::Null);
        }
        Report {
            appid: self.appid.clone(),
            api: redactor.clean(&self.api.base),
            checks,
        }
    }

    fn secret(&self) -> &str {
        &self.secret
    }
}

/// A line on stderr before a check that takes seconds.
fn progress(what: &str) {
    eprintln!("doctor: {what} ...");
}

/// Why a call to WeChat gave nothing usable.
enum CallError {
    /// No HTTP reply at all (DNS, connection, TLS, timeout).
    NoReply(String),
    /// A reply that is not what was asked for (an errcode, say).
    Api(::gate::token::wechat_api::ApiFailure),
}

/// The failed check `name` of a call to `endpoint`.
fn failed(name: &'static str, endpoint: &str, e: CallError) -> Check {
    match e {
        CallError::NoReply(why) => {
            Check::new(name, Status::Fail, format!("{endpoint}: no reply: {why}"))
        }
        CallError::Api(failure) => {
            explain_failure(Check::new(name, Status::Fail, ""), &failure, endpoint)
        }
    }
}

/// `errcode N (errmsg)`, and the meaning and next step when the table knows the code.
fn explain_failure(
    check: Check,
    failure: &::gate::token::wechat_api::ApiFailure,
    what_failed: &str,
) -> Check {
    use ::gate::token::wechat_api::ApiFailure;
    match failure {
        ApiFailure::Errcode { code, message } => match ::gate::errcodes::lookup(*code) {
            Some(e) => Check {
                summary: format!("{what_failed}: errcode {code}: {}", e.meaning),
                ..check
            }
            .advise(e.todo(message))
            .data(serde_json::json!({ "errcode": code, "errmsg": message })),
            None => Check {
                summary: format!("{what_failed}: {failure}"),
                ..check
            }
            .data(serde_json::json!({ "errcode": code, "errmsg": message })),
        },
        other => Check {
            summary: format!("{what_failed}: {other}"),
            ..check
        },
    }
}
