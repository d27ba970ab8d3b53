//! `wechat-gate`: signs and sends requests the way WeChat's servers do, to try a gate
//! (or any WeChat callback endpoint, over http or https) by hand or from tests;
//! `mock-api`, a local stand-in for WeChat's API (api.weixin.qq.com); and `doctor`,
//! which checks an account's API access, lists and network as a gate needs them. `send`
//! and `doctor` talk through `wechat::client`, the one HTTP(S) client.
//!
//! Secrets (the token, the EncodingAESKey, the AppSecret) are read from the environment
//! (`WECHAT_TOKEN`, `WECHAT_AES_KEY`, `WECHAT_APPSECRET`, or the variables `--…-env`
//! names), never from an argument, and never printed.
//!
//! Exit status: 0 when the endpoint accepted (handshake echoed, message answered 200)
//! or every doctor check passed, 1 when it rejected, the echo differed or a doctor check
//! failed, 2 for usage or connection errors (a secret whose variable is not set included).

// Functions fit on a screen (clippy.toml sets the bound); tests may be longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use gate::config::Platform;
use gate::message::Format;
use gate::query::encode_query;
use gate::safe_mode::cipher::AesKey;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wechat::client::{Client, Options, Reply};
use wechat::secret_env::{self, MissingSecret};
use wechat::wechat::{
    open_reply, safe_mode_push, signed_query, text_message_json, text_message_xml, wecom_echostr,
    wecom_query,
};
use wechat::{doctor, mock_api};

#[derive(Parser)]
#[command(
    name = "wechat-gate",
    version,
    about = "Sign and send requests the way WeChat does"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a signed callback query (signature, timestamp, nonce[, echostr]).
    Sign {
        #[command(flatten)]
        signing: Signing,
        #[arg(long)]
        echostr: Option<String>,
    },
    /// Send a request as WeChat's servers would.
    #[command(subcommand)]
    Send(Send),
    /// Serve a local stand-in for WeChat's API server (api.weixin.qq.com) until killed.
    MockApi(mock_api::MockApiArgs),
    /// Check what a gate needs from WeChat's API, and say what to do about each problem.
    Doctor(doctor::DoctorArgs),
}

#[derive(Subcommand)]
enum Send {
    /// The GET URL-verification handshake; succeeds when the body echoes `echostr`.
    Handshake {
        url: String,
        #[command(flatten)]
        common: Common,
        /// Default: a random number, as WeChat sends (WeCom: its plaintext, encrypted
        /// with --safe-mode's key for --appid, the CorpID).
        #[arg(long)]
        echostr: Option<String>,
        #[command(flatten)]
        safe: SafeModeArgs,
    },
    /// A message push (POST of the XML WeChat sends); succeeds on HTTP 200.
    Message {
        url: String,
        #[command(flatten)]
        common: Common,
        /// Send a text message with this content.
        #[arg(long, conflicts_with = "xml", required_unless_present = "xml")]
        text: Option<String>,
        /// Send this file's XML as the body.
        #[arg(long)]
        xml: Option<std::path::PathBuf>,
        /// The user's OpenID (query `openid`, and FromUserName of --text).
        #[arg(long, default_value = "o_wechat_gate_demo_user_0001")]
        openid: String,
        /// The account's original ID (ToUserName of --text).
        #[arg(long, default_value = "gh_wechat_gate_demo")]
        to: String,
        /// A Mini Program whose data format is JSON: --text as JSON, and the safe-mode
        /// envelope in JSON.
        #[arg(long, conflicts_with = "compat")]
        json: bool,
        #[command(flatten)]
        safe: SafeModeArgs,
    },
}

