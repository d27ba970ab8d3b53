//! `wechat-gate mock-api`: a local stand-in for WeChat's API server
//! (api.weixin.qq.com, and WeCom's qyapi.weixin.qq.com), for the filter's live callback
//! IP list and its API role, without WeChat.
//!
//! WeChat's endpoints, with WeChat's reply shapes and errcodes (HTTP 200 even for errors,
//! as WeChat does):
//! - tokens (`tokens`): `POST /cgi-bin/stable_token` (the current token while it lives;
//!   `force_refresh` issues a new one), `GET /cgi-bin/token` (a new one every call),
//!   WeCom's `GET /cgi-bin/gettoken`. A new token makes the previous one 40001.
//! - the callback role's (`callback`): `GET /cgi-bin/getcallbackip`,
//!   `GET /cgi-bin/get_api_domain_ip`, `POST /cgi-bin/callback/check`.
//! - the API role's (`calls`, `media`): `GET /cgi-bin/user/info`,
//!   `POST /cgi-bin/message/custom/send`, `POST /cgi-bin/media/upload` (multipart,
//!   field `media`, 10 MiB at most), `GET /cgi-bin/media/get`,
//!   `GET /cgi-bin/ticket/getticket`, `GET /sns/jscode2session`,
//!   `GET /sns/oauth2/access_token`, WeCom's `POST /cgi-bin/message/send`.
//!
//! Every call that carries `access_token` gets: 41001 when it is missing or empty, 40001
//! when it is not the current token (a rotated one, say), 42001 when the current one has
//! expired. Those answers are counted as `refused_token` in `/__calls`.
//!
//! Controls (never counted, never faulted except by `refuse`):
//! - `GET /__calls`: calls per endpoint (the callback role's five always, the others once
//!   called: `gettoken`, `user_info`, `custom_send`, `media_upload`, `media_get`,
//!   `getticket_jsapi`, `getticket_wx_card`, `getticket`, `jscode2session`,
//!   `oauth2_access_token`, `wecom_message_send`), `refused_token` (token refusals
//!   answered) and `refused_connections` (connections closed by `refuse`), once non-zero.
//! - `GET /__messages`: `[{"endpoint": "custom_send"|"wecom_message_send", "body": …}]`, in
//!   the order received (the body as JSON).
//! - `GET|POST /__callback_ips`: the getcallbackip list.
//! - `POST /__rotate_token`: a new token, as if another party had fetched one; the old one
//!   gets 40001. `POST /__expire_token`: the current token expires now (42001 until a new
//!   one is fetched). `POST /__token` with `{"access_token": …}`: that token (another
//!   mock-api's, say: a backup domain honours its primary's) is the current one here.
//!   All three answer `{"ok": true}` and never show a token.
//! - `POST /__media[?filename=NAME][&size=N]`: stores the raw body (or N bytes of a fixed
//!   pattern, byte i = i % 251) as media, with the request's content type; answers
//!   `{"media_id": …}` for media/get.
//! - `POST /__faults`: replaces every fault with a JSON object of these (all optional):
//!   `fail` N + `errcode` E (the first N calls answer E, default -1), `delay_ms`, `drop` N
//!   (closed with no response), `garbage` N (a 200 that is not JSON), `hang` N (read in
//!   full, then never answered: the connection stays open until the client gives up),
//!   `refuse` N (the next N connections are closed before a byte is read, control calls
//!   included), `stale_stable` N (the next N non-forced stable_token calls hand back the
//!   token the current one replaced), per endpoint `{"name": N}`: `hangs` (never
//!   answered), `busy` (errcode -1 for the first N), and `{"name": errcode}`: `errcodes`
//!   (every call), `unreachable` and `no_dns` (callback/check), `ticket_expires_in` (7200).
//!   Faulted calls count as calls; the faults of all calls come before the per-endpoint
//!   ones, in the order hang, drop, garbage, fail, hangs, busy, errcodes.
//!
//! The HTTP/1.1 server (`http`) is a small one of its own rather than a library's, so
//! that a "dropped" call can really close its connection with no byte of response,
//! keep-alive or not, and a hung one can stay open. Each connection has its own thread,
//! so a delayed call holds up no other caller. Stopping the process closes the listener:
//! a second mock-api can stand in as the backup domain.
//!
//! The AppSecret comes from the environment (`WECHAT_APPSECRET`, or the variable
//! `--secret-env` names). Neither it nor any access token is ever printed or logged.

