//! The one HTTP(S) client of the operator's tools (`wechat-gate send` and `doctor`):
//! ureq with rustls and the Mozilla roots (or only the CAs of `--cacert`), so that a gate
//! behind TLS and the real api.weixin.qq.com both work; the proxy from `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` as ureq reads them; `--resolve HOST=ADDR:PORT`
//! overrides like curl's; and a chosen local address to send from. One timeout bounds
//! the whole call (connect, TLS, request, response), interim 1xx answers are read past,
//! redirects are not followed, and at most [`MAX_RESPONSE_BYTES`] of a body is read.
//! Errors never carry the URL (it may hold an access token or a signature).
//!
//! A well-kept crate rather than [`crate::http1::client`], because TLS, proxies and
//! trust roots are not to be written by hand; that one stays for the tests, which need
//! requests byte for byte as written.

use socket2::{Domain, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    RustlsConnector, TcpConnector, Transport,
};
use ureq::{Agent, Timeout};

/// The most of a response body that is read: a longer or endless one is an error, not
/// a process that grows without end.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// How a [`Client`] connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bounds each call, from the first DNS lookup to the last byte of the body.
    pub timeout: Duration,
    /// `--resolve` entries.
    pub overrides: Vec<Override>,
    /// The local address to connect from.
    pub source: Option<IpAddr>,
    /// A PEM file of the only CAs to trust (`--cacert`); `None`: the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// The `user-agent` header.
    pub user_agent: String,
}

impl Options {
    /// A `timeout` per call, nothing else changed.
    pub fn new(timeout: Duration, user_agent: &str) -> Options {
        Options {
            timeout,
            overrides: Vec::new(),
            source: None,
            ca_file: None,
            user_agent: user_agent.to_string(),
        }
    }
}

/// A `--resolve` entry: connections to `host` go to `addr`, whatever the URL's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub host: String,
    pub addr: SocketAddr,
}

/// Parses `HOST=ADDR:PORT` (`[v6]:port` for IPv6).
pub fn parse_override(text: &str) -> Result<Override, String> {
    let (host, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("--resolve {text}: expected HOST=ADDR:PORT"))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("--resolve {text}: {addr} is not ADDR:PORT"))?;
    if host.is_empty() {
        return Err(format!("--resolve {text}: no host"));
    }
    Ok(Override {
        host: host.to_ascii_lowercase(),
        addr,
    })
}

#[derive(Debug)]
struct MappedResolver {
    overrides: Vec<Override>,
    default: DefaultResolver,
}

impl Resolver for MappedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().map(|h| h.trim_matches(['[', ']']));
        let mapped = self
            .overrides
            .iter()
            .find(|o| host.is_some_and(|h| h.eq_ignore_ascii_case(&o.host)));
        match mapped {
            Some(o) => {
                let mut addrs = self.empty();
                addrs
                    .try_push(o.addr)
                    .map_err(|_| ureq::Error::HostNotFound)?;
                Ok(addrs)
            }
            None => self.default.resolve(uri, config, timeout),
        }
    }
}

/// Opens the TCP connection from a chosen local address, when there is one (else
/// ureq's own `TcpConnector`, next in the chain, does). ureq has no setting for the
/// local address, and its TCP transport cannot be made from a socket of ours.
#[derive(Debug)]
struct FromSource(Option<IpAddr>);

impl<In: Transport> Connector<In> for FromSource {
    type Out = Either<In, BoundTcp>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(transport) = chained {
            return Ok(Some(Either::A(transport)));
        }
        let Some(source) = self.0 else {
            return Ok(None);
        };
        let target = details
            .addrs
            .iter()
            .find(|a| a.is_ipv4() == source.is_ipv4())
            .ok_or(ureq::Error::HostNotFound)?;
        let socket = Socket::new(Domain::for_address(*target), Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(source, 0).into())?;
        let connected = match details.timeout.not_zero() {
            Some(within) => socket.connect_timeout(&(*target).into(), *within),
            None => socket.connect(&(*target).into()),
        };
        connected.map_err(|e| io_error(e, details.timeout.reason))?;
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(BoundTcp { stream, buffers })))
    }
}

/// A TCP connection [`FromSource`] made: one call's, never pooled.
#[derive(Debug)]
struct BoundTcp {
    stream: TcpStream,
    buffers: LazyBuffers,
}