/// Safe mode: encrypt the push as WeChat does, and open the sealed reply.
#[derive(Args)]
struct SafeModeArgs {
    /// Send in safe mode (`encrypt_type=aes`) for --appid, with the EncodingAESKey from
    /// the environment, then verify and decrypt the reply.
    #[arg(long, requires = "appid")]
    safe_mode: bool,
    /// The account's AppID (safe mode).
    #[arg(long, requires = "safe_mode")]
    appid: Option<String>,
    /// The environment variable that holds the EncodingAESKey (43 characters)
    /// [default: WECHAT_AES_KEY].
    #[arg(long, value_name = "NAME", requires = "safe_mode")]
    aes_key_env: Option<String>,
    /// Compatible mode: the plaintext fields beside `Encrypt`.
    #[arg(long, requires = "safe_mode")]
    compat: bool,
}

impl SafeModeArgs {
    /// The key and AppID to encrypt with, when safe mode is on.
    fn key(&self) -> Result<Option<(AesKey, String)>, Box<dyn std::error::Error>> {
        let (true, Some(appid)) = (self.safe_mode, &self.appid) else {
            return Ok(None);
        };
        let var = self.aes_key_env.as_deref().unwrap_or("WECHAT_AES_KEY");
        let text = secret_env::read(var, "the EncodingAESKey", "--aes-key-env")?;
        // The error names the variable and the rule broken, never the value.
        let key = AesKey::from_encoding_aes_key(&text)
            .map_err(|e| format!("the EncodingAESKey in {var} {e}"))?;
        Ok(Some((key, appid.clone())))
    }
}

/// What a signature is made of: the token, and the timestamp and nonce it signs.
#[derive(Args)]
struct Signing {
    /// The environment variable that holds the token.
    #[arg(long, value_name = "NAME", default_value = "WECHAT_TOKEN")]
    token_env: String,
    /// Unix seconds; default: now.
    #[arg(long)]
    timestamp: Option<String>,
    /// Default: a random number, as WeChat sends.
    #[arg(long)]
    nonce: Option<String>,
}

impl Signing {
    /// The token, from the environment.
    fn token(&self) -> Result<String, MissingSecret> {
        secret_env::read(&self.token_env, "the token", "--token-env")
    }

    /// The signed query for these values (defaults filled in), with `extra` pairs.
    fn query(&self, extra: &[(&str, &str)]) -> Result<String, MissingSecret> {
        let token = self.token()?;
        let (timestamp, nonce) = self.timestamp_and_nonce();
        Ok(signed_query(&token, &timestamp, &nonce, extra))
    }

    /// The timestamp and nonce to sign with, defaults filled in, fixed from here on.
    fn timestamp_and_nonce(&self) -> (String, String) {
        (
            self.timestamp.clone().unwrap_or_else(now),
            self.nonce.clone().unwrap_or_else(random_nonce),
        )
    }
}

/// `--platform`: the configuration's [`Platform`], spelt in kebab case
/// (`official-account`), every one of [`Platform::ALL`].
fn platform_parser() -> impl TypedValueParser<Value = Platform> {
    let cli_name = |p: Platform| p.name().replace('_', "-");
    PossibleValuesParser::new(Platform::ALL.iter().map(|p| cli_name(*p))).try_map(move |name| {
        Platform::ALL
            .iter()
            .copied()
            .find(|p| cli_name(*p) == name)
            .ok_or_else(|| format!("no platform is named {name}"))
    })
}

#[derive(Args)]
struct Common {
    #[command(flatten)]
    signing: Signing,
    /// The platform whose requests to send: WeCom signs every request with
    /// msg_signature and encrypts the handshake's echostr; Open Platform and WeCom
    /// pushes are always encrypted (--safe-mode).
    #[arg(long, value_parser = platform_parser(), default_value = "official-account")]
    platform: Platform,
    /// Local address to send from (e.g. 127.0.0.2), to appear as that source.
    #[arg(long)]
    source: Option<IpAddr>,
    /// Seconds to wait for the whole answer (WeChat waits 5). A silent server, a
    /// trickling or endless body ends the command with an error, exit code 2.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// https:// URLs: trust only the CA certificates in this PEM file, instead of the
    /// Mozilla roots (a gate behind a private CA).
    #[arg(long, value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
}

