//! `wechat-gate send` against hostile servers never hangs nor grows: a server that says
//! nothing, trickles its body, never ends a chunked body or its head, answers `100
//! Continue` forever, or never accepts the connection ends the command within
//! `--timeout` (exit 2, with a reason); an interim `100 Continue` is read past; a
//! redirect is printed, not followed.

use crate::harness::wait_until;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

type Serve = fn(&mut TcpStream) -> std::io::Result<()>;

/// A server on a free loopback port answering its first few connections with `serve`
/// (after reading the request head), each in its own thread, which ends when the
/// client goes away.
fn hostile(serve: Serve) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for conn in listener.incoming().take(4) {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let mut head = [0u8; 8192];
                let _ = conn.read(&mut head);
                let _ = serve(&mut conn);
            });
        }
    });
    port
}

/// Runs `wechat-gate send …` with a token: exit code, what it printed, how long it
/// took. A run still going after `limit` is killed and fails the test rather than
/// hanging it.
fn send(args: &[&str], limit: Duration) -> (Option<i32>, String, Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wechat-gate"))
        .args(args)
        .env("WECHAT_TOKEN", "t")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wechat-gate");
    let started = Instant::now();
    if wait_until(limit, || child.try_wait().ok().flatten().is_some()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("wechat-gate {args:?} still running after {limit:?}");
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, started.elapsed())
}

/// Holds the connection open, saying nothing, until the client leaves.
fn silent(conn: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 64];
    while conn.read(&mut buf)? > 0 {}
    Ok(())
}

/// A head promising 1000 bytes, then one byte every 200 ms.
fn trickling(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")?;
    loop {
        conn.write_all(b"s")?;
        thread::sleep(Duration::from_millis(200));
    }
}

/// A chunked body that never ends, as fast as the client reads.
fn endless_chunks(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")?;
    let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
    loop {
        conn.write_all(chunk.as_bytes())?;
    }
}

/// A head that never ends, as fast as the client reads.
fn endless_head(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(b"HTTP/1.1 200 OK\r\n")?;
    let line = format!("x-filler: {}\r\n", "a".repeat(1000));
    loop {
        conn.write_all(line.as_bytes())?;
    }
}

/// `100 Continue` heads, forever.
fn endless_continue(conn: &mut TcpStream) -> std::io::Result<()> {
    loop {
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
}

/// One interim `100 Continue`, then the final answer `success`, then close.
fn continue_then_success(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    thread::sleep(Duration::from_millis(50));
    conn.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nsuccess",
    )
}

/// A redirect elsewhere.
fn redirect(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(
        b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/steal\r\ncontent-length: 0\r\n\r\n",
    )?;
    silent(conn)
}

#[test]
fn send_gives_up_on_a_hostile_server_within_its_timeout() {
    for (what, serve) in [
        ("silent", silent as Serve),
        ("trickling", trickling),
        ("endless chunked", endless_chunks),
        ("endless head", endless_head),
        ("endless 100 Continue", endless_continue),
    ] {
        let url = format!("http://127.0.0.1:{}/wechat", hostile(serve));
        for args in [
            vec!["send", "handshake", url.as_str(), "--timeout", "2"],
            vec!["send", "message", &url, "--text", "hi", "--timeout", "2"],
        ] {
            let (code, out, _) = send(&args, Duration::from_secs(20));
            assert_eq!(code, Some(2), "{what}: {out}");
            assert!(
                out.contains("in time") || out.contains("not read further"),
                "{what}: {out}"
            );
            assert!(out.len() < 4096, "{what}: printed {} bytes", out.len());
        }
    }
}

/// A listener whose accept queue is full drops the SYN, so the connect itself hangs:
/// `--timeout` bounds it too (it was a fixed 5 s).
#[test]
fn send_timeout_bounds_the_connect() {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    listener.bind(&any.into()).expect("bind");
    listener.listen(0).expect("listen");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    // Fill the accept queue (never accepted).
    let mut queued = Vec::new();
    for _ in 0..8 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.set_nonblocking(true).expect("nonblocking");
        let _ = s.connect(&addr.into());
        queued.push(s);
    }
    let url = format!("http://{addr}/wechat");
    let (code, out, took) = send(
        &["send", "handshake", &url, "--timeout", "1"],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(2), "{out}");
    // Not a measure of speed: the fixed 5 s connect timeout this replaced.
    assert!(
        took < Duration::from_secs(4),
        "--timeout 1 took {took:?}: {out}"
    );
}

/// RFC 9110 §15.2: a client reads past interim answers to the final one, expected or not.
#[test]
fn send_reads_past_an_interim_100_continue() {
    let url = format!("http://127.0.0.1:{}/wechat", hostile(continue_then_success));
    let (code, out, _) = send(
        &["send", "message", &url, "--text", "hi", "--timeout", "3"],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(0), "the endpoint answered 200 success: {out}");
    assert!(out.starts_with("HTTP 200"), "{out}");
}

#[test]
fn send_does_not_follow_a_redirect() {
    let url = format!("http://127.0.0.1:{}/wechat", hostile(redirect));
    let (code, out, _) = send(
        &["send", "handshake", &url, "--timeout", "3"],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("302"), "{out}");
}

#[test]
fn the_timeout_must_be_a_positive_number_of_seconds() {
    let (code, out, _) = send(
        &[
            "send",
            "handshake",
            "http://127.0.0.1:9/w",
            "--timeout",
            "0",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--timeout"), "{out}");
}
