//! The doctor's HTTP(S) client: ureq with rustls and the Mozilla roots (so the real
//! api.weixin.qq.com works), the proxy from `HTTPS_PROXY`/`ALL_PROXY` as ureq reads it,
//! and `--resolve HOST=ADDR:PORT` overrides like curl's. Errors never carry the URL
//! (it may hold an access token).

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use ureq::Agent;

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

/// A reply of any HTTP status, and how long it took.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

pub struct Http {
    agent: Agent,
    overrides: Vec<Override>,
}

impl Http {
    pub fn new(overrides: Vec<Override>, timeout: Duration) -> Http {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .user_agent(concat!("wechat-gate-doctor/", env!("CARGO_PKG_VERSION")))
            .build();
        let resolver = MappedResolver {
            overrides: overrides.clone(),
            default: DefaultResolver::default(),
        };
        Http {
            agent: Agent::with_parts(config, DefaultConnector::default(), resolver),
            overrides,
        }
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

    pub fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<Reply, String> {
        let started = Instant::now();
        let response = self
            .agent
            .post(url)
            .header("content-type", "application/json")
            .send(body.to_string().as_bytes());
        read(response, started)
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
        .limit(crate::http1::client::MAX_RESPONSE_BYTES as u64)
        .read_to_vec()
        .map_err(|e| describe(&e))?;
    Ok(Reply {
        status,
        body,
        elapsed: started.elapsed(),
    })
}

/// What went wrong, in words that never include the URL.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("connection failed: {io}"),
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::HostNotFound => "host not found (DNS)".to_string(),
        ureq::Error::Tls(why) => format!("TLS: {why}"),
        ureq::Error::Rustls(why) => format!("TLS: {why}"),
        ureq::Error::BadUri(_) => "bad URL".to_string(),
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
