//! `wg-bench`: the native helpers of `make bench` (driven by bench/run.py).
//!
//! - `wg-bench upstream --listen ADDR`: the fast upstream every Envoy setup forwards to.
//!   Answers every request `200 success`, and says in `x-bench-upstream` what it saw
//!   (`v=` the gate's verified header, `enc=` whether the body still held `<Encrypt>`,
//!   `len=` the body length) so the driver can check each setup once before timing it.
//!   It counts what it received; `GET /_bench/stats` (sent to it directly, never through
//!   an Envoy) answers `requests=N verified=N encrypted=N`, so the driver can check that
//!   every request of a run really reached it, and as what.
//! - `wg-bench authz --listen ADDR --config JSON`: the ext_authz HTTP service, built on
//!   wechat-gate's own core (`config::parse`, `verify::decide`). The source address is
//!   `x-wechat-gate-source`, which Envoy sets to `%DOWNSTREAM_REMOTE_ADDRESS%` on the
//!   check request (ext_authz `headers_to_add`) and on the handshake route, overwriting
//!   whatever a client sent under that name.
//!   Verified push: `200` + `x-wechat-gate-verified: 1`; handshake: `200` + `echostr`
//!   (Envoy routes GETs to this service as an upstream, see bench/README.md);
//!   refusals: the gate's own status and body.
//! - `wg-bench gen --token T --appid A --aes-key K [--timestamp S]`: one JSON object
//!   with every workload's request (path and body), signed at `S` (default: now).
//! - `wg-bench load …`: the load generator, every request with a URI of its own
//!   (see `load.rs` for why not h2load).
//!
//! Both servers print `listening on http://IP:PORT` once ready, use keep-alive and one
//! thread per connection (Envoy keeps a small pool of upstream connections).

// Functions fit on a screen (clippy.toml sets the bound); tests may be longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod load;

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use wechat::http1;

use gate::config::Config;
use gate::request::{decide, Rejection, RequestHead, Sources, Verdict};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("upstream") => serve(&args[1..], Arc::new(upstream)),
        Some("authz") => authz_main(&args[1..]),
        Some("gen") => gen_main(&args[1..]),
        Some("check-config") => check_config(&args[1..]),
        Some("load") => load::main(&args[1..]),
        _ => {
            eprintln!(
                "usage: wg-bench upstream --listen ADDR\n       wg-bench authz --listen ADDR --config JSON\n       wg-bench gen --token T --appid A --aes-key K [--timestamp S]\n       wg-bench check-config JSON\n       wg-bench load --connect HOST:PORT --uris FILE [-c N] [--method M] [--body FILE] [--header H]... [--rps R] [--log-file F]"
            );
            2
        }
    };
    std::process::exit(code);
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ------------------------------------------------------------------ HTTP/1.1 server

/// Requests are read by the project's one reader (`wechat::http1`).
type Request = http1::Request;

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

fn serve(args: &[String], handler: Handler) -> i32 {
    let listen = flag(args, "--listen").unwrap_or("127.0.0.1:0");
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wg-bench: cannot listen on {listen}: {e}");
            return 2;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on http://{addr}"),
        Err(e) => {
            eprintln!("wg-bench: {e}");
            return 2;
        }
    }
    let _ = io::stdout().flush();
    for stream in listener.incoming().flatten() {
        let handler = handler.clone();
        std::thread::spawn(move || {
            let _ = connection(stream, &*handler);
        });
    }
    0
}

fn connection(
    stream: TcpStream,
    handler: &(dyn Fn(&Request) -> Response + Send + Sync),
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = http1::Connection::new(stream, http1::Limits::default());
    loop {
        let req = match conn.read_request() {
            Ok(req) => req,
            Err(http1::ReadError::Closed) => return Ok(()),
            Err(http1::ReadError::Bad(status, why)) => {
                return conn.write_response(status, &[], why.as_bytes(), false);
            }
        };
        let resp = handler(&req);
        let headers: Vec<(&str, &str)> =
            resp.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        conn.write_response(resp.status, &headers, &resp.body, req.keep_alive)?;
        if !req.keep_alive {
            return Ok(());
        }
    }
}