mod callback;
mod calls;
mod controls;
mod http;
mod media;
mod multipart;
mod routes;
mod state;
mod tokens;

use gate::allowlist::parse_block;
use state::{Faults, Shared, State};
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The command line of `wechat-gate mock-api`.
#[derive(clap::Args, Clone)]
pub struct MockApiArgs {
    /// Address to listen on (port 0: any free port; the line printed at start names it).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// The account's AppID that token requests must carry.
    #[arg(long)]
    pub appid: String,
    /// The environment variable that holds the AppSecret token requests must carry.
    #[arg(long, value_name = "NAME", default_value = "WECHAT_APPSECRET")]
    pub secret_env: String,
    /// An IP address or CIDR block for getcallbackip's `ip_list` (repeatable; default 127.0.0.1).
    #[arg(long = "callback-ip", value_name = "IP_OR_CIDR")]
    pub callback_ip: Vec<String>,
    /// Lifetime of an access token, in seconds.
    #[arg(long, default_value_t = 7200, value_parser = clap::value_parser!(u64).range(1..))]
    pub token_ttl: u64,
    /// The first N WeChat API calls answer errcode --fail-errcode.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub fail: u64,
    /// The errcode of --fail.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "ERRCODE")]
    pub fail_errcode: i64,
    /// Every WeChat API call waits this long before answering.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub delay_ms: u64,
    /// The first N WeChat API calls get their connection closed with no response.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub drop: u64,
    /// The first N WeChat API calls answer HTTP 200 with a body that is not JSON.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub garbage: u64,
}

/// Binds, prints `mock-api: listening on http://ADDR` and serves until the process is
/// killed. Returns only on a bad argument or when the address cannot be bound.
pub fn run(args: MockApiArgs) -> Result<(), String> {
    let secret = crate::secret_env::read(&args.secret_env, "the AppSecret", "--secret-env")
        .map_err(|e| e.to_string())?;
    let callback_ips = if args.callback_ip.is_empty() {
        vec!["127.0.0.1".to_string()]
    } else {
        validate_ips(&args.callback_ip).map_err(|e| format!("--callback-ip: {e}"))?
    };
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let shared = Arc::new(Shared {
        appid: args.appid,
        secret,
        token_ttl_ms: args.token_ttl.saturating_mul(1000),
        state: Mutex::new(State::new(
            callback_ips,
            Faults {
                fail: args.fail,
                errcode: args.fail_errcode,
                delay_ms: args.delay_ms,
                drop: args.drop,
                garbage: args.garbage,
                ..Faults::default()
            },
        )),
    });
    {
        let mut out = io::stdout().lock();
        writeln!(out, "mock-api: listening on http://{addr}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => serve(&shared, stream),
            // Out of file descriptors and the like: let connections drain a moment.
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    Err("the listener stopped".into())
}

/// One connection on its own thread, unless `refuse` closes it first.
fn serve(shared: &Arc<Shared>, stream: TcpStream) {
    {
        let mut state = shared.lock();
        if state.faults.refuse > 0 {
            state.faults.refuse -= 1;
            state.count("refused_connections");
            // Dropped unread: closed before a byte of the request is read.
            return;
        }
    }
    let shared = Arc::clone(shared);
    // A thread that cannot be started drops (closes) its connection.
    let _ = thread::Builder::new()
        .name("mock-api-conn".into())
        .spawn(move || http::serve_connection(stream, &|req| routes::handle(&shared, req)));
}

fn validate_ips(entries: &[String]) -> Result<Vec<String>, String> {
    entries
        .iter()
        .map(|e| {
            parse_block(e)
                .map(|_| e.trim().to_string())
                .map_err(|bad| bad.to_string())
        })
        .collect()
}
