//! A local customer endpoint for tests: HTTPS on 127.0.0.1 with a certificate
//! from its own CA (generated per receiver by the reference receiver's
//! `platformsync_receiver::tls`, the repository's one local CA), HTTP/1.1
//! keep-alive.
//!
//! It records every request it reads (method, target, headers, body) and
//! answers from a script: queued [`Reply`]s first, in order, then the default
//! (200 unless changed). A reply can be any status, come after a delay (a
//! timeout, for a client with a short attempt limit), carry `Retry-After`, or
//! be a connection reset (TCP RST right after the request was read). It drops
//! nothing on its own: every request read is recorded before it is answered.
//!
//! The push function trusts it through `extra_ca_pem` = [`Receiver::ca_pem`]
//! and an allow-list of `127.0.0.0/8`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platformsync_receiver::tls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Respond {
        status: u16,
        delay: Duration,
        retry_after: Option<String>,
        body: String,
    },
    /// Read the request, then reset the connection (no response).
    Reset,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Respond {
            status,
            delay: Duration::ZERO,
            retry_after: None,
            body: String::new(),
        }
    }

    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// The same reply, sent `delay` after the request was read.
    pub fn after(self, delay: Duration) -> Reply {
        match self {
            Reply::Respond {
                status,
                retry_after,
                body,
                ..
            } => Reply::Respond {
                status,
                delay,
                retry_after,
                body,
            },
            other => other,
        }
    }

    pub fn with_body(self, text: &str) -> Reply {
        match self {
            Reply::Respond {
                status,
                delay,
                retry_after,
                ..
            } => Reply::Respond {
                status,
                delay,
                retry_after,
                body: text.to_owned(),
            },
            other => other,
        }
    }

    pub fn with_retry_after(self, value: &str) -> Reply {
        match self {
            Reply::Respond {
                status,
                delay,
                body,
                ..
            } => Reply::Respond {
                status,
                delay,
                retry_after: Some(value.to_owned()),
                body,
            },
            other => other,
        }
    }
}

/// One request as the receiver read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it was read.
    pub at: Instant,
    /// The status it was answered with (`None`: the connection was reset).
    pub replied: Option<u16>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `Metadata.MessageId` of a push payload.
    pub fn message_id(&self) -> String {
        self.json()["Metadata"]["MessageId"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Default)]
struct Script {
    queued: VecDeque<Reply>,
    default: Option<Reply>,
    /// Requests whose body contains the text get the reply (before the queue).
    refuse: Vec<(Vec<u8>, Reply)>,
    /// Fails this share of requests at random (per mille, seeded), with one
    /// of the replies in turn.
    flaky: Option<Flaky>,
}

struct Flaky {
    per_mille: u64,
    state: u64,
    failures: Vec<Reply>,
}

impl Flaky {
    fn next(&mut self) -> Option<Reply> {
        // SplitMix64: reproducible from the seed, no extra crate.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if z % 1000 < self.per_mille && !self.failures.is_empty() {
            let pick = ((z >> 20) % self.failures.len() as u64) as usize;
            Some(self.failures[pick].clone())
        } else {
            None
        }
    }
}

struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<Request>>,
    count: AtomicUsize,
    connections: AtomicUsize,
    record: AtomicBool,
}

/// A running receiver; stops when dropped (its accept loop ends with the
/// runtime, or when the listener task is aborted).
pub struct Receiver {
    port: u16,
    ca_pem: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let certificate = tls::generate().expect("local CA and server certificate");
        let acceptor =
            TlsAcceptor::from(tls::server_config(&certificate).expect("server TLS config"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            script: Mutex::new(Script::default()),
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            record: AtomicBool::new(true),
        });
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let _ = tcp.set_nodelay(true);
                accept_shared.connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, shared) = (acceptor.clone(), accept_shared.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, shared).await;
                    }
                });
            }
        });
        Receiver {
            port,
            ca_pem: certificate.ca_pem,
            shared,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The CA that signed the receiver's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Replies used, in order, before the default.
    pub fn queue(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script().queued.extend(replies);
    }

    /// The reply once the queue is empty (initially 200).
    pub fn set_default(&self, reply: Reply) {
        self.script().default = Some(reply);
    }

    /// Requests whose body contains `text` get `reply`, whatever the queue
    /// says (an endpoint refusing one transaction).
    pub fn refuse_containing(&self, text: &str, reply: Reply) {
        self.script().refuse.push((text.as_bytes().to_vec(), reply));
    }

    /// Fails `percent` % of requests at random (reproducible from `seed`),
    /// each with one of `failures`; the rest get the queue or the default.
    pub fn set_flaky(&self, percent: u64, seed: u64, failures: Vec<Reply>) {
        self.script().flaky = Some(Flaky {
            per_mille: percent * 10,
            state: seed,
            failures,
        });
    }

    /// Whether requests are kept (a load run only counts them).
    pub fn set_recording(&self, record: bool) {
        self.shared.record.store(record, Ordering::SeqCst);
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.shared
            .script
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Header `name` of every recorded request, in arrival order (empty
    /// where a request had none).
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r.header(name).unwrap_or_default().to_owned())
            .collect()
    }

    /// Requests read so far (recorded or not).
    pub fn count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were read; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let until = Instant::now() + timeout;
        while self.count() < n {
            assert!(
                Instant::now() < until,
                "receiver got {} requests, expected {n} within {timeout:?}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.requests()
    }
}

fn next_reply(shared: &Shared, body: &[u8]) -> Reply {
    let mut script = shared
        .script
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, reply)) = script
        .refuse
        .iter()
        .find(|(text, _)| !text.is_empty() && body.windows(text.len()).any(|w| w == text))
    {
        return reply.clone();
    }
    if let Some(reply) = script.flaky.as_mut().and_then(Flaky::next) {
        return reply;
    }
    script
        .queued
        .pop_front()
        .or_else(|| script.default.clone())
        .unwrap_or_else(Reply::ok)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Serves requests on one connection until the client closes it.
async fn serve(mut stream: tokio_rustls::server::TlsStream<TcpStream>, shared: Arc<Shared>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let Some(request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        shared.count.fetch_add(1, Ordering::SeqCst);
        let reply = next_reply(&shared, &request.body);
        let mut request = request;
        request.replied = match &reply {
            Reply::Respond { status, .. } => Some(*status),
            Reply::Reset => None,
        };
        if shared.record.load(Ordering::SeqCst) {
            shared
                .requests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(request);
        }
        match reply {
            Reply::Reset => {
                // SO_LINGER 0: closing sends a TCP RST instead of a FIN.
                let _ = stream.get_ref().0.set_zero_linger();
                return;
            }
            Reply::Respond {
                status,
                delay,
                retry_after,
                body,
            } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mut head = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n",
                    reason(status),
                    body.len()
                );
                if let Some(value) = retry_after {
                    head.push_str(&format!("retry-after: {value}\r\n"));
                }
                head.push_str("\r\n");
                let mut out = head.into_bytes();
                out.extend_from_slice(body.as_bytes());
                if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads one HTTP/1.1 request (Content-Length bodies, as reqwest sends a
/// `Vec<u8>` body). `None` when the connection ends.
async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Option<Request> {
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Some(Request {
        method,
        target,
        headers,
        body,
        at: Instant::now(),
        replied: None,
    })
}
