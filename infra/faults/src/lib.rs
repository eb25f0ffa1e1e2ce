//! # platformsync-faults
//!
//! A loopback HTTP/1.1 proxy in front of the local AWS emulators (moto
//! server, or the LocalStack pair; see `infra/scripts/local-stack.sh`) that
//! makes chosen AWS operations fail over the wire, for a number of calls or
//! for a while, and counts every call per service and operation.
//!
//! Point an SDK client's endpoint (`AWS_ENDPOINT_URL`, or
//! `AWS_ENDPOINT_URL_<SERVICE>` for one service) at the proxy. Every request
//! is forwarded unchanged to the emulator serving its service ([`Upstreams`])
//! and its answer returned, except where a [`Rule`] says to fail it: then the
//! proxy answers itself, in the service's real wire format ([`wire`]), so the Rust AWS SDK parses and
//! classifies the error as it would the real service's (throttling and 5xx
//! retried by its retry strategy, AccessDenied and KMS not).
//!
//! ## Recognising calls ([`classify`])
//!
//! The service is the SigV4 credential scope's
//! (`Credential=.../us-east-1/dynamodb/aws4_request`), except DynamoDB
//! Streams, which sign as `dynamodb` and are named `streams.dynamodb` from
//! their `X-Amz-Target` prefix. The operation is the `X-Amz-Target` suffix
//! (JSON protocols: DynamoDB, Streams, SQS, Secrets Manager), the form body's
//! `Action=` (query protocols: SNS, CloudWatch query) or the rpcv2Cbor path
//! (CloudWatch). CloudWatch is `monitoring` (alias `cloudwatch`).
//!
//! ## Rules
//!
//! Rules are tried in order; the first **active** rule naming the call
//! decides: it lets the call through while its `after` count lasts, then
//! fails it with its [`Fault`]. A rule stops being active once it has failed
//! `times` calls, or `for_seconds` after it was installed. JSON (control
//! endpoint, `--rules FILE`), an array or `{"rules": [...]}`:
//!
//! ```json
//! [
//!   {"service": "dynamodb", "operation": "PutItem", "fault": "throttle", "times": 2},
//!   {"service": "sqs", "operation": "SendMessageBatch", "fault": "access_denied", "for_seconds": 30},
//!   {"service": "sns", "fault": {"hang": {"seconds": 10, "forward": false}}, "after": 3}
//! ]
//! ```
//!
//! Faults: `throttle`, `internal` (500), `unavailable` (503),
//! `access_denied`, `kms` (the codes each service really uses: see [`wire`]),
//! `{"error": {"status": 400, "code": "ThrottlingException", "query_code": ".."}}`
//! (any other error, in the service's protocol) and
//! `{"hang": {"seconds": S, "forward": true}}`. A hang holds the request S
//! seconds, then forwards it (`forward`, the default, even if the client gave
//! up: the call may take effect after the client's timeout, as with AWS; a
//! short hang is simply latency) or, with `"forward": false`, closes the
//! connection without an answer (the SDK sees an I/O error, which it retries
//! as transient) and the emulator never sees the request.
//!
//! ## Upstreams ([`Upstreams`])
//!
//! Each call goes to its service's own upstream when one is configured, else
//! to the default: [`FaultProxy::start`] has one upstream for everything,
//! [`FaultProxy::start_routed`] takes [`Upstreams`], and
//! [`Upstreams::from_env`] reads them as the Rust SDK reads endpoints:
//! `AWS_ENDPOINT_URL` the default, `AWS_ENDPOINT_URL_DYNAMODB`,
//! `_DYNAMODB_STREAMS`, `_SQS`, `_SNS`, `_SECRETS_MANAGER`, `_CLOUDWATCH`
//! ([`SERVICE_ENDPOINT_VARS`]) each its service's. On the LocalStack pair
//! that sends DynamoDB and its stream to moto and the rest to LocalStack,
//! from one proxy. A route naming the proxy itself is refused.
//!
//! ## Pointing clients at it
//!
//! Everything: `aws_config::defaults(..).endpoint_url(proxy.url())`. Set on
//! the loader, the endpoint is "programmatic" and wins over `AWS_ENDPOINT_URL`
//! and every `AWS_ENDPOINT_URL_<SERVICE>` of the environment (each client
//! consults the service variable only when the shared endpoint did not come
//! from code). `sdk_config.to_builder().endpoint_url(..)` does not: the
//! config keeps its origin "environment variable", and a service variable
//! still takes that service past the proxy (`tests/endpoint_precedence.rs`).
//! Out of process: `AWS_ENDPOINT_URL=<proxy url>` and every
//! `AWS_ENDPOINT_URL_<SERVICE>` the environment sets, or one service only
//! (the others keep talking to the emulator directly):
//! `AWS_ENDPOINT_URL_SQS=<proxy url>` and so on.
//!
//! The proxy forwards the `Host` header unchanged to whichever upstream, so
//! URLs an emulator builds from it (moto's SQS queue URLs) name the proxy;
//! LocalStack's (`SQS_ENDPOINT_STRATEGY=path`) name LocalStack. Either way
//! the SDKs only use them as identifiers and send them to their endpoint,
//! the proxy.
//!
//! ## In process
//!
//! ```no_run
//! # async fn demo() -> Result<(), platformsync_faults::FaultError> {
//! use platformsync_faults::{Fault, FaultProxy, Rule};
//! let proxy = FaultProxy::start("http://127.0.0.1:4566").await?;
//! // Or each service where this environment's SDK would send it:
//! // FaultProxy::start_routed(platformsync_faults::Upstreams::from_env()?).await?
//! proxy.add_rule(Rule::new("dynamodb", "PutItem", Fault::Throttle).times(2));
//! // aws_config::defaults(..).endpoint_url(proxy.url()) ...
//! let stats = proxy.stats();
//! assert_eq!(stats.failed("dynamodb", "PutItem"), 0);
//! # Ok(()) }
//! ```
//!
//! The proxy stops when the [`FaultProxy`] is dropped.
//!
//! ## Out of process
//!
//! `platformsync-faults [--upstream URL] [--route SERVICE=URL]... [--single-upstream] [--port P] [--rules FILE]`
//! prints `http://127.0.0.1:P` on its first stdout line and runs until
//! Ctrl-C / SIGTERM. `--upstream` defaults to `$AWS_ENDPOINT_URL`; each
//! `AWS_ENDPOINT_URL_<SERVICE>` set routes its service (unless
//! `--single-upstream`), `--route` wins over both. The control endpoint is
//! on the same port:
//!
//! ```sh
//! curl -s localhost:P/__faults                        # rules (with counters) + calls per operation
//! curl -s -XPOST localhost:P/__faults -d @rules.json  # replace the rules
//! curl -s -XPOST localhost:P/__faults/append -d '[{"service":"sqs","fault":"throttle","times":1}]'
//! curl -s -XDELETE localhost:P/__faults               # no rules, counters reset
//! curl -s -XDELETE localhost:P/__faults/stats         # counters reset, rules kept
//! ```
//!
//! Every successful control answer (200) is the stats JSON; refused rules get a 400 `{"error": ".."}`:
//! `{"rules": [{"rule": {..}, "matched": 3, "failed": 2, "active": false}],
//!   "calls": [{"service": "dynamodb", "operation": "PutItem", "calls": 3, "failed": 2}]}`.
//! From Rust, [`FaultControl`] does the same over HTTP.
//!
//! ## Chaos schedules
//!
//! [`Schedule::bursts`] turns a seed into a deterministic timeline of fault
//! bursts (which target, which fault, when, how long); [`Schedule::play`]
//! installs it on a proxy while the workload runs, and a schedule is
//! `Serialize` so a chaos run can log exactly what it injected:
//!
//! ```no_run
//! # async fn demo(proxy: platformsync_faults::FaultProxy) {
//! use std::time::Duration;
//! use platformsync_faults::{Fault, Schedule};
//! let schedule = Schedule::bursts(
//!     42,
//!     &[("sqs", "SendMessageBatch"), ("dynamodb", "*")],
//!     &[Fault::Throttle, Fault::Internal, Fault::Hang { seconds: 5.0, forward: true }],
//!     Duration::from_secs(600),  // total
//!     Duration::from_secs(20),   // mean burst
//!     Duration::from_secs(60),   // mean quiet gap
//! );
//! // tokio::join!(schedule.play(&proxy), workload());
//! # schedule.play(&proxy).await;
//! # }
//! ```
//!
//! Only plain-HTTP upstreams (moto, LocalStack on loopback) are supported.