impl Common {
    /// The client every request of the command goes through: `--timeout`, `--source`
    /// and `--cacert` applied, the proxy from the environment as curl takes it.
    fn client(&self) -> Result<Client, String> {
        Client::new(&Options {
            source: self.source,
            ca_file: self.cacert.clone(),
            ..Options::new(Duration::from_secs(self.timeout), USER_AGENT)
        })
    }

    /// GETs `target` within `--timeout`.
    fn get(&self, target: &str) -> Result<Reply, String> {
        self.client()?.get(target)
    }
}

/// `send`'s `user-agent`.
const USER_AGENT: &str = concat!("wechat-gate/", env!("CARGO_PKG_VERSION"));

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wechat-gate: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<bool, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Sign { signing, echostr } => {
            let extra: Vec<(&str, &str)> =
                echostr.iter().map(|e| ("echostr", e.as_str())).collect();
            println!("{}", signing.query(&extra)?);
            Ok(true)
        }
        Command::Send(Send::Handshake {
            url,
            common,
            echostr,
            safe,
        }) => {
            let echostr = echostr.unwrap_or_else(|| random_u64().to_string());
            if common.platform == Platform::Wecom {
                return send_wecom_handshake(&url, &common, &safe, &echostr);
            }
            let target = with_query(&url, &common, &[("echostr", &echostr)])?;
            let response = common.get(&target)?;
            print_response(&response);
            let echoed = response.status == 200 && response.body == echostr.as_bytes();
            if response.status == 200 && !echoed {
                eprintln!("wechat-gate: the body is not the echostr sent ({echostr})");
            }
            Ok(echoed)
        }
        Command::Send(Send::Message {
            url,
            common,
            text,
            xml,
            openid,
            to,
            json,
            safe,
        }) => {
            let encrypted_only = common.platform.safe_mode_only();
            if encrypted_only && !safe.safe_mode {
                return Err(
                    "this platform's pushes are always encrypted: add --safe-mode --appid".into(),
                );
            }
            let created = common.signing.timestamp.clone().unwrap_or_else(now);
            let body = message_body(text, xml, json, &to, &openid, &created)?;
            let Some((key, appid)) = safe.key()? else {
                let target = with_query(&url, &common, &[("openid", &openid)])?;
                let response = post_push(&common, &target, &body)?;
                print_response(&response);
                return Ok(response.status == 200);
            };
            let message = String::from_utf8(body).map_err(|_| "the message is not UTF-8")?;
            let push = SafePush {
                key: &key,
                appid: &appid,
                to: &to,
                openid: &openid,
                compat: safe.compat,
            };
            send_safe_mode(&url, &common, &push, &message)
        }
        Command::MockApi(args) => {
            mock_api::run(args)?;
            Ok(true)
        }
        Command::Doctor(args) => {
            let json = args.json;
            let report = doctor::run(args)?;
            if json {
                print!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            Ok(report.ok())
        }
    }
}

/// The push's message: the `--xml` file as it is, or a text message of `--text` (in
/// JSON with `--json`).
fn message_body(
    text: Option<String>,
    xml: Option<std::path::PathBuf>,
    json: bool,
    to: &str,
    openid: &str,
    created: &str,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    Ok(match (text, xml) {
        (_, Some(file)) => std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?,
        (Some(text), None) => {
            let msg_id = random_u64() >> 1;
            if json {
                text_message_json(to, openid, created, &text, msg_id).into_bytes()
            } else {
                text_message_xml(to, openid, created, &text, msg_id).into_bytes()
            }
        }
        (None, None) => return Err("one of --text or --xml is needed".into()),
    })
}

/// Who a safe-mode push is for and how it is sealed.
struct SafePush<'a> {
    key: &'a AesKey,
    appid: &'a str,
    to: &'a str,
    openid: &'a str,
    compat: bool,
}

