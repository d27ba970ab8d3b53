//! What stands behind the gate: `Backend` records every request and answers as told;
//! `RawBackend`, on which it is built, answers on raw HTTP/1.1 through the project's
//! one request reader (`wechat::http1`), so a test can also write what no server
//! library would (trailers, a dropped connection); `WsgiBackend` reads headers
//! CGI-style; `BackendPy` is the demo's envoy/backend.py.

use super::process::{ChildGuard, Listening};
use super::MANIFEST_DIR;
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wechat::http1::client::Response;
use wechat::http1::{Connection, Limits, Request};

/// A request as the recording backend saw it, and when.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it had been read to its end.
    pub read_at: Instant,
    /// When its answer began to be written (after the reply's delay); `None` while
    /// it is being served.
    pub answered_at: Option<Instant>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `x-wechat-gate-*` headers, names lowercased.
    pub fn gate_headers(&self) -> BTreeMap<String, String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-wechat-gate-"))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How the backend answers a request: status, body, and a delay before answering.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    /// 200 `success`, what WeChat expects when there is nothing to reply.
    pub fn success() -> Reply {
        Reply::ok("success")
    }

    /// 200 with `body`.
    pub fn ok(body: &str) -> Reply {
        Reply::status(200, body)
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    /// The same reply, `delay` later.
    pub fn after(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }
}

type Replier = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A backend that records every request and answers `success` (or as told). Each
/// connection has its own thread, as a real server's workers would, so a slow or
/// stalled request holds up no other.
pub struct Backend {
    pub port: u16,
    records: Arc<Mutex<Vec<Recorded>>>,
    _server: RawBackend,
}

impl Backend {
    pub fn start() -> Backend {
        Backend::replying(|_| Reply::success())
    }

