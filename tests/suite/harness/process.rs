//! Child processes for the tests: killed (and waited for) when dropped, pass or fail,
//! and the one parser of the banner line (`… listening on …:PORT`) servers print first.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A child process that is killed when the test ends, pass or fail (an orphan would
/// hold the test's pipes).
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The port at the end of a banner line that starts with `prefix`
/// (`mock-api: listening on http://127.0.0.1:` and `41234`, say).
pub fn banner_port(line: &str, prefix: &str) -> Option<u16> {
    line.trim_end().strip_prefix(prefix)?.parse().ok()
}

/// A server process that said where it listens.
pub struct Listening {
    pub port: u16,
    /// The banner, as printed (with its newline).
    pub banner: String,
    /// The rest of its stdout.
    pub stdout: BufReader<ChildStdout>,
    pub child: ChildGuard,
}

impl Listening {
    /// Spawns `cmd` (stdout piped, stdin and stderr null) and reads its banner, which
    /// must start with `prefix` and end with the port.
    pub fn spawn(cmd: &mut Command, prefix: &str) -> Listening {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let child = ChildGuard(child);
        let mut stdout = BufReader::new(stdout);
        let mut banner = String::new();
        stdout.read_line(&mut banner).expect("read the banner");
        let port = banner_port(&banner, prefix)
            .unwrap_or_else(|| panic!("{cmd:?} said {banner:?}, not {prefix:?}PORT"));
        Listening {
            port,
            banner,
            stdout,
            child,
        }
    }

    /// Stops the process and returns all it printed on stdout, banner included.
    pub fn finish(mut self) -> String {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let mut rest = String::new();
        self.stdout
            .read_to_string(&mut rest)
            .expect("read stdout to the end");
        format!("{}{rest}", self.banner)
    }
}
