//! The HTTPS server: TLS accept loop, the push handler and the control API.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::chaos::{Chaos, Draw, FailureRates, Outage, Outcome, PushRequest, digest};
use crate::key::Presented;
use crate::{Faults, ReceivedBatch, Shared, Signature};

/// Larger than any batch PlatformSync sends (1000 transactions, well under 1 MB).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

const CONTROL_PREFIX: &str = "/_control";

type Answer = Response<Full<Bytes>>;

/// Accepts connections until `stopped` fires (or its sender is dropped);
/// then every open connection is closed too.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    // Dropping the set at the end aborts every connection task: a stopped
    // receiver must look down to clients, not keep serving kept-alive sockets.
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(_) => continue,
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        connections.spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |req| handle(req, peer, shared.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Answer {
    answer(status, json!({ "error": message }))
}

/// Why a connection is closed without an answer: a dropped connection, on
/// purpose (the failure rates). hyper closes the connection when the
/// service fails.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Result<Answer, DropConnection> {
    let path = req.uri().path().to_owned();
    if path == CONTROL_PREFIX || path.starts_with("/_control/") {
        return Ok(control(req, peer, &shared).await);
    }
    let mut log = Logged {
        shared: &shared,
        entry: Some(PushRequest {
            path: path.clone(),
            message_id: None,
            received_at: now(),
            status: 0,
            outcome: Outcome::Abandoned,
            records: 0,
            digest: None,
            delayed_seconds: 0.0,
            sender_left: false,
            signature: None,
        }),
    };
    let result = push(req, path, &shared, &mut log).await;
    log.finish(&result);
    result
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The log entry of one push request: written when the answer is known,
/// or as `Abandoned` if the sender goes away first (hyper then drops the
/// request's future, and this with it).
struct Logged<'a> {
    shared: &'a Shared,
    entry: Option<PushRequest>,
}

impl Logged<'_> {
    fn set(&mut self, change: impl FnOnce(&mut PushRequest)) {
        if let Some(entry) = self.entry.as_mut() {
            change(entry);
        }
    }

    fn finish(&mut self, result: &Result<Answer, DropConnection>) {
        let status = result.as_ref().map_or(0, |a| a.status().as_u16());
        self.set(|e| e.status = status);
        if let Some(entry) = self.entry.take() {
            self.shared.lock().requests.push(entry);
        }
    }
}

impl Drop for Logged<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.shared.lock().requests.push(entry);
        }
    }
}

