//! `wechat-gate send` over https: a gate behind TLS gets the handshake and a push when
//! the CLI trusts its CA (`--cacert`); a certificate no trusted CA signed ends the
//! command before any request is sent (exit 2, saying TLS); `--source` holds over TLS
//! too. No secret is printed.

use crate::harness::cli::{cli, Ran};
use crate::harness::scratch_dir;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const TOKEN: &str = "tok-https-never-printed";

/// A callback endpoint behind TLS on a free loopback port, with a certificate for
/// `localhost` and 127.0.0.1 that it signed itself: it echoes `echostr` and answers
/// anything else `success`, one connection at a time.
struct TlsEndpoint {
    port: u16,
    /// Its certificate, the one CA that signed it, as a PEM file.
    ca_file: PathBuf,
    /// The requests it read, whole, each with the address it came from.
    seen: Arc<Mutex<Vec<(IpAddr, String)>>>,
}

impl TlsEndpoint {
    fn start() -> TlsEndpoint {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names).expect("a certificate");
        let ca_file = scratch_dir("https").join("ca.pem");
        std::fs::write(&ca_file, made.cert.pem()).expect("write the CA");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .expect("a server configuration");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(peer) = tcp.peer_addr() else { continue };
                let conn = rustls::ServerConnection::new(Arc::clone(&config)).expect("TLS");
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // A client that refused the certificate ends here, with nothing read.
                let Some(request) = read_request(&mut tls) else {
                    continue;
                };
                // Logged before answering: the CLI may be done as soon as it has the answer.
                log.lock().expect("log").push((peer.ip(), request.clone()));
                let _ = answer(&mut tls, &request);
            }
        });
        TlsEndpoint {
            port,
            ca_file,
            seen,
        }
    }

    fn seen(&self) -> Vec<String> {
        let seen = self.seen.lock().expect("log");
        seen.iter().map(|(_, request)| request.clone()).collect()
    }

    fn sources(&self) -> Vec<IpAddr> {
        let seen = self.seen.lock().expect("log");
        seen.iter().map(|(source, _)| *source).collect()
    }
}

/// One request's head and `content-length` body, or `None` if the connection ends first.
fn read_request(tls: &mut impl Read) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Some(text);
            }
        }
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The echostr for a handshake, `success` for anything else.
fn answer(
    tls: &mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    request: &str,
) -> std::io::Result<()> {
    let target = request.split(' ').nth(1).unwrap_or_default();
    let body = target
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("echostr="))
        .unwrap_or("success");
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(response.as_bytes())?;
    tls.conn.send_close_notify();
    tls.flush()
}

fn assert_no_token(out: &Ran) {
    assert!(
        !out.text().contains(TOKEN),
        "the token was printed: {}",
        out.text()
    );
}

#[test]
fn send_speaks_https_to_a_gate_whose_ca_it_is_given() {
    let endpoint = TlsEndpoint::start();
    let ca = endpoint.ca_file.to_str().expect("a UTF-8 path");
    let env = [("WECHAT_TOKEN", TOKEN)];

    let by_name = format!("https://localhost:{}/wechat", endpoint.port);
    let args = [
        "send",
        "handshake",
        &by_name,
        "--echostr",
        "e-over-tls",
        "--cacert",
        ca,
    ];
    let handshake = cli(&args, &env);
    assert_eq!(handshake.code, Some(0), "{}", handshake.text());
    assert_eq!(handshake.stdout, "HTTP 200\ne-over-tls\n");

    let by_address = format!("https://127.0.0.1:{}/wechat", endpoint.port);
    let args = [
        "send",
        "message",
        &by_address,
        "--text",
        "hi over tls",
        "--cacert",
        ca,
    ];
    let message = cli(&args, &env);
    assert_eq!(message.code, Some(0), "{}", message.text());
    assert_eq!(message.stdout, "HTTP 200\nsuccess\n");

    let seen = endpoint.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].starts_with("GET /wechat?signature="), "{}", seen[0]);
    assert!(seen[0].contains("echostr=e-over-tls"), "{}", seen[0]);
    assert!(
        seen[1].starts_with("POST /wechat?signature="),
        "{}",
        seen[1]
    );
    assert!(seen[1].contains("hi over tls"), "{}", seen[1]);
    for out in [&handshake, &message] {
        assert_no_token(out);
    }
}

#[test]
fn send_refuses_a_certificate_no_trusted_ca_signed() {
    let endpoint = TlsEndpoint::start();
    let url = format!("https://localhost:{}/wechat", endpoint.port);
    // The Mozilla roots (no --cacert) do not include the endpoint's own CA.
    let out = cli(&["send", "handshake", &url], &[("WECHAT_TOKEN", TOKEN)]);
    assert_eq!(out.code, Some(2), "{}", out.text());
    assert!(out.stderr.contains("TLS"), "{}", out.text());
    assert!(out.stdout.is_empty(), "{}", out.text());
    assert_no_token(&out);
    thread::sleep(Duration::from_millis(100));
    assert!(
        endpoint.seen().is_empty(),
        "a request went out: {:?}",
        endpoint.seen()
    );
}

#[test]
fn send_over_https_comes_from_the_source_given() {
    let endpoint = TlsEndpoint::start();
    let ca = endpoint.ca_file.to_str().expect("a UTF-8 path");
    let url = format!("https://127.0.0.1:{}/wechat", endpoint.port);
    let args = [
        "send",
        "handshake",
        &url,
        "--source",
        "127.0.0.5",
        "--cacert",
        ca,
    ];
    let out = cli(&args, &[("WECHAT_TOKEN", TOKEN)]);
    assert_eq!(out.code, Some(0), "{}", out.text());
    assert_eq!(
        endpoint.sources(),
        ["127.0.0.5".parse::<IpAddr>().expect("ip")]
    );
}