    /// A backend that answers each request with what `reply` says; a request is
    /// recorded once it has been read to its end (one cut short by a reset is not: no
    /// server reading to the end of the message completes it), before it is answered.
    pub fn replying(reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Backend {
        Backend::on(bind(0), reply)
    }

    /// A backend that starts answering `success` on `port` (one a test kept free, to
    /// play a backend that comes back after a restart).
    pub fn start_on(port: u16) -> Backend {
        Backend::replying_on(port, |_| Reply::success())
    }

    /// A backend that starts answering as `reply` says on `port` (see
    /// [`Backend::start_on`]).
    pub fn replying_on(
        port: u16,
        reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Backend {
        Backend::on(bind(port), reply)
    }

    fn on(
        listener: TcpListener,
        reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Backend {
        let reply: Arc<Replier> = Arc::new(reply);
        let records = Arc::new(Mutex::new(Vec::new()));
        let r = records.clone();
        let server = RawBackend::on(listener, move |conn, request| {
            let recorded = Recorded {
                method: request.method.clone(),
                url: request.target.clone(),
                headers: request.headers.clone(),
                body: request.body.clone(),
                read_at: Instant::now(),
                answered_at: None,
            };
            let answer = reply(&recorded);
            let number = {
                let mut records = r.lock().expect("records");
                records.push(recorded);
                records.len() - 1
            };
            std::thread::sleep(answer.delay);
            // Before the answer goes: whatever its caller does next comes after this.
            if let Some(done) = r.lock().expect("records").get_mut(number) {
                done.answered_at = Some(Instant::now());
            }
            conn.write_response(answer.status, &[], &answer.body, request.keep_alive)
        });
        Backend {
            port: server.port,
            records,
            _server: server,
        }
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.records.lock().expect("records").clone()
    }

    /// The bodies received, in the order they were read, as text.
    pub fn bodies(&self) -> Vec<String> {
        self.records().iter().map(Recorded::body_text).collect()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

// ---------------------------------------------------------------- raw HTTP/1.1

/// A listener on 127.0.0.1:`port` (0: any free port).
fn bind(port: u16) -> TcpListener {
    TcpListener::bind(("127.0.0.1", port)).expect("bind")
}

/// What a test backend reads: far above any body a test sends, so a backend waits for
/// a large body as a real one would rather than refusing it before the gate can.
const BACKEND_LIMITS: Limits = Limits {
    head: 64 * 1024,
    body: 64 << 20,
};

type Answer = dyn Fn(&mut Connection, &Request) -> std::io::Result<()> + Send + Sync;

/// A backend on raw HTTP/1.1: each request is read with `wechat::http1::Connection` and
/// answered by writing to `conn.stream`. A connection is served, on its own thread,
/// until its client closes it (or the answer fails). Dropped, it stops listening and
/// shuts every open connection, as a stopped server would: Envoy's pooled
/// connections to it fail rather than reach a backend that is gone.
pub struct RawBackend {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// The connections being served, by number; each leaves when it ends.
    open: Arc<Mutex<BTreeMap<u64, TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl RawBackend {
    pub fn start(
        answer: impl Fn(&mut Connection, &Request) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> RawBackend {
        RawBackend::on(bind(0), answer)
    }

    fn on(
        listener: TcpListener,
        answer: impl Fn(&mut Connection, &Request) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> RawBackend {
        let answer: Arc<Answer> = Arc::new(answer);
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(BTreeMap::new()));
        let (stopped, opened) = (stop.clone(), open.clone());
        let accept = std::thread::spawn(move || {
            for (number, stream) in (0u64..).zip(listener.incoming()) {
                let Ok(stream) = stream else { continue };
                {
                    // Under the lock `drop` takes: a connection is either shut there
                    // or never served.
                    let mut opened = opened.lock().expect("connections");
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(handle) = stream.try_clone() {
                        opened.insert(number, handle);
                    }
                }
                let (answer, opened) = (answer.clone(), opened.clone());
                std::thread::spawn(move || {
                    let mut conn = Connection::new(stream, BACKEND_LIMITS);
                    while let Ok(request) = conn.read_request() {
                        if answer(&mut conn, &request).is_err() || !request.keep_alive {
                            break;
                        }
                    }
                    let _ = conn.stream.shutdown(std::net::Shutdown::Both);
                    opened.lock().expect("connections").remove(&number);
                });
            }
        });
        RawBackend {
            port,
            stop,
            open,
            accept: Some(accept),
        }
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        {
            let open = self.open.lock().expect("connections");
            self.stop.store(true, Ordering::SeqCst);
            for stream in open.values() {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- processes

/// `tests/data/wsgi_backend.py`: Python's own WSGI server, which reads header names
/// CGI-style (`-` and `_` are one), answering with the `HTTP_X_WECHAT_GATE_*`
/// variables it saw as JSON. Killed on drop.
pub struct WsgiBackend {
    pub port: u16,
    _process: Listening,
}

impl WsgiBackend {
    pub fn start() -> WsgiBackend {
        let process = Listening::spawn(
            Command::new("python3").arg(format!("{MANIFEST_DIR}/tests/data/wsgi_backend.py")),
            "listening on 127.0.0.1:",
        );
        WsgiBackend {
            port: process.port,
            _process: process,
        }
    }

    /// The `HTTP_X_WECHAT_GATE_*` variables a response of this backend reports.
    pub fn gate_variables(r: &Response) -> BTreeMap<String, String> {
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| panic!("not the WSGI backend's JSON: {}", r.body_text()));
        v.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("HTTP_X_WECHAT_GATE_"))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect()
    }
}

/// The demo's envoy/backend.py on a free port; every line it prints is kept.
pub struct BackendPy {
    pub port: u16,
    child: ChildGuard,
    reader: JoinHandle<()>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl BackendPy {
    pub fn start() -> BackendPy {
        use std::io::BufRead;
        let Listening {
            port,
            stdout,
            child,
            ..
        } = Listening::spawn(
            Command::new("python3").args([
                &format!("{MANIFEST_DIR}/envoy/backend.py"),
                "--port",
                "0",
            ]),
            "backend: listening on http://127.0.0.1:",
        );
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        BackendPy {
            port,
            child,
            reader,
            lines,
        }
    }

    /// Stops backend.py and returns every line it printed after its banner.
    pub fn stop(self) -> Vec<String> {
        drop(self.child);
        let _ = self.reader.join();
        let lines = self.lines.lock().expect("lines").clone();
        lines
    }
}

// ---------------------------------------------------------------- request heads

/// A backend that records every request head the moment it has arrived, before any
/// of its body (what a backend sees of a push whose body stalls), and answers
/// `success` to each request whose body comes whole (`content-length` or chunked).
/// One thread per connection, so a stalled request holds only its own.
pub struct HeadBackend {
    pub port: u16,
    stop: Arc<AtomicBool>,
    heads: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<Vec<String>>>,
    accept: Option<JoinHandle<()>>,
}

impl HeadBackend {
    pub fn start() -> HeadBackend {
        HeadBackend::bounded(usize::MAX, 1024)
    }

    /// A backend like a pool of `workers` (gunicorn, PHP-FPM): it serves that many
    /// connections at once and accepts no other until one ends, and its listen
    /// backlog is `backlog`; past both, the kernel drops a connection attempt.
    pub fn bounded(workers: usize, backlog: i32) -> HeadBackend {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let address: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
        socket.bind(&address.into()).expect("bind");
        socket.listen(backlog).expect("listen");
        let listener: TcpListener = socket.into();
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (stopped, h, b) = (stop.clone(), heads.clone(), bodies.clone());
        let busy = Arc::new((Mutex::new(0usize), std::sync::Condvar::new()));
        let accept = std::thread::spawn(move || loop {
            {
                let (count, freed) = &*busy;
                let mut n = count.lock().expect("busy");
                while *n >= workers && !stopped.load(Ordering::SeqCst) {
                    n = freed
                        .wait_timeout(n, Duration::from_millis(100))
                        .expect("busy")
                        .0;
                }
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                *n += 1;
            }
            let stream = listener.accept();
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            let Ok((stream, _)) = stream else {
                *busy.0.lock().expect("busy") -= 1;
                continue;
            };
            let (h, b, busy) = (h.clone(), b.clone(), busy.clone());
            std::thread::spawn(move || {
                serve_heads(stream, &h, &b);
                let (count, freed) = &*busy;
                *count.lock().expect("busy") -= 1;
                freed.notify_one();
            });
        });
        HeadBackend {
            port,
            stop,
            heads,
            bodies,
            accept: Some(accept),
        }
    }

    /// Every request head seen (request line and headers), in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }

    /// The bodies of the requests that came whole, in order.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().expect("bodies").clone()
    }
}

fn serve_heads(mut stream: TcpStream, heads: &Mutex<Vec<String>>, bodies: &Mutex<Vec<String>>) {
    use std::io::{Read, Write};
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // The head.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        heads.lock().expect("heads").push(head.clone());
        buf.drain(..end);
        let lower = head.to_ascii_lowercase();
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        // The body: by its length, or chunked up to the last chunk.
        let body = loop {
            match length {
                Some(n) if buf.len() >= n => break buf.drain(..n).collect::<Vec<u8>>(),
                None => match wechat::http1::dechunk(&buf, usize::MAX) {
                    Ok(Some((body, used))) => {
                        buf.drain(..used);
                        break body;
                    }
                    Ok(None) => {}
                    Err(_) => return,
                },
                _ => {}
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        bodies
            .lock()
            .expect("bodies")
            .push(String::from_utf8_lossy(&body).into_owned());
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nsuccess")
            .is_err()
        {
            return;
        }
    }
}

impl Drop for HeadBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop (bounded: a full backlog may not take it).
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let _ = TcpStream::connect_timeout(&address, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