/// A push from PlatformSync.
async fn push(
    req: Request<Incoming>,
    path: String,
    shared: &Shared,
    log: &mut Logged<'_>,
) -> Result<Answer, DropConnection> {
    if req.method() != Method::POST {
        log.set(|e| e.outcome = Outcome::BadRequest);
        return Ok(error(StatusCode::METHOD_NOT_ALLOWED, "POST a push payload"));
    }
    if let Some(status) = outage(shared, &path) {
        log.set(|e| e.outcome = Outcome::Outage);
        return Ok(error(status, "endpoint down (/_control/outage)"));
    }
    let slow = shared.lock().faults.slow;
    if !slow.is_zero() {
        tokio::time::sleep(slow).await;
    }
    if let Some(status) = injected_failure(shared) {
        log.set(|e| e.outcome = Outcome::Injected);
        return Ok(error(status, "failure injected through /_control/fail"));
    }

    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(bad_request(shared, log, "body unreadable or too large")),
    };
    // Over the raw bytes, before anything parses them: what was signed is
    // exactly what was sent.
    if let Some(check) = &shared.signing {
        let verdict = check.verify(&bytes, &parts.headers);
        log.set(|e| e.signature = Some(verdict));
        if verdict == Signature::Failed {
            shared.lock().summary.bad_signatures += 1;
            log.set(|e| e.outcome = Outcome::BadSignature);
            return Ok(error(
                StatusCode::UNAUTHORIZED,
                "missing or bad webhook-signature, or webhook-timestamp too far from now",
            ));
        }
    }
    // Top-level properties as raw JSON: decimals keep their exact digits.
    let Ok(top) = serde_json::from_slice::<BTreeMap<String, Box<RawValue>>>(&bytes) else {
        return Ok(bad_request(shared, log, "body is not a JSON object"));
    };
    let mut metadata: serde_json::Map<String, serde_json::Value> = match top.get("Metadata") {
        Some(raw) => match serde_json::from_str(raw.get()) {
            Ok(m) => m,
            Err(_) => return Ok(bad_request(shared, log, "Metadata is not an object")),
        },
        None => serde_json::Map::new(),
    };

    if let Some(check) = &shared.key {
        let presented = Presented {
            headers: &parts.headers,
            query: parts.uri.query(),
            body: &top,
            metadata: &metadata,
        };
        if !check.accepts(&presented) {
            shared.lock().summary.unauthorized += 1;
            log.set(|e| e.outcome = Outcome::Unauthorized);
            return Ok(error(StatusCode::UNAUTHORIZED, "missing or wrong API key"));
        }
        // Never record the key.
        if check.placement == crate::Placement::Metadata {
            metadata.remove(&check.name);
        }
    }

    let Some(message_id) = metadata
        .remove("MessageId")
        .and_then(|v| v.as_str().map(str::to_owned))
    else {
        return Ok(bad_request(shared, log, "Metadata.MessageId is missing"));
    };
    log.set(|e| e.message_id = Some(message_id.clone()));
    let correlation_id = metadata
        .remove("CorrelationId")
        .and_then(|v| v.as_str().map(str::to_owned));
    let (kind, items) = match (top.get("Transactions"), top.get("AuditTransactions")) {
        (Some(items), None) => ("Transactions", items),
        (None, Some(items)) => ("AuditTransactions", items),
        _ => {
            return Ok(bad_request(
                shared,
                log,
                "expected exactly one of Transactions and AuditTransactions",
            ));
        }
    };
    let Ok(transactions) = serde_json::from_str::<Vec<Box<RawValue>>>(items.get()) else {
        return Ok(bad_request(
            shared,
            log,
            "the transactions are not a JSON array",
        ));
    };
    let records = transactions.len() as u64;
    let body_digest = digest(&transactions);
    log.set(|e| {
        e.records = records;
        e.digest = Some(body_digest);
    });

    // The failure rates: drawn once the push is known to be a real one, so
    // a wrong key is always a 401 and a malformed body always a 400.
    let draw = shared.lock().faults.chaos.draw();
    let mut late = Duration::ZERO;
    match draw {
        Draw::Normal => {}
        Draw::Drop => {
            shared.lock().summary.dropped += 1;
            log.set(|e| e.outcome = Outcome::Dropped);
            return Err(DropConnection);
        }
        Draw::Error => {
            shared.lock().summary.injected_failures += 1;
            log.set(|e| e.outcome = Outcome::Injected);
            return Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "failure injected (error rate)",
            ));
        }
        Draw::Created => {
            // Not 200, so PlatformSync must count it as failed and retry.
            shared.lock().summary.created += 1;
            log.set(|e| e.outcome = Outcome::Created);
            return Ok(answer(
                StatusCode::CREATED,
                json!({ "status": "created (failure injected: not a 200)" }),
            ));
        }
        Draw::Slow(delay) => {
            shared.lock().summary.slow_answers += 1;
            log.set(|e| e.delayed_seconds = delay.as_secs_f64());
            late = delay;
        }
    }

    let batch = ReceivedBatch {
        message_id,
        correlation_id,
        path,
        received_at: now(),
        kind: kind.to_owned(),
        metadata,
        transactions,
    };
    let (answer, outcome) = record(shared, batch);
    log.set(|e| e.outcome = outcome);
    if !late.is_zero() {
        // A slow answer: stored first, answered late, as a receiver that
        // commits and then stalls. If the sender gives up meanwhile, the
        // batch is still recorded (and its retry must be a repeat of the
        // same MessageId); the log entry says the sender left.
        log.set(|e| {
            e.status = answer.status().as_u16();
            e.sender_left = true;
        });
        tokio::time::sleep(late).await;
        log.set(|e| e.sender_left = false);
    }
    Ok(answer)
}

fn bad_request(shared: &Shared, log: &mut Logged<'_>, message: &str) -> Answer {
    shared.lock().summary.bad_requests += 1;
    log.set(|e| e.outcome = Outcome::BadRequest);
    error(StatusCode::BAD_REQUEST, message)
}

/// The status to answer on `path` if it is in an outage.
fn outage(shared: &Shared, path: &str) -> Option<StatusCode> {
    let mut inner = shared.lock();
    let status = inner
        .faults
        .outages
        .get(path)
        .filter(|o| Instant::now() < o.until)
        .map(|o| o.status)?;
    inner.summary.outage_failures += 1;
    Some(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
}

/// The status to fail this push with, if a fault is active.
fn injected_failure(shared: &Shared) -> Option<StatusCode> {
    let mut inner = shared.lock();
    let faults = &mut inner.faults;
    let status = if faults
        .fail_until
        .is_some_and(|until| Instant::now() < until)
    {
        Some(faults.fail_until_status)
    } else if faults.fail_next > 0 {
        faults.fail_next -= 1;
        Some(faults.fail_next_status)
    } else {
        None
    }?;
    inner.summary.injected_failures += 1;
    Some(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
}

/// Records a new batch (file first, then memory) or drops a repeat.
fn record(shared: &Shared, batch: ReceivedBatch) -> (Answer, Outcome) {
    let mut inner = shared.lock();
    if inner.seen.contains(&batch.message_id) {
        inner.summary.duplicates_dropped += 1;
        let answer = answer(
            StatusCode::OK,
            json!({ "status": "duplicate", "MessageId": batch.message_id }),
        );
        return (answer, Outcome::Repeat);
    }
    if let Some(log) = &shared.log {
        let written = serde_json::to_string(&batch)
            .map_err(std::io::Error::other)
            .and_then(|line| {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)?;
                writeln!(file, "{line}")?;
                file.flush()
            });
        if written.is_err() {
            // Not recorded, so not delivered: PlatformSync will retry.
            let answer = error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not record the batch",
            );
            return (answer, Outcome::NotStored);
        }
    }
    let count = batch.transactions.len() as u64;
    let summary = &mut inner.summary;
    summary.batches += 1;
    let per_path = summary.paths.entry(batch.path.clone()).or_default();
    per_path.batches += 1;
    if batch.kind == "Transactions" {
        summary.transactions += count;
        per_path.transactions += count;
    } else {
        summary.audit_transactions += count;
        per_path.audit_transactions += count;
    }
    let response = json!({ "status": "recorded", "MessageId": batch.message_id, "Count": count });
    inner.seen.insert(batch.message_id.clone());
    inner.received.push(batch);
    (answer(StatusCode::OK, response), Outcome::Recorded)
}