/// Encrypts `message` as WeChat does, posts it, and opens the sealed reply.
fn send_safe_mode(
    url: &str,
    common: &Common,
    push: &SafePush<'_>,
    message: &str,
) -> Result<bool, Box<dyn std::error::Error>> {
    let token = common.signing.token()?;
    let (timestamp, nonce) = common.signing.timestamp_and_nonce();
    let random = random_16()?;
    let sealed = safe_mode_push(
        push.key,
        push.appid,
        &token,
        &timestamp,
        &nonce,
        push.to,
        message,
        push.compat,
        &random,
    );
    let query = if common.platform == Platform::Wecom {
        // WeCom: msg_signature alone signs the request (over the body's Encrypt).
        encode_query(&[
            ("msg_signature", sealed.msg_signature.as_str()),
            ("timestamp", timestamp.as_str()),
            ("nonce", nonce.as_str()),
        ])
    } else {
        signed_query(
            &token,
            &timestamp,
            &nonce,
            &[
                ("openid", push.openid),
                ("encrypt_type", "aes"),
                ("msg_signature", &sealed.msg_signature),
            ],
        )
    };
    let response = post_push(common, &url_with(url, &query), sealed.body.as_bytes())?;
    print_response(&response);
    let reply = response.body_text();
    let trimmed = reply.trim();
    if response.status != 200 || trimmed.is_empty() || trimmed == "success" {
        return Ok(response.status == 200);
    }
    match open_reply(
        reply.as_bytes(),
        push.key,
        push.appid,
        &token,
        &timestamp,
        &nonce,
    ) {
        Ok(plain) => {
            println!("-- the reply, signature checked and decrypted:");
            println!("{}", String::from_utf8_lossy(&plain).trim_end());
            Ok(true)
        }
        Err(e) => {
            eprintln!("wechat-gate: the reply is not a valid sealed reply: {e}");
            Ok(false)
        }
    }
}

/// WeCom's handshake: `echostr` encrypted for the CorpID, signed by msg_signature; it
/// succeeds when the answer is its plaintext.
fn send_wecom_handshake(
    url: &str,
    common: &Common,
    safe: &SafeModeArgs,
    echostr: &str,
) -> Result<bool, Box<dyn std::error::Error>> {
    let Some((key, corpid)) = safe.key()? else {
        return Err("WeCom encrypts the echostr: add --safe-mode --appid CORPID".into());
    };
    let token = common.signing.token()?;
    let (timestamp, nonce) = common.signing.timestamp_and_nonce();
    let random = random_16()?;
    let encrypted = wecom_echostr(&key, &corpid, echostr, &random);
    let query = wecom_query(
        &token,
        &timestamp,
        &nonce,
        &encrypted,
        &[("echostr", &encrypted)],
    );
    let response = common.get(&url_with(url, &query))?;
    print_response(&response);
    let echoed = response.status == 200 && response.body == echostr.as_bytes();
    if response.status == 200 && !echoed {
        eprintln!("wechat-gate: the body is not the echostr's plaintext ({echostr})");
    }
    Ok(echoed)
}

/// POSTs a push with the content type WeChat gives its format, within `--timeout`.
fn post_push(common: &Common, target: &str, body: &[u8]) -> Result<Reply, String> {
    let content_type = match Format::of(body) {
        Format::Json => "application/json",
        Format::Xml => "text/xml",
    };
    common.client()?.post(target, content_type, body)
}

/// `url` with the signed query of `common` and `extra` added.
fn with_query(url: &str, common: &Common, extra: &[(&str, &str)]) -> Result<String, MissingSecret> {
    Ok(url_with(url, &common.signing.query(extra)?))
}

/// `url` with `query` added after its own query, if it has one.
fn url_with(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

fn print_response(r: &Reply) {
    println!("HTTP {}", r.status);
    println!("{}", r.body_text().trim_end());
}

fn now() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string()
}

/// The 16 random bytes that open an encrypted message, as WeChat draws them.
fn random_16() -> Result<[u8; 16], String> {
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random).map_err(|e| format!("random source: {e}"))?;
    Ok(random)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // The OS random source; a failure there leaves a fixed but harmless value.
    let _ = getrandom::getrandom(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// WeChat's nonces are decimal numbers of up to ten digits.
fn random_nonce() -> String {
    (random_u64() % 10_000_000_000).to_string()
}
