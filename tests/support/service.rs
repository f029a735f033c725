//! A `journey-runtime serve` process for tests, and a plain HTTP/1.1 client to talk to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Service {
    pub child: Child,
    pub address: String,
    pub token: Option<String>,
    /// The lines the service wrote to stderr after its start line (read on demand).
    stderr: Option<BufReader<std::process::ChildStderr>>,
    /// Its stdout, when started by `start_with_stdout` (read by `stop`).
    stdout: Option<std::process::ChildStdout>,
}

impl Service {
    /// Starts the service on a free port with `args` after `serve --data DIR --listen …`.
    pub fn start(data: &Path, args: &[&str]) -> Service {
        Service::spawn(data, args, Stdio::null())
    }

    /// `start`, keeping what the service writes to stdout for `stop_with_stdout` (a test of
    /// the `stdout` sink; the output must stay small enough for the pipe).
    pub fn start_with_stdout(data: &Path, args: &[&str]) -> Service {
        Service::spawn(data, args, Stdio::piped())
    }

    fn spawn(data: &Path, args: &[&str], stdout: Stdio) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_journey-runtime"))
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("JOURNEY_TOKEN")
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("journey-runtime starts");
        let stdout = child.stdout.take();
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = String::new();
        let address = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("journey-runtime stopped before listening:\n{seen}");
            }
            seen.push_str(&line);
            if let Some(at) = line
                .trim()
                .strip_prefix("journey-runtime: listening on http://")
            {
                break at.to_string();
            }
        };
        let token = args
            .iter()
            .position(|a| *a == "--token")
            .and_then(|i| args.get(i + 1))
            .map(|t| t.to_string());
        Service {
            child,
            address,
            token,
            stderr: Some(stderr),
            stdout,
        }
    }

    /// A request with the service's token (if it has one); returns (status, body).
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let auth = self
            .token
            .as_ref()
            .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        http(&self.address, method, path, &auth, body)
    }

    pub fn json(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (status, text) = self.request(method, path, body.as_bytes());
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, value)
    }

    /// Stops it with SIGTERM, waits, checks it exited 0; returns what it wrote to stderr
    /// meanwhile.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("waits");
        assert!(status.success(), "a SIGTERM stop exits 0, not {status}");
        let mut rest = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = stderr.read_to_string(&mut rest);
        }
        rest
    }

    /// `stop`, returning what it wrote to stdout (started by `start_with_stdout`).
    pub fn stop_with_stdout(mut self) -> String {
        let stdout = self.stdout.take();
        self.stop();
        let mut text = String::new();
        if let Some(mut stdout) = stdout {
            let _ = stdout.read_to_string(&mut text);
        }
        text
    }

    /// Closes the pipe of its stderr, as an operator's log shipper that went away would.
    pub fn close_stderr(&mut self) {
        self.stderr = None;
    }

    /// Kills it with SIGKILL (no chance to finish anything).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
pub fn http(address: &str, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
    try_http(address, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `http`, with a failed connection as an error.
pub fn try_http(
    address: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A fresh directory under the target directory's temp space.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("journey-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