impl Transport for BoundTcp {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        self.stream.set_write_timeout(Some(left(timeout)?))?;
        let output = self
            .buffers
            .output()
            .get(..amount)
            .ok_or(ureq::Error::ConnectionFailed)?;
        self.stream
            .write_all(output)
            .map_err(|e| io_error(e, timeout.reason))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        self.stream.set_read_timeout(Some(left(timeout)?))?;
        let read = loop {
            match self.stream.read(self.buffers.input_append_buf()) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = read.map_err(|e| io_error(e, timeout.reason))?;
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        false
    }
}

/// What is left of `timeout`, or the timeout error when nothing is.
fn left(timeout: NextTimeout) -> Result<Duration, ureq::Error> {
    let left: Duration = *timeout.after;
    if left.is_zero() {
        return Err(ureq::Error::Timeout(timeout.reason));
    }
    Ok(left)
}

fn io_error(e: std::io::Error, reason: Timeout) -> ureq::Error {
    match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => ureq::Error::Timeout(reason),
        _ => ureq::Error::Io(e),
    }
}

/// The roots a `--cacert` file names: every certificate in it.
fn roots_from(file: &Path) -> Result<RootCerts, String> {
    let pem = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", file.display()));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// A reply of any HTTP status, and how long it took.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Reply {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The client: built once per command, from [`Options`].
pub struct Client {
    agent: Agent,
    overrides: Vec<Override>,
}

impl Client {
    /// Fails only on a `--cacert` file that cannot be read or holds no certificate.
    pub fn new(options: &Options) -> Result<Client, String> {
        let roots = match &options.ca_file {
            Some(file) => roots_from(file)?,
            None => RootCerts::WebPki,
        };
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(options.timeout))
            .max_redirects(0)
            .user_agent(&options.user_agent)
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build();
        let resolver = MappedResolver {
            overrides: options.overrides.clone(),
            default: DefaultResolver::default(),
        };
        // ureq's default chain (proxy, TCP, TLS), with the local address first.
        let connector =
            ().chain(ConnectProxyConnector::default())
                .chain(FromSource(options.source))
                .chain(TcpConnector::default())
                .chain(RustlsConnector::default());
        Ok(Client {
            agent: Agent::with_parts(config, connector, resolver),
            overrides: options.overrides.clone(),
        })
    }

    /// True when `--resolve` maps `host`.
    pub fn is_mapped(&self, host: &str) -> bool {
        self.overrides
            .iter()
            .any(|o| o.host.eq_ignore_ascii_case(host))
    }

    pub fn get(&self, url: &str) -> Result<Reply, String> {
        let started = Instant::now();
        let response = self.agent.get(url).call();
        read(response, started)
    }

    /// POSTs `body` as `content_type`.
    pub fn post(&self, url: &str, content_type: &str, body: &[u8]) -> Result<Reply, String> {
        let started = Instant::now();
        let response = self
            .agent
            .post(url)
            .header("content-type", content_type)
            .send(body);
        read(response, started)
    }

    pub fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<Reply, String> {
        self.post(url, "application/json", body.to_string().as_bytes())
    }
}

fn read(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    started: Instant,
) -> Result<Reply, String> {
    let mut response = response.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES as u64)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => "the response did not end in time".to_string(),
            e => describe(&e),
        })?;
    Ok(Reply {
        status,
        body,
        elapsed: started.elapsed(),
    })
}

/// What went wrong, in words that never include the URL.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(tls) => format!("TLS: {tls}"),
            None => format!("connection failed: {io}"),
        },
        ureq::Error::Timeout(_) => "no answer in time".to_string(),
        ureq::Error::HostNotFound => "host not found (DNS)".to_string(),
        ureq::Error::Tls(why) => format!("TLS: {why}"),
        ureq::Error::Rustls(why) => format!("TLS: {why}"),
        ureq::Error::BadUri(_) => "bad URL".to_string(),
        ureq::Error::BodyExceedsLimit(limit) => {
            format!("the response is over {limit} bytes: not read further")
        }
        ureq::Error::LargeResponseHeader(_, limit) => {
            format!("the response head is over {limit} bytes: not read further")
        }
        other => format!("{other}").chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_like_curls_resolve() {
        let o = parse_override("API2.weixin.qq.com=127.0.0.1:8081").expect("valid");
        assert_eq!(o.host, "api2.weixin.qq.com");
        assert_eq!(o.addr, "127.0.0.1:8081".parse().expect("addr"));
        let v6 = parse_override("hk.api.weixin.qq.com=[::1]:9").expect("valid");
        assert_eq!(v6.addr.port(), 9);
        for bad in [
            "api.weixin.qq.com",
            "=1.2.3.4:1",
            "h=1.2.3.4",
            "h=nohost:80",
        ] {
            assert!(parse_override(bad).is_err(), "{bad}");
        }
    }
}
