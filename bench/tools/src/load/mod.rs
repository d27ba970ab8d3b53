//! `wg-bench load`: the bench's HTTP/1.1 load generator. What h2load does for the bench
//! (a fixed request count over a few keep-alive connections from one thread, or a fixed
//! rate, and a per-request log), except that **every request takes the next line of
//! the URI file**: request k gets line k, whichever connection sends it.
//!
//! h2load cannot do that: with `-i FILE` each client walks the list from its first
//! line (nghttp2 1.52: a `reqidx` per client), so `-c 16` sends every URI 16 times,
//! and the gate answers all but the first as replays. One h2load per connection, each
//! with its own slice, made the load core the bottleneck (on 2 cores: about 25 % fewer
//! requests per second, and Envoy, no longer saturated, spent about 8 % more CPU per
//! request); one thread polling every connection, as h2load does, keeps Envoy the
//! bottleneck.
//!
//! ```text
//! wg-bench load --connect 127.0.0.1:PORT --uris FILE [-c 16] [--method POST]
//!               [--body FILE] [--header 'name: value']... [--rps R] [--log-file F]
//!               [--unique MARKER [--unique-base N]]
//! ```
//!
//! `--unique MARKER`: every occurrence of MARKER in the body becomes request k's number
//! (N + k, zero-padded to MARKER's length, its last digits if longer), so that each
//! request carries a body of its own of the same length (the attribution bench gives
//! every push a MsgId of its own this way).
//!
//! Prints one JSON line: `done` (requests attempted), `2xx` … `5xx`, `errored` (no
//! complete response), `connects`, `retries` (requests sent again because the server
//! closed a kept-alive connection before answering them: at most once each),
//! `seconds` (first request to last response), `rps`.
//! The log has one line per request, as h2load's: start (µs since the run began), status
//! (`-1` if none), duration (µs), tab-separated.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

mod conn;
use conn::{connect, parse_response, Conn, Parsed};

/// Gives up on a run that has made no progress for this long.
const STALL: Duration = Duration::from_secs(10);

