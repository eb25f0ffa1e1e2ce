//! A reference customer endpoint for PlatformSync pushes.
//!
//! Small on purpose: a customer can copy it as the starting point of their
//! own receiver. It shows the three things every receiver must do:
//!
//! 1. **Check the API key** where the endpoint's settings put it
//!    ([`Placement`]), and answer `401` otherwise.
//! 2. **Answer `200` only once the batch is safely recorded.** PlatformSync
//!    counts only `200` as delivered and retries anything else for 24 hours.
//! 3. **Drop a repeated `Metadata.MessageId`**: a batch is retried with the
//!    same `MessageId`, so a repeat (after a lost answer, say) is answered
//!    `200` and not recorded twice.
//! 4. **Verify signed pushes** (when given the endpoint's signing secrets,
//!    [`SignatureCheck`]): the Standard Webhooks headers, checked with the
//!    published `standardwebhooks` crate over the raw body; a bad or
//!    missing signature, or a timestamp more than 5 minutes off, is `401`.
//!
//! For demos and tests it also records what arrived (`received.jsonl`, one
//! JSON line per batch) and can be told to misbehave through a control API
//! under `/_control`, reachable only from loopback and without a key:
//!
//! | request | effect |
//! |---|---|
//! | `POST /_control/fail {"count": N, "status": 500}` | fail the next N pushes |
//! | `POST /_control/fail {"seconds": T, "status": 503}` | fail every push for T seconds |
//! | `POST /_control/slow {"seconds": S}` | delay every push's answer by S seconds (0: off) |
//! | `POST /_control/reset` | forget everything: faults, delays, received batches, seen ids |
//! | `GET /_control/received` | [`Summary`]: batches, transactions, per path, duplicates dropped |
//! | `GET /_control/batches` | every recorded [`ReceivedBatch`], in arrival order |
//! | `POST /_control/chaos {"seed": 7, "error_rate": 0.05, ...}` | fail pushes at random, repeatably ([`FailureRates`]) |
//! | `POST /_control/outage {"path": "/acme", "seconds": 120, "status": 503}` | one path down for a while |
//! | `GET /_control/requests` | every push request and what became of it ([`PushRequest`]), repeats included |
//!
//! Embed it with [`Receiver::start`]; run it with the `platformsync-receiver`
//! binary.

mod chaos;
mod key;
mod server;
mod signature;
pub mod tls;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use chaos::{FailureRates, Outcome, PushRequest};
pub use key::{KeyCheck, Placement};
pub use signature::{Signature, SignatureCheck};

/// File (in the state directory) with one JSON line per recorded batch.
pub const RECEIVED_FILE: &str = "received.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// How to run a receiver.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// Where `ca.pem`, the server certificate and `received.jsonl` live;
    /// `None` keeps everything in memory (a fresh CA every start).
    pub state_dir: Option<PathBuf>,
    /// The key to require; `None` accepts any request (say so loudly).
    pub key: Option<KeyCheck>,
    /// The signing secrets to verify pushes with; `None`: pushes are not
    /// expected to be signed (their signature headers are ignored).
    pub signing: Option<SignatureCheck>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            key: None,
            signing: None,
        }
    }
}

/// One batch as it arrived (also the line format of `received.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceivedBatch {
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Request path (without the query string).
    pub path: String,
    /// RFC 3339, UTC.
    pub received_at: String,
    /// `Transactions` or `AuditTransactions`.
    pub kind: String,
    /// The rest of `Metadata` (`Version`, the endpoint's metadata), never the key.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The records exactly as received (decimals keep their digits).
    pub transactions: Vec<Box<RawValue>>,
}

impl ReceivedBatch {
    /// The records parsed as JSON values (convenient; decimals become `f64`).
    pub fn values(&self) -> Vec<serde_json::Value> {
        self.transactions
            .iter()
            .filter_map(|raw| serde_json::from_str(raw.get()).ok())
            .collect()
    }
}

/// Counts for one request path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathCounts {
    pub batches: u64,
    pub transactions: u64,
    pub audit_transactions: u64,
}

/// What `GET /_control/received` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Distinct batches recorded.
    pub batches: u64,
    /// Records in `Transactions` batches.
    pub transactions: u64,
    /// Records in `AuditTransactions` batches.
    pub audit_transactions: u64,
    /// Repeated `MessageId`s answered 200 and not recorded.
    pub duplicates_dropped: u64,
    /// Requests refused for a missing or wrong key (401).
    pub unauthorized: u64,
    /// Requests refused for a missing or bad signature (401).
    #[serde(default)]
    pub bad_signatures: u64,
    /// Requests that were not a push payload (400).
    pub bad_requests: u64,
    /// Requests failed on purpose (`/_control/fail`, or the error rate).
    pub injected_failures: u64,
    /// Requests answered 201 on purpose (the failure rates).
    #[serde(default)]
    pub created: u64,
    /// Connections dropped on purpose without an answer (the failure rates).
    #[serde(default)]
    pub dropped: u64,
    /// Requests refused because their path was in an outage.
    #[serde(default)]
    pub outage_failures: u64,
    /// Answers held back on purpose (the failure rates' slow answers).
    #[serde(default)]
    pub slow_answers: u64,
    pub paths: BTreeMap<String, PathCounts>,
}

