//! The HTTPS server: TLS accept loop, the push handler and the control API.

use std::collections::BTreeMap;
use std::convert::Infallible;
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

use crate::key::Presented;
use crate::{Faults, ReceivedBatch, Shared};

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

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Result<Answer, Infallible> {
    let path = req.uri().path().to_owned();
    if path == CONTROL_PREFIX || path.starts_with("/_control/") {
        return Ok(control(req, peer, &shared).await);
    }
    Ok(push(req, path, &shared).await)
}

/// A push from PlatformSync.
async fn push(req: Request<Incoming>, path: String, shared: &Shared) -> Answer {
    if req.method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "POST a push payload");
    }
    let slow = shared.lock().faults.slow;
    if !slow.is_zero() {
        tokio::time::sleep(slow).await;
    }
    if let Some(status) = injected_failure(shared) {
        return error(status, "failure injected through /_control/fail");
    }

    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return bad_request(shared, "body unreadable or too large"),
    };
    // Top-level properties as raw JSON: decimals keep their exact digits.
    let Ok(top) = serde_json::from_slice::<BTreeMap<String, Box<RawValue>>>(&bytes) else {
        return bad_request(shared, "body is not a JSON object");
    };
    let mut metadata: serde_json::Map<String, serde_json::Value> = match top.get("Metadata") {
        Some(raw) => match serde_json::from_str(raw.get()) {
            Ok(m) => m,
            Err(_) => return bad_request(shared, "Metadata is not an object"),
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
            return error(StatusCode::UNAUTHORIZED, "missing or wrong API key");
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
        return bad_request(shared, "Metadata.MessageId is missing");
    };
    let correlation_id = metadata
        .remove("CorrelationId")
        .and_then(|v| v.as_str().map(str::to_owned));
    let (kind, items) = match (top.get("Transactions"), top.get("AuditTransactions")) {
        (Some(items), None) => ("Transactions", items),
        (None, Some(items)) => ("AuditTransactions", items),
        _ => {
            return bad_request(
                shared,
                "expected exactly one of Transactions and AuditTransactions",
            );
        }
    };
    let Ok(transactions) = serde_json::from_str::<Vec<Box<RawValue>>>(items.get()) else {
        return bad_request(shared, "the transactions are not a JSON array");
    };

    let batch = ReceivedBatch {
        message_id,
        correlation_id,
        path,
        received_at: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        kind: kind.to_owned(),
        metadata,
        transactions,
    };
    record(shared, batch)
}

fn bad_request(shared: &Shared, message: &str) -> Answer {
    shared.lock().summary.bad_requests += 1;
    error(StatusCode::BAD_REQUEST, message)
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
fn record(shared: &Shared, batch: ReceivedBatch) -> Answer {
    let mut inner = shared.lock();
    if inner.seen.contains(&batch.message_id) {
        inner.summary.duplicates_dropped += 1;
        return answer(
            StatusCode::OK,
            json!({ "status": "duplicate", "MessageId": batch.message_id }),
        );
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
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not record the batch",
            );
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
    answer(StatusCode::OK, response)
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

pub(crate) fn reset(shared: &Shared) {
    let mut inner = shared.lock();
    inner.faults = Faults::default();
    inner.seen.clear();
    inner.received.clear();
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
            "control API: GET /_control/received, GET /_control/batches, POST /_control/fail, POST /_control/slow, POST /_control/reset",
        ),
    }
}