struct Options {
    connect: String,
    uris: Vec<String>,
    conns: usize,
    method: String,
    body: Vec<u8>,
    /// `--unique`: the marker in the body, and the number of request 0.
    unique: Option<(Vec<u8>, u64)>,
    headers: Vec<String>,
    rps: Option<f64>,
    log_file: Option<String>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        connect: String::new(),
        uris: Vec::new(),
        conns: 16,
        method: "GET".into(),
        body: Vec::new(),
        unique: None,
        headers: Vec::new(),
        rps: None,
        log_file: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--connect" => o.connect = value()?,
            "--uris" => {
                let path = value()?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                o.uris = text
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "-c" => o.conns = value()?.parse().map_err(|_| "-c: a number")?,
            "--method" => o.method = value()?,
            "--body" => {
                let path = value()?;
                o.body = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
            }
            "--header" => o.headers.push(value()?),
            "--unique" => {
                let base = o.unique.as_ref().map_or(0, |u| u.1);
                o.unique = Some((value()?.into_bytes(), base));
            }
            "--unique-base" => {
                let base = value()?.parse().map_err(|_| "--unique-base: a number")?;
                let marker = o.unique.take().map(|u| u.0).unwrap_or_default();
                o.unique = Some((marker, base));
            }
            "--rps" => o.rps = Some(value()?.parse().map_err(|_| "--rps: a number")?),
            "--log-file" => o.log_file = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.connect.is_empty() || o.uris.is_empty() {
        return Err("--connect and a non-empty --uris are required".into());
    }
    o.conns = o.conns.clamp(1, o.uris.len());
    Ok(o)
}

/// The bytes of the request for one URI file line (request number `k`).
fn request(o: &Options, uri: &str, k: usize) -> Vec<u8> {
    let with_body = o.method != "GET" && o.method != "HEAD";
    let mut r = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        o.method,
        path_of(uri),
        o.connect
    );
    for h in &o.headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if with_body {
        r.push_str(&format!("content-length: {}\r\n", o.body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    if with_body {
        match &o.unique {
            Some((marker, base)) if !marker.is_empty() => {
                bytes.extend_from_slice(&unique_body(&o.body, marker, base + k as u64))
            }
            _ => bytes.extend_from_slice(&o.body),
        }
    }
    bytes
}

/// `body` with every `marker` replaced by `n`, zero-padded to the marker's length.
fn unique_body(body: &[u8], marker: &[u8], n: u64) -> Vec<u8> {
    let digits = format!("{n:0width$}", width = marker.len());
    let digits = &digits.as_bytes()[digits.len() - marker.len()..];
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.windows(marker.len()).position(|w| w == marker) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(digits);
        rest = &rest[i + marker.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// A URI file line may be a whole URL (as h2load takes them): its path.
fn path_of(uri: &str) -> String {
    match uri.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string()),
        None => uri.to_string(),
    }
}

/// A run's connections and what they have done so far.
struct Run<'a> {
    o: &'a Options,
    conns: Vec<Conn>,
    /// The next request (URI line) to send.
    next: usize,
    /// Per request: start (µs since `start`), status (`-1`: none), duration (µs).
    results: Vec<(u64, i32, u64)>,
    /// Responses by status class (index = status / 100, 5 and over in 5).
    counts: [usize; 6],
    errored: usize,
    connects: usize,
    retries: usize,
    finished: usize,
    start: Instant,
    last_progress: Instant,
    last_done: Instant,
    /// The time between two request starts, at a fixed rate.
    interval: Option<Duration>,
    buf: Vec<u8>,
}

/// What one wait for the connections found.
enum Polled {
    /// Nothing is in flight and every request was sent.
    AllSent,
    /// Nothing to read yet: go round again.
    Again,
    /// The poll set, `revents` filled, and the connection index of each entry.
    Ready(Vec<libc::pollfd>, Vec<usize>),
}

impl<'a> Run<'a> {
    fn new(o: &'a Options) -> Run<'a> {
        let start = Instant::now();
        Run {
            o,
            conns: (0..o.conns).map(|_| Conn::idle()).collect(),
            next: 0,
            results: vec![(0, -1, 0); o.uris.len()],
            counts: [0; 6],
            errored: 0,
            connects: 0,
            retries: 0,
            finished: 0,
            start,
            last_progress: start,
            last_done: start,
            interval: o
                .rps
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            buf: vec![0u8; 64 * 1024],
        }
    }

    fn total(&self) -> usize {
        self.o.uris.len()
    }

    fn micros_since_start(&self, t: Instant) -> u64 {
        t.duration_since(self.start).as_micros() as u64
    }

    /// Starts requests on idle connections (at the fixed rate, if one is set).
    fn start_requests(&mut self, now: Instant) {
        let n = self.total();
        for c in self.conns.iter_mut() {
            if c.current.is_some() || self.next >= n {
                continue;
            }
            if let Some(iv) = self.interval {
                if now < self.start + iv * self.next as u32 {
                    break;
                }
            }
            if c.stream.is_none() {
                let Some(s) = connect(&self.o.connect) else {
                    // Counted as the next request failing; try again with the one after.
                    let at = now.duration_since(self.start).as_micros() as u64;
                    self.results[self.next] = (at, -1, 0);
                    self.errored += 1;
                    self.finished += 1;
                    self.next += 1;
                    continue;
                };
                c.stream = Some(s);
                c.served = 0;
                self.connects += 1;
            }
            c.out = request(self.o, &self.o.uris[self.next], self.next);
            c.written = 0;
            c.inp.clear();
            c.current = Some((self.next, now));
            c.retried = false;
            self.next += 1;
        }
    }

    /// Waits for any connection to become readable (or writable, if a write is
    /// pending), at most until the next request is due.
    fn poll(&self) -> Polled {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(self.conns.len());
        let mut which: Vec<usize> = Vec::with_capacity(self.conns.len());
        for (i, c) in self.conns.iter().enumerate() {
            if let (Some(s), Some(_)) = (c.stream.as_ref(), c.current) {
                let mut events = libc::POLLIN;
                if c.written < c.out.len() {
                    events |= libc::POLLOUT;
                }
                fds.push(libc::pollfd {
                    fd: s.as_raw_fd(),
                    events,
                    revents: 0,
                });
                which.push(i);
            }
        }
        let timeout_ms: i32 = match self.interval {
            Some(iv) if self.next < self.total() => {
                let due = self.start + iv * self.next as u32;
                let wait = due.saturating_duration_since(Instant::now());
                i32::try_from(wait.as_millis()).unwrap_or(1000).min(1000)
            }
            _ => 1000,
        };
        if fds.is_empty() {
            if self.next >= self.total() {
                return Polled::AllSent;
            }
            if timeout_ms > 0 {
                std::thread::sleep(
                    Duration::from_millis(timeout_ms as u64).min(Duration::from_micros(500)),
                );
            }
            return Polled::Again;
        }
        // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready < 0 {
            return Polled::Again; // EINTR
        }
        Polled::Ready(fds, which)
    }

    /// Reads what connection `i` has, and finishes its request if the response is whole
    /// (or never will be).
    fn on_ready(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let ended = c.read_available(&mut self.buf);
        let Some((k, sent)) = c.current else { return };
        if ended && c.inp.is_empty() && c.served > 0 && !c.retried && self.resend(i) {
            return;
        }
        let c = &self.conns[i];
        let outcome = match parse_response(&c.inp, self.o.method == "HEAD") {
            Parsed::Done { status, close } => Some((status, close)),
            Parsed::Incomplete if ended => None,
            Parsed::Incomplete => return,
            Parsed::Bad => None,
        };
        self.finish(i, k, sent, outcome, ended);
    }

    /// The server closed a kept-alive connection as this request went out (it had not
    /// begun to answer): send it again on a new connection, once, as any HTTP/1.1
    /// client does. False when no new connection could be made.
    fn resend(&mut self, i: usize) -> bool {
        let c = &mut self.conns[i];
        c.stream = connect(&self.o.connect);
        if c.stream.is_none() {
            return false;
        }
        self.connects += 1;
        c.served = 0;
        c.written = 0;
        c.retried = true;
        self.retries += 1;
        true
    }

    /// Records request `k`'s outcome (status and whether the server closes; `None`: no
    /// complete response) and makes connection `i` idle.
    fn finish(
        &mut self,
        i: usize,
        k: usize,
        sent: Instant,
        outcome: Option<(u16, bool)>,
        ended: bool,
    ) {
        let done_at = Instant::now();
        let started = self.micros_since_start(sent);
        let c = &mut self.conns[i];
        match outcome {
            Some((status, close)) => {
                let took = done_at.duration_since(sent).as_micros() as u64;
                self.results[k] = (started, i32::from(status), took);
                self.counts[usize::from(status / 100).min(5)] += 1;
                c.served += 1;
                if close || ended {
                    c.stream = None;
                }
            }
            None => {
                self.results[k] = (started, -1, 0);
                self.errored += 1;
                c.stream = None;
            }
        }
        c.current = None;
        c.inp.clear();
        c.out.clear();
        c.written = 0;
        self.finished += 1;
        self.last_progress = done_at;
        self.last_done = done_at;
    }

    /// True (and whatever is still in flight or not sent counted as errored) when
    /// nothing has finished for [`STALL`].
    fn stalled(&mut self) -> bool {
        if self.last_progress.elapsed() <= STALL {
            return false;
        }
        let left = self.total() - self.finished;
        self.errored += left;
        eprintln!(
            "wg-bench load: no progress for {} s, {left} requests given up",
            STALL.as_secs()
        );
        true
    }

    /// Writes the log file, prints the JSON line; the exit code.
    fn report(&self) -> i32 {
        let seconds = self.last_done.duration_since(self.start).as_secs_f64();
        if let Some(path) = &self.o.log_file {
            let mut text = String::with_capacity(self.total() * 24);
            for (t, status, d) in &self.results {
                text.push_str(&format!("{t}\t{status}\t{d}\n"));
            }
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("wg-bench load: {path}: {e}");
            }
        }
        let (counts, errored) = (&self.counts, self.errored);
        let done = counts.iter().sum::<usize>() + errored;
        println!(
            "{{\"done\": {done}, \"2xx\": {}, \"3xx\": {}, \"4xx\": {}, \"5xx\": {}, \"errored\": {errored}, \
             \"connects\": {}, \"retries\": {}, \"seconds\": {seconds:.6}, \"rps\": {:.1}}}",
            counts[2],
            counts[3],
            counts[4],
            counts[5],
            self.connects,
            self.retries,
            if seconds > 0.0 { (done - errored) as f64 / seconds } else { 0.0 }
        );
        i32::from(errored > 0)
    }
}

pub fn main(args: &[String]) -> i32 {
    let o = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("wg-bench load: {e}");
            return 2;
        }
    };
    let mut run = Run::new(&o);
    while run.finished < run.total() {
        run.start_requests(Instant::now());
        for c in run.conns.iter_mut() {
            c.write_some();
        }
        match run.poll() {
            Polled::AllSent => break,
            Polled::Again => continue,
            Polled::Ready(fds, which) => {
                for (fd, &i) in fds.iter().zip(&which) {
                    if fd.revents != 0 {
                        run.on_ready(i);
                    }
                }
            }
        }
        if run.stalled() {
            break;
        }
    }
    run.report()
}
