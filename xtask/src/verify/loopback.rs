//! A small HTTP server on 127.0.0.1: `verify` runs its OpenAI-compatible server on it, and tests
//! use it as a stand-in package index, download host and AWS endpoint.
//!
//! It binds an ephemeral port on loopback only, answers with a handler the test supplies (with
//! HTTP range support for files), records every request, and stops when dropped or after ten
//! minutes, whichever comes first. What clients send is treated as hostile: a line longer than
//! 16 KiB, more than 100 headers or a body over 8 MiB closes the connection (a body with a 413
//! answer), and a connection idle for 30 s is dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) method: String,
    /// Path and query, e.g. `/simple/litellm/`.
    pub path: String,
    /// Header names lower-cased.
    pub(crate) headers: BTreeMap<String, String>,
    /// The request body (as long as `Content-Length` said; empty without one).
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// The answer to a request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Announce the full length but close the connection after this many body bytes.
    pub truncate_to: Option<usize>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            truncate_to: None,
        }
    }

    pub fn not_found() -> Reply {
        Reply::new(404, "text/plain", "not found")
    }

    /// A file body honouring a `Range: bytes=a-b` / `bytes=-n` header with 206 answers.
    pub fn file(request: &Request, content_type: &str, bytes: &[u8]) -> Reply {
        let len = bytes.len();
        if let Some(range) = request.header("range").and_then(|r| r.strip_prefix("bytes=")) {
            let (start, end) = match range.split_once('-') {
                Some(("", suffix)) => {
                    let n: usize = suffix.parse().unwrap_or(0).min(len);
                    (len - n, len.saturating_sub(1))
                }
                Some((a, "")) => (a.parse().unwrap_or(0), len.saturating_sub(1)),
                Some((a, b)) => (a.parse().unwrap_or(0), b.parse::<usize>().unwrap_or(0).min(len.saturating_sub(1))),
                None => (0, len.saturating_sub(1)),
            };
            if start >= len || start > end {
                let mut reply = Reply::new(416, "text/plain", "range not satisfiable");
                reply.headers.push(("Content-Range".into(), format!("bytes */{len}")));
                return reply;
            }
            let mut reply = Reply::new(206, content_type, bytes[start..=end].to_vec());
            reply.headers.push(("Content-Range".into(), format!("bytes {start}-{end}/{len}")));
            reply.headers.push(("Accept-Ranges".into(), "bytes".into()));
            return reply;
        }
        let mut reply = Reply::new(200, content_type, bytes.to_vec());
        reply.headers.push(("Accept-Ranges".into(), "bytes".into()));
        reply
    }
}

/// The longest request line or header line read.
const MAX_LINE_BYTES: u64 = 16 * 1024;
/// The most headers read for one request.
const MAX_HEADERS: usize = 100;
/// The largest request body read.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

type Handler = dyn Fn(&Request) -> Reply + Send + Sync + 'static;

/// A running loopback server. Dropping it stops it.
pub struct TestServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl TestServer {
    /// Start a server answering every request with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let stop = stop.clone();
            let requests = requests.clone();
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let handler = handler.clone();
                            let requests = requests.clone();
                            thread::spawn(move || serve_connection(stream, &*handler, &requests));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
                        Err(_) => break,
                    }
                }
            })
        };
        TestServer { addr, stop, thread: Some(thread), requests }
    }

    /// Serve the files of a directory (`GET /a/b` → `dir/a/b`), with range support.
    pub fn serve_dir(dir: &Path) -> TestServer {
        let dir: PathBuf = dir.to_path_buf();
        TestServer::start(move |request| {
            let relative = request.path.split('?').next().unwrap_or("").trim_start_matches('/');
            if relative.split('/').any(|c| c == "..") {
                return Reply::new(400, "text/plain", "bad path");
            }
            match std::fs::read(dir.join(relative)) {
                Ok(bytes) => Reply::file(request, "application/octet-stream", &bytes),
                Err(_) => Reply::not_found(),
            }
        })
    }

    /// `http://127.0.0.1:<port>` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_connection(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Request>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut stream = stream;
    loop {
        let Some(request_line) = read_bounded_line(&mut reader) else { return };
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        let mut headers = BTreeMap::new();
        loop {
            let Some(line) = read_bounded_line(&mut reader) else { return };
            if headers.len() >= MAX_HEADERS {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let mut body = Vec::new();
        if let Some(length) = headers.get("content-length").and_then(|l| l.parse::<usize>().ok()) {
            if length > MAX_BODY_BYTES {
                let refusal = format!("a body of {length} bytes is over this server's {MAX_BODY_BYTES}");
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 413 Payload Too Large\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{refusal}",
                        refusal.len()
                    )
                    .as_bytes(),
                );
                return;
            }
            body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        let request = Request { method, path, headers, body };
        requests.lock().expect("requests lock").push(request.clone());
        let reply = handler(&request);
        let reason = match reply.status {
            200 => "OK",
            206 => "Partial Content",
            404 => "Not Found",
            416 => "Range Not Satisfiable",
            _ => "Status",
        };
        let mut head = format!("HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\n", reply.status, reply.body.len());
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let close = reply.truncate_to.is_some();
        head.push_str(if close { "Connection: close\r\n\r\n" } else { "\r\n" });
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        let body = match reply.truncate_to {
            Some(n) => &reply.body[..n.min(reply.body.len())],
            None => &reply.body[..],
        };
        if stream.write_all(body).is_err() || close {
            let _ = stream.flush();
            return;
        }
    }
}

/// One line (with its `\n`), at most [`MAX_LINE_BYTES`]; `None` at the end of the stream, on an
/// error or for a longer line.
fn read_bounded_line(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    let read = reader.by_ref().take(MAX_LINE_BYTES).read_line(&mut line).ok()?;
    (read > 0 && line.ends_with('\n')).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_ranges() {
        let server = TestServer::start(|request| Reply::file(request, "application/octet-stream", b"0123456789"));
        let client = reqwest::blocking::Client::new();
        let whole = client.get(server.url("/f")).send().unwrap().bytes().unwrap();
        assert_eq!(&whole[..], b"0123456789");
        let tail = client.get(server.url("/f")).header("Range", "bytes=-3").send().unwrap();
        assert_eq!(tail.status(), 206);
        assert_eq!(&tail.bytes().unwrap()[..], b"789");
        let middle = client.get(server.url("/f")).header("Range", "bytes=2-4").send().unwrap().bytes().unwrap();
        assert_eq!(&middle[..], b"234");
        assert_eq!(server.requests().len(), 3);
    }

    #[test]
    fn oversized_bodies_and_lines_are_refused_without_reading_them() {
        let server = TestServer::start(|_| Reply::new(200, "text/plain", "ok"));
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.write_all(b"POST /x HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{answer}");
        assert!(answer.ends_with("a body of 999999999999 bytes is over this server's 8388608"), "{answer}");

        let mut stream = TcpStream::connect(server.addr).unwrap();
        let long_header = format!("GET /x HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(20_000));
        let _ = stream.write_all(long_header.as_bytes());
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert_eq!(answer, "");
        assert!(server.requests().is_empty());
    }
}