/// Faults and delays requested through the control API.
#[derive(Debug, Clone, Default)]
struct Faults {
    fail_next: u32,
    fail_next_status: u16,
    fail_until: Option<Instant>,
    fail_until_status: u16,
    slow: Duration,
    chaos: chaos::Chaos,
    outages: chaos::Outages,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashSet<String>,
    received: Vec<ReceivedBatch>,
    requests: Vec<PushRequest>,
    summary: Summary,
    faults: Faults,
}

/// State shared by every connection.
#[derive(Debug)]
struct Shared {
    key: Option<KeyCheck>,
    signing: Option<SignatureCheck>,
    log: Option<PathBuf>,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent counters; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts receivers.
pub struct Receiver;

impl Receiver {
    /// Binds, makes (or reuses) the certificate, and serves in the background
    /// until [`ReceiverHandle::shutdown`] or the handle is dropped.
    pub async fn start(config: Config) -> Result<ReceiverHandle, ReceiverError> {
        let material = match &config.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| ReceiverError::Io {
                    path: dir.clone(),
                    source: e,
                })?;
                tls::load_or_create(dir)?
            }
            None => tls::generate()?,
        };
        let tls_config = tls::server_config(&material)?;
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|e| ReceiverError::Bind {
                addr: config.bind,
                source: e,
            })?;
        let addr = listener.local_addr().map_err(|e| ReceiverError::Bind {
            addr: config.bind,
            source: e,
        })?;
        let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
            "127.0.0.1".to_owned()
        } else {
            addr.ip().to_string()
        };
        let shared = Arc::new(Shared {
            key: config.key,
            signing: config.signing,
            log: config.state_dir.as_ref().map(|d| d.join(RECEIVED_FILE)),
            inner: Mutex::new(Inner::default()),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server::serve(listener, tls_config, shared.clone(), stopped));
        Ok(ReceiverHandle {
            url: format!("https://{host}:{}", addr.port()),
            addr,
            ca_pem: material.ca_pem,
            ca_path: config.state_dir.map(|d| d.join(tls::CA_FILE)),
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running receiver. Dropping it stops the server and every open connection.
#[derive(Debug)]
pub struct ReceiverHandle {
    /// `https://127.0.0.1:<port>`; append any path (each endpoint its own).
    pub url: String,
    pub addr: SocketAddr,
    /// The CA certificate (PEM) to trust.
    pub ca_pem: String,
    /// Where `ca.pem` was written (with a state directory).
    pub ca_path: Option<PathBuf>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ReceiverHandle {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn summary(&self) -> Summary {
        self.shared.lock().summary.clone()
    }

    /// Every recorded batch, in arrival order.
    pub fn received(&self) -> Vec<ReceivedBatch> {
        self.shared.lock().received.clone()
    }

    /// Fail the next `count` pushes with `status`.
    pub fn fail_next(&self, count: u32, status: u16) {
        server::set_fail_count(&self.shared, count, status);
    }

    /// Fail every push with `status` for `duration`.
    pub fn fail_for(&self, duration: Duration, status: u16) {
        server::set_fail_for(&self.shared, duration, status);
    }

    /// Delay every push's answer by `delay` (zero: off).
    pub fn slow(&self, delay: Duration) {
        self.shared.lock().faults.slow = delay;
    }

    /// Every push request so far, in arrival order, whatever its answer:
    /// repeats, failures and dropped connections included.
    pub fn requests(&self) -> Vec<PushRequest> {
        self.shared.lock().requests.clone()
    }

    /// Fail pushes at random at these rates (all zero: off). Refuses rates
    /// that do not make sense.
    pub fn set_failure_rates(&self, rates: FailureRates) -> Result<(), String> {
        rates.check()?;
        self.shared.lock().faults.chaos = chaos::Chaos::new(rates);
        Ok(())
    }

    /// Fail every push to `path` with `status` for `duration` (zero: end
    /// the outage now).
    pub fn outage(&self, path: &str, duration: Duration, status: u16) {
        server::set_outage(&self.shared, path, duration, status);
    }

    /// Forget faults, delays, received batches and seen ids; truncate `received.jsonl`.
    pub fn reset(&self) {
        server::reset(&self.shared);
    }

    /// Stops accepting, closes every connection, and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ReceiverHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