pub(crate) fn set_fail_count(shared: &Shared, count: u32, status: u16) {
    let mut inner = shared.lock();
    inner.faults.fail_next = count;
    inner.faults.fail_next_status = status;
}

pub(crate) fn set_fail_for(shared: &Shared, duration: Duration, status: u16) {
    let mut inner = shared.lock();
    inner.faults.fail_until = (!duration.is_zero()).then(|| Instant::now() + duration);
    inner.faults.fail_until_status = status;
}

pub(crate) fn set_outage(shared: &Shared, path: &str, duration: Duration, status: u16) {
    let mut inner = shared.lock();
    if duration.is_zero() {
        inner.faults.outages.remove(path);
    } else {
        let until = Instant::now() + duration;
        inner
            .faults
            .outages
            .insert(path.to_owned(), Outage { until, status });
    }
}

pub(crate) fn reset(shared: &Shared) {
    let mut inner = shared.lock();
    inner.faults = Faults::default();
    inner.seen.clear();
    inner.received.clear();
    inner.requests.clear();
    inner.summary = Default::default();
    if let Some(log) = &shared.log {
        let _ = std::fs::write(log, b"");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailRequest {
    count: Option<u32>,
    seconds: Option<f64>,
    status: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutageRequest {
    path: String,
    seconds: f64,
    status: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlowRequest {
    seconds: f64,
}

fn seconds(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s).ok()
}

/// The control API: loopback only, no key.
async fn control(req: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Answer {
    if !peer.ip().is_loopback() {
        return error(
            StatusCode::FORBIDDEN,
            "the control API answers loopback only",
        );
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "body unreadable or too large"),
    };
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    match (&method, path.trim_start_matches(CONTROL_PREFIX)) {
        (&Method::GET, "/received") => answer(StatusCode::OK, json!(shared.lock().summary.clone())),
        (&Method::GET, "/batches") => answer(StatusCode::OK, json!(shared.lock().received)),
        (&Method::GET, "/requests") => answer(StatusCode::OK, json!(shared.lock().requests)),
        (&Method::POST, "/chaos") => {
            let rates: FailureRates = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            if let Err(e) = rates.check() {
                return error(StatusCode::BAD_REQUEST, &e);
            }
            shared.lock().faults.chaos = Chaos::new(rates);
            answer(StatusCode::OK, json!({ "status": "ok" }))
        }
        (&Method::POST, "/outage") => {
            let request: OutageRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let status = request.status.unwrap_or(503);
            if !(100..=599).contains(&status) {
                return error(StatusCode::BAD_REQUEST, "status must be 100 to 599");
            }
            let Some(duration) = seconds(request.seconds) else {
                return error(StatusCode::BAD_REQUEST, "seconds must be >= 0");
            };
            set_outage(shared, &request.path, duration, status);
            answer(StatusCode::OK, json!({ "status": "ok" }))
        }
        (&Method::POST, "/fail") => {
            let request: FailRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let status = request.status.unwrap_or(500);
            if StatusCode::from_u16(status).is_err() || !(100..=599).contains(&status) {
                return error(StatusCode::BAD_REQUEST, "status must be 100 to 599");
            }
            match (request.count, request.seconds) {
                (Some(count), None) => set_fail_count(shared, count, status),
                (None, Some(s)) => match seconds(s) {
                    Some(d) => set_fail_for(shared, d, status),
                    None => return error(StatusCode::BAD_REQUEST, "seconds must be >= 0"),
                },
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "give exactly one of \"count\" and \"seconds\"",
                    );
                }
            }
            answer(StatusCode::OK, json!({ "status": "ok" }))
        }
        (&Method::POST, "/slow") => {
            let request: SlowRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let Some(delay) = seconds(request.seconds) else {
                return error(StatusCode::BAD_REQUEST, "seconds must be >= 0");
            };
            shared.lock().faults.slow = delay;
            answer(StatusCode::OK, json!({ "status": "ok" }))
        }
        (&Method::POST, "/reset") => {
            reset(shared);
            answer(StatusCode::OK, json!({ "status": "ok" }))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "control API: GET /_control/received, GET /_control/batches, GET /_control/requests, POST /_control/fail, POST /_control/slow, POST /_control/chaos, POST /_control/outage, POST /_control/reset",
        ),
    }
}
