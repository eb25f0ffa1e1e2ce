//! The proxy's HTTP side: accept loop, forwarding, injected failures and the
//! control endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::classify::classify;
use crate::rules::{Fault, State, parse_rules};
use crate::wire::error_response;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// The control endpoint's path (same port as the proxy).
pub const CONTROL_PATH: &str = "/__faults";

/// Larger than any AWS request the project sends (DynamoDB batch writes are
/// at most 16 MB); the proxy reads whole requests to see `Action=`.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// `host:port` of the emulator serving each service.
pub(crate) struct Routes {
    pub(crate) default: String,
    /// Canonical service name -> its own upstream.
    pub(crate) services: HashMap<String, String>,
}

impl Routes {
    fn authority(&self, service: &str) -> &str {
        self.services.get(service).unwrap_or(&self.default)
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    client: Client<HttpConnector, Full<Bytes>>,
    routes: Routes,
    next_request_id: AtomicU64,
    /// Sees every forwarded call with both bodies (cost accounting); while
    /// one is set, answers are read whole before they are returned.
    observer: Mutex<Option<Observer>>,
}

/// A callback given every call the proxy forwarded, with both bodies.
pub(crate) type Observer = Arc<dyn Fn(&crate::Exchange<'_>) + Send + Sync>;

impl Shared {
    pub(crate) fn new(routes: Routes) -> Self {
        Self {
            state: Mutex::new(State::default()),
            client: Client::builder(TokioExecutor::new()).build_http(),
            routes,
            next_request_id: AtomicU64::new(1),
            observer: Mutex::new(None),
        }
    }

    pub(crate) fn set_observer(&self, observer: Option<Observer>) {
        *self.observer.lock().unwrap_or_else(|e| e.into_inner()) = observer;
    }

    fn observer(&self) -> Option<Observer> {
        self.observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The state, even if a thread panicked while holding it: counters are
    /// plain numbers, never left half-updated in a way that matters.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts connections until `stopped` fires (or its sender is dropped);
/// then every open connection is closed too.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    // Dropping the set aborts every connection task: a stopped proxy must
    // look down to clients, not keep serving kept-alive sockets.
    let mut connections = JoinSet::new();
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(_) => {
                    // Out of descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// An error makes hyper close the connection without an answer (a dropped
/// hang, a lost answer).
#[derive(Debug, thiserror::Error)]
#[error("answer dropped by a fault rule")]
struct Dropped;

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<ProxyBody>, BoxError> {
    let path = req.uri().path();
    if path == CONTROL_PATH || path.starts_with("/__faults/") {
        return Ok(boxed(control(req, &shared).await));
    }

    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(boxed(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body unreadable or too large for platformsync-faults",
            )));
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let call = classify(&parts.headers, &path_and_query, &body);
    let decision = shared.state().decide(&call, Instant::now());

    match decision {
        None => match shared.observer() {
            None => Ok(forward(&shared, &call.service, parts, body).await),
            Some(observer) => {
                let response = forward(&shared, &call.service, parts, body.clone()).await;
                let (parts, answer) = response.into_parts();
                let answer = match answer.collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(e) => return Err(e),
                };
                observer(&crate::Exchange {
                    call: &call,
                    status: parts.status.as_u16(),
                    request: &body,
                    response: &answer,
                });
                Ok(boxed(Response::from_parts(parts, Full::new(answer))))
            }
        },
        Some(Fault::Hang {
            seconds,
            forward: pass,
        }) => {
            let hold = crate::rules::seconds(seconds);
            if !pass {
                tokio::time::sleep(hold).await;
                return Err(Box::new(Dropped));
            }
            // Hold and forward in a detached task: hyper drops this future
            // when the client gives up (closes the connection), and the
            // emulator must get the request all the same.
            let task_shared = shared.clone();
            let service = call.service.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                forward(&task_shared, &service, parts, body).await
            });
            task.await.map_err(|e| Box::new(e) as BoxError)
        }
        Some(Fault::LoseAnswer { seconds }) => {
            // Detached for the same reason as a forwarded hang: the client
            // giving up must not cancel the request upstream.
            let task_shared = shared.clone();
            let service = call.service.clone();
            let carried_out =
                tokio::spawn(async move { forward(&task_shared, &service, parts, body).await });
            let _answer = carried_out.await;
            tokio::time::sleep(crate::rules::seconds(seconds)).await;
            Err(Box::new(Dropped))
        }
        Some(fault) => {
            let id = shared.next_request_id.fetch_add(1, Ordering::Relaxed);
            let request_id = format!("faults-{id:08}");
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            match error_response(&call, &fault, content_type, &request_id) {
                Some(response) => Ok(boxed(response)),
                None => Ok(forward(&shared, &call.service, parts, body).await),
            }
        }
    }
}

fn boxed(response: Response<Full<Bytes>>) -> Response<ProxyBody> {
    response.map(|b| b.map_err(|never| match never {}).boxed())
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_owned())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Connection-level headers, which belong to one hop and are not forwarded.
/// `expect` too: the body has already been read.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
    )
}

