//! `wechat-gate send` never hangs: a server that accepts and says nothing, one that
//! trickles its body, and one whose chunked body never ends all end the command within
//! `--timeout` with exit code 2 and a reason; an oversized answer is refused unread.

use crate::harness::cli::cli as run;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A server on a free loopback port that answers every connection with `serve`, until
/// dropped (each connection's thread stops when the client goes away).
struct Hostile {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    fn start(serve: fn(&mut TcpStream) -> std::io::Result<()>) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                thread::spawn(move || {
                    let mut head = [0u8; 4096];
                    let _ = conn.read(&mut head);
                    let _ = serve(&mut conn);
                });
            }
        });
        Hostile { port, stop }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
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

/// Runs the CLI; a run still going after `limit` (ten times its `--timeout`) is
/// killed and fails the test rather than hanging it.
fn run_or_kill(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wechat-gate"))
        .args(args)
        .env("WECHAT_TOKEN", "t")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wechat-gate");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wechat-gate {args:?} still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn send_gives_up_on_a_hostile_server_within_its_timeout() {
    for (what, serve) in [
        (
            "silent",
            silent as fn(&mut TcpStream) -> std::io::Result<()>,
        ),
        ("trickling", trickling),
        ("endless chunked", endless_chunks),
    ] {
        let server = Hostile::start(serve);
        let url = format!("http://127.0.0.1:{}/wechat", server.port);
        for args in [
            vec!["send", "handshake", url.as_str(), "--timeout", "2"],
            vec![
                "send",
                "message",
                url.as_str(),
                "--text",
                "hi",
                "--timeout",
                "2",
            ],
        ] {
            let (code, stderr) = run_or_kill(&args, Duration::from_secs(20));
            assert_eq!(code, Some(2), "{what}: {stderr}");
            assert!(
                stderr.contains("in time") || stderr.contains("bytes: not read further"),
                "{what}: {stderr}"
            );
        }
    }
}

#[test]
fn the_timeout_must_be_a_positive_number_of_seconds() {
    let out = run(
        &[
            "send",
            "handshake",
            "http://127.0.0.1:9/w",
            "--timeout",
            "0",
        ],
        &[("WECHAT_TOKEN", "t")],
    );
    assert_eq!(out.code, Some(2), "{}", out.text());
    assert!(out.stderr.contains("--timeout"), "{}", out.stderr);
}