// ------------------------------------------------------------------ upstream

/// What the upstream has received: every request, those the gate marked verified, and
/// those whose body still held `<Encrypt>`.
static RECEIVED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn upstream(req: &Request) -> Response {
    if req.target == "/_bench/stats" {
        let [requests, verified, encrypted] = RECEIVED.each_ref().map(|c| c.load(Ordering::SeqCst));
        return Response {
            status: 200,
            headers: vec![("content-type", "text/plain".to_string())],
            body: format!("requests={requests} verified={verified} encrypted={encrypted}")
                .into_bytes(),
        };
    }
    let verified = req.header("x-wechat-gate-verified") == Some("1");
    let encrypted = contains(&req.body, b"<Encrypt>");
    RECEIVED[0].fetch_add(1, Ordering::SeqCst);
    RECEIVED[1].fetch_add(u64::from(verified), Ordering::SeqCst);
    RECEIVED[2].fetch_add(u64::from(encrypted), Ordering::SeqCst);
    Response {
        status: 200,
        headers: vec![
            ("content-type", "text/plain".to_string()),
            (
                "x-bench-upstream",
                format!(
                    "v={};enc={};len={}",
                    u8::from(verified),
                    u8::from(encrypted),
                    req.body.len()
                ),
            ),
        ],
        body: b"success".to_vec(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ------------------------------------------------------------------ ext_authz service

fn authz_main(args: &[String]) -> i32 {
    let Some(json) = flag(args, "--config") else {
        eprintln!("wg-bench authz: --config JSON is required");
        return 2;
    };
    let config = match gate::config::parse(json.as_bytes(), &|name| std::env::var(name).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wg-bench authz: {e}");
            return 2;
        }
    };
    let sources = Sources::fixed(config.source.allow.clone());
    let state = Arc::new((config, sources));
    serve(
        args,
        Arc::new(move |req: &Request| authz(req, &state.0, &state.1)),
    )
}

fn authz(req: &Request, config: &Config, sources: &Sources) -> Response {
    // Envoy sets this header to %DOWNSTREAM_REMOTE_ADDRESS% (`ip:port`, what the gate
    // reads as `source.address`), overwriting any value a client sent.
    let source = req.header("x-wechat-gate-source");
    let head = RequestHead {
        method: req.method.as_bytes(),
        path: Some(req.target.as_bytes()),
        source: source.map(str::as_bytes),
    };
    match decide(&head, config, sources, now_unix()) {
        Verdict::Forward { openid, .. } => {
            let mut headers = vec![("x-wechat-gate-verified", "1".to_string())];
            if let Some(openid) = openid {
                headers.push(("x-wechat-gate-openid", openid));
            }
            Response {
                status: 200,
                headers,
                body: Vec::new(),
            }
        }
        // This baseline keeps no table of used queries: a handshake is answered at once
        // (WeCom's echostr opened here; the gate opens it after its replay check).
        Verdict::Echo { echostr, .. } => match echostr.open(config) {
            Ok(text) => Response {
                status: 200,
                headers: vec![("content-type", "text/plain".to_string())],
                body: text.into_bytes(),
            },
            Err(r) => refusal(&r),
        },
        Verdict::Reject(r) => refusal(&r),
        // Not the guarded path: nothing to say against it.
        Verdict::PassThrough => Response {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        },
    }
}

/// The gate's refusal: its status, headers and plain-text body.
fn refusal(r: &Rejection) -> Response {
    let mut headers = vec![("content-type", "text/plain".to_string())];
    for (name, value) in r.headers() {
        headers.push((name, value.to_string()));
    }
    Response {
        status: u16::try_from(r.reason.status()).unwrap_or(500),
        headers,
        body: r.body().into_bytes(),
    }
}

/// Exit 0 when this build's `config::parse` accepts the JSON, else 1 with the reason.
fn check_config(args: &[String]) -> i32 {
    let json = args.first().map(String::as_str).unwrap_or_default();
    match gate::config::parse(json.as_bytes(), &|name| std::env::var(name).ok()) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

// ------------------------------------------------------------------ request generator

fn gen_main(args: &[String]) -> i32 {
    let (Some(token), Some(appid), Some(aes_key)) = (
        flag(args, "--token"),
        flag(args, "--appid"),
        flag(args, "--aes-key"),
    ) else {
        eprintln!("wg-bench gen: --token, --appid and --aes-key are required");
        return 2;
    };
    let key = match gate::safe_mode::cipher::AesKey::from_encoding_aes_key(aes_key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("wg-bench gen: --aes-key {e}");
            return 2;
        }
    };
    let ts = flag(args, "--timestamp")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(now_unix)
        .to_string();
    let nonce = format!(
        "{}",
        1_000_000_000 + (now_unix() % 1_000_000_000) * 7 % 999_999_937
    );
    let openid = "o_bench_user_000000000001";
    let to = "gh_bench_account";
    let signed = |extra: &[(&str, &str)]| wechat::wechat::signed_query(token, &ts, &nonce, extra);

    let post_body = wechat::wechat::text_message_xml(
        to,
        openid,
        &ts,
        "hello from make bench",
        1_234_567_890_123_456,
    );
    let post_path = format!("/wechat?{}", signed(&[("openid", openid)]));
    let get_path = format!("/wechat?{}", signed(&[("echostr", "5838479218127813673")]));
    let forged_path = format!(
        "/wechat?{}",
        wechat::wechat::signed_query("not-the-token", &ts, &nonce, &[("openid", openid)])
    );

    let mut fields = vec![
        entry("post", "POST", &post_path, &post_body),
        entry("get", "GET", &get_path, ""),
        entry("forged", "POST", &forged_path, &post_body),
    ];
    for (name, size) in [("aes512", 512usize), ("aes8k", 8192usize)] {
        let msg = message_of_size(to, openid, &ts, size);
        let mut random16 = [0u8; 16];
        for (i, b) in random16.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(ts.len() as u8);
        }
        let encrypt = gate::safe_mode::cipher::encrypt(&key, appid, msg.as_bytes(), &random16);
        let msg_signature = gate::signature::sign(&[token, &ts, &nonce, &encrypt]);
        let path = format!(
            "/wechat?{}",
            signed(&[
                ("openid", openid),
                ("encrypt_type", "aes"),
                ("msg_signature", gate::signature::as_str(&msg_signature)),
            ])
        );
        let body = format!(
            "<xml><ToUserName><![CDATA[{to}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        );
        fields.push(entry(name, "POST", &path, &body));
        fields.push(format!("\"{name}_plain_len\": {}", msg.len()));
    }
    println!("{{\"timestamp\": \"{ts}\", {}}}", fields.join(", "));
    0
}

/// A text message whose XML is exactly `size` bytes (ASCII content).
fn message_of_size(to: &str, openid: &str, ts: &str, size: usize) -> String {
    let empty = wechat::wechat::text_message_xml(to, openid, ts, "", 1_234_567_890_123_457);
    let fill = size.saturating_sub(empty.len());
    let content: String = "wechat-gate bench message "
        .chars()
        .cycle()
        .take(fill)
        .collect();
    wechat::wechat::text_message_xml(to, openid, ts, &content, 1_234_567_890_123_457)
}

fn entry(name: &str, method: &str, path: &str, body: &str) -> String {
    format!(
        "\"{name}\": {{\"method\": \"{method}\", \"path\": {}, \"body\": {}}}",
        json_string(path),
        json_string(body)
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