pub mod classify;
pub mod control;
pub mod rules;
pub mod schedule;
mod server;
pub mod upstreams;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use classify::{Call, Protocol};
pub use control::{ControlError, FaultControl};
pub use rules::{Fault, OperationStats, Rule, RuleStats, Stats, parse_rules};
pub use schedule::Schedule;
pub use server::CONTROL_PATH;
pub use upstreams::{SERVICE_ENDPOINT_VARS, Upstreams};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("upstream must be an http://host:port URL, got {0:?}")]
    InvalidUpstream(String),
    #[error("no upstream: AWS_ENDPOINT_URL is not set")]
    NoUpstream,
    #[error("upstream {0} is the proxy itself (an AWS_ENDPOINT_URL_<SERVICE> naming the proxy?)")]
    Loop(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running fault proxy; stops (and closes its connections) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    upstreams: Upstreams,
    shared: Arc<server::Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding every service to
    /// `upstream` (`http://127.0.0.1:4566`). Must be called inside a tokio
    /// runtime, which then runs the proxy.
    pub async fn start(upstream: &str) -> Result<Self, FaultError> {
        Self::start_on(upstream, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Like [`FaultProxy::start`], on a chosen address (port 0: any free one).
    pub async fn start_on(upstream: &str, addr: SocketAddr) -> Result<Self, FaultError> {
        Self::start_routed_on(Upstreams::new(upstream), addr).await
    }

    /// Starts a proxy on `127.0.0.1:<free port>` forwarding each service to
    /// its own upstream when `upstreams` has one, else to the default:
    /// `FaultProxy::start_routed(Upstreams::from_env()?)` sends each call
    /// where the SDK would have sent it from this environment (the LocalStack
    /// pair: DynamoDB and its stream to moto, the rest to LocalStack).
    pub async fn start_routed(upstreams: Upstreams) -> Result<Self, FaultError> {
        Self::start_routed_on(upstreams, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Like [`FaultProxy::start_routed`], on a chosen address.
    pub async fn start_routed_on(
        upstreams: Upstreams,
        addr: SocketAddr,
    ) -> Result<Self, FaultError> {
        let default = upstream_authority(upstreams.default_url())?;
        let mut services = std::collections::HashMap::new();
        for (service, url) in upstreams.routes() {
            services.insert(service.to_owned(), upstream_authority(url)?);
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| FaultError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| FaultError::Bind { addr, source })?;
        // A proxy forwarding to itself would take every call round until the
        // descriptors ran out.
        for authority in std::iter::once(&default).chain(services.values()) {
            if is_self(authority, addr) {
                return Err(FaultError::Loop(authority.clone()));
            }
        }
        let shared = Arc::new(server::Shared::new(server::Routes { default, services }));
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(server::serve(listener, shared.clone(), stopped));
        Ok(Self {
            addr,
            upstreams,
            shared,
            stop: Some(stop),
        })
    }

    /// Where the proxy forwards each service.
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the endpoint URL to give SDK clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the rules (their windows start now); counters of calls per
    /// operation are kept.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.shared.state().set_rules(rules, Instant::now());
    }

    /// Appends a rule (its window starts now), after the existing ones.
    pub fn add_rule(&self, rule: Rule) {
        self.shared.state().add_rule(rule, Instant::now());
    }

    /// Removes every rule and resets every counter.
    pub fn clear(&self) {
        let mut state = self.shared.state();
        state.clear_rules();
        state.reset_counts();
    }

    /// Resets the counters (per rule and per operation), keeping the rules.
    pub fn reset_stats(&self) {
        self.shared.state().reset_counts();
    }

    /// The rules with their counters, and the calls seen per operation.
    pub fn stats(&self) -> Stats {
        self.shared.state().stats(Instant::now())
    }

    /// Hands every call forwarded from now on (not the failed ones) to
    /// `observer`, with the request and the emulator's answer, once the
    /// answer is read whole: what a cost model needs beyond the counts
    /// (DynamoDB item sizes, SQS payload sizes, messages received). The
    /// callback runs on the proxy's task: keep it short.
    pub fn observe(&self, observer: impl Fn(&Exchange<'_>) + Send + Sync + 'static) {
        self.shared.set_observer(Some(Arc::new(observer)));
    }

    /// No observer any more: answers stream through again.
    pub fn stop_observing(&self) {
        self.shared.set_observer(None);
    }
}

/// One call the proxy forwarded, as [`FaultProxy::observe`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub call: &'a Call,
    /// The emulator's HTTP status.
    pub status: u16,
    /// The request body, as the client sent it.
    pub request: &'a [u8],
    /// The answer's body, as the emulator sent it.
    pub response: &'a [u8],
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstreams", &self.upstreams)
            .finish()
    }
}

/// `host:port` of an `http://` upstream URL (a path, if any, is ignored:
/// AWS protocols post to `/` or absolute paths).
fn upstream_authority(upstream: &str) -> Result<String, FaultError> {
    let invalid = || FaultError::InvalidUpstream(upstream.to_owned());
    let uri: hyper::Uri = upstream.trim().parse().map_err(|_| invalid())?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid());
    }
    let authority = uri.authority().ok_or_else(invalid)?;
    if authority.as_str().contains('@') {
        return Err(invalid());
    }
    Ok(match authority.port_u16() {
        Some(_) => authority.as_str().to_owned(),
        None => format!("{}:80", authority.host()),
    })
}

