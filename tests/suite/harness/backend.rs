//! What stands behind the gate (or the CLI): `Backend` records every request and
//! answers as told (tiny_http).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A request as the recording backend saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub url: String,
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
}

type Replier = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A backend that records every request and answers `success` (or as told).
pub struct Backend {
    pub port: u16,
    server: Arc<tiny_http::Server>,
    records: Arc<Mutex<Vec<Recorded>>>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// A backend that answers each request with what `reply` says; a request is
    /// recorded before it is answered.
    pub fn replying(reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Backend {
        let reply: Arc<Replier> = Arc::new(reply);
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("backend listens"));
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .expect("backend port");
        let records = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (server.clone(), records.clone());
        let thread = std::thread::spawn(move || {
            while let Ok(mut req) = s.recv() {
                let mut body = Vec::new();
                let _ = req.as_reader().read_to_end(&mut body);
                let recorded = Recorded {
                    url: req.url().to_string(),
                };
                let answer = reply(&recorded);
                r.lock().expect("records").push(recorded);
                std::thread::sleep(answer.delay);
                let _ = req.respond(
                    tiny_http::Response::from_data(answer.body).with_status_code(answer.status),
                );
            }
        });
        Backend {
            port,
            server,
            records,
            thread: Some(thread),
        }
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.records.lock().expect("records").clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