/// Sends the request to the emulator serving `service` unchanged (the `Host`
/// header included, so URLs an emulator builds from it, like moto's SQS queue
/// URLs, name the proxy) and streams its answer back.
async fn forward(
    shared: &Shared,
    service: &str,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Response<ProxyBody> {
    let upstream = shared.routes.authority(service);
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = format!("http://{upstream}{path_and_query}");
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method;
    match uri.parse() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return boxed(text(StatusCode::BAD_REQUEST, "unforwardable request path")),
    }
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            request.headers_mut().append(name, value.clone());
        }
    }
    if !request.headers().contains_key(HOST)
        && let Ok(host) = HeaderValue::from_str(upstream)
    {
        request.headers_mut().insert(HOST, host);
    }
    match shared.client.request(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            let names: Vec<HeaderName> = parts
                .headers
                .keys()
                .filter(|n| hop_by_hop(n))
                .cloned()
                .collect();
            for name in names {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
        }
        // What a load balancer in front of a dead service answers; the SDK
        // retries it as transient.
        Err(_) => boxed(text(
            StatusCode::BAD_GATEWAY,
            "platformsync-faults: the upstream emulator did not answer",
        )),
    }
}

/// `GET /__faults` (rules + stats), `POST /__faults` (replace the rules),
/// `POST /__faults/append` (add rules), `DELETE /__faults` (rules and
/// counters), `DELETE /__faults/stats` (counters only).
async fn control(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let stats = |shared: &Shared| {
        let stats = shared.state().stats(Instant::now());
        json(
            StatusCode::OK,
            serde_json::to_string(&stats).unwrap_or_else(|_| "{}".to_owned()),
        )
    };
    match (method, path.as_str()) {
        (Method::GET, CONTROL_PATH) => stats(shared),
        (Method::POST, p) if p == CONTROL_PATH || p == "/__faults/append" => {
            let body = match Limited::new(req.into_body(), 1024 * 1024).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "rules too large"),
            };
            let rules = match parse_rules(&body) {
                Ok(rules) => rules,
                Err(e) => {
                    let body = serde_json::json!({ "error": e }).to_string();
                    return json(StatusCode::BAD_REQUEST, body);
                }
            };
            {
                let mut state = shared.state();
                let now = Instant::now();
                if p == CONTROL_PATH {
                    state.set_rules(rules, now);
                } else {
                    for rule in rules {
                        state.add_rule(rule, now);
                    }
                }
            }
            stats(shared)
        }
        (Method::DELETE, CONTROL_PATH) => {
            {
                let mut state = shared.state();
                state.clear_rules();
                state.reset_counts();
            }
            stats(shared)
        }
        (Method::DELETE, "/__faults/stats") => {
            shared.state().reset_counts();
            stats(shared)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "GET|POST|DELETE /__faults, POST /__faults/append, DELETE /__faults/stats",
        ),
    }
}