/// Whether `authority` (`host:port`) names the proxy listening on `addr`.
fn is_self(authority: &str, addr: SocketAddr) -> bool {
    let Some((host, port)) = authority.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    port.parse() == Ok(addr.port())
        && (host == addr.ip().to_string()
            || host.eq_ignore_ascii_case("localhost")
            || host == "127.0.0.1"
            || host == "::1"
            || host == "0.0.0.0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams() {
        assert_eq!(
            upstream_authority("http://127.0.0.1:4566").unwrap(),
            "127.0.0.1:4566"
        );
        assert_eq!(
            upstream_authority("http://localhost/").unwrap(),
            "localhost:80"
        );
        assert!(upstream_authority("https://127.0.0.1:4566").is_err());
        assert!(upstream_authority("127.0.0.1:4566").is_err());
        assert!(upstream_authority("http://u:p@127.0.0.1:1").is_err());
    }

    #[test]
    fn loops_are_recognised() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 4000));
        assert!(is_self("127.0.0.1:4000", addr));
        assert!(is_self("localhost:4000", addr));
        assert!(!is_self("127.0.0.1:4001", addr));
        assert!(!is_self("10.0.0.1:4000", addr));
    }

    /// An upstream that answers every request with `answer` (JSON 200).
    async fn answering(answer: &'static str) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tcp.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = tcp.write_all(reply.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn an_observer_sees_each_forwarded_call_with_both_bodies() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = answering(r#"{"Item":{}}"#).await;
        let proxy = FaultProxy::start(&format!("http://{upstream}"))
            .await
            .unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        proxy.observe(move |e| {
            sink.lock().unwrap().push((
                e.call.service.clone(),
                e.call.operation.clone(),
                e.status,
                e.request.to_vec(),
                e.response.to_vec(),
            ))
        });
        let body = r#"{"TableName":"t"}"#;
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        let request = format!(
            "POST / HTTP/1.1\r\nhost: localhost\r\nx-amz-target: DynamoDB_20120810.GetItem\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        assert!(answer.ends_with(r#"{"Item":{}}"#), "{answer}");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![(
                "dynamodb".to_owned(),
                "GetItem".to_owned(),
                200,
                body.as_bytes().to_vec(),
                br#"{"Item":{}}"#.to_vec()
            )]
        );
        assert_eq!(proxy.stats().calls("dynamodb", "GetItem"), 1);
    }

    #[tokio::test]
    async fn a_proxy_refuses_to_forward_to_itself() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let upstreams = Upstreams::new("http://127.0.0.1:9").route("sqs", format!("http://{addr}"));
        assert!(matches!(
            FaultProxy::start_routed_on(upstreams, addr).await,
            Err(FaultError::Loop(_))
        ));
    }
}
