//! API Gateway's HTTP API (payload format 2.0), played on a loopback port:
//! each request that matches a route of `template.yaml` becomes an
//! `ApiGatewayV2httpRequest` for the function behind it, and its response
//! goes back as HTTP.

use crate::functions::Function;
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body as LambdaBody;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::info;

/// API Gateway's own limit on a request body; the function enforces
/// Lambda's 6 MB below it, as on AWS.
const API_GATEWAY_MAX_BODY: usize = 10 * 1024 * 1024;

/// Lambda's limit on a synchronous invocation's request payload (the event JSON).
const LAMBDA_MAX_REQUEST_PAYLOAD: usize = 6 * 1024 * 1024;

/// One route: method and path of an `HttpApi` event, and its function.
#[derive(Clone)]
pub struct Route {
    pub method: http::Method,
    pub path: String,
    pub function: Arc<Function>,
}

/// Serves `routes` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, routes: Vec<Route>) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .fallback(dispatch)
        .with_state(Arc::new(routes));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

async fn dispatch(
    State(routes): State<Arc<Vec<Route>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Some(route) = routes
        .iter()
        .find(|r| r.method == parts.method && r.path == parts.uri.path())
    else {
        return plain(404, r#"{"message":"Not Found"}"#);
    };
    let Ok(bytes) = to_bytes(body, API_GATEWAY_MAX_BODY).await else {
        return plain(413, r#"{"message":"Request Entity Too Large"}"#);
    };
    let event = api_gateway_event(&parts, &bytes, peer);
    // Lambda refuses a synchronous invocation whose event is over 6 MB before
    // the function runs; API Gateway then answers this, so the runner does too.
    if serde_json::to_vec(&event).map_or(usize::MAX, |v| v.len()) > LAMBDA_MAX_REQUEST_PAYLOAD {
        return plain(413, r#"{"message":"Request Entity Too Large"}"#);
    }
    let started = std::time::Instant::now();
    let response = route.function.http(event).await;
    info!(
        method = %parts.method,
        path = parts.uri.path(),
        status = response.status_code,
        duration_ms = started.elapsed().as_millis() as u64,
        "http api"
    );
    into_http(response)
}

/// The event API Gateway would hand the function for this request.
pub fn api_gateway_event(
    parts: &http::request::Parts,
    body: &[u8],
    peer: SocketAddr,
) -> ApiGatewayV2httpRequest {
    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".into());
    event.route_key = Some(format!("{} {}", parts.method, parts.uri.path()));
    event.raw_path = Some(parts.uri.path().to_owned());
    event.raw_query_string = Some(parts.uri.query().unwrap_or_default().to_owned());
    event.headers = parts.headers.clone();
    event.request_context.http.method = parts.method.clone();
    event.request_context.http.path = Some(parts.uri.path().to_owned());
    event.request_context.http.source_ip = Some(peer.ip().to_string());
    event.request_context.request_id = Some(uuid::Uuid::new_v4().to_string());
    if !body.is_empty() {
        // Like API Gateway: text stays text, anything else travels base64.
        match std::str::from_utf8(body) {
            Ok(text) => event.body = Some(text.to_owned()),
            Err(_) => {
                event.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
                event.is_base64_encoded = true;
            }
        }
    }
    event
}

fn into_http(response: ApiGatewayV2httpResponse) -> Response {
    let status = u16::try_from(response.status_code).unwrap_or(502);
    let body = match response.body {
        Some(LambdaBody::Text(text)) => Body::from(text),
        Some(LambdaBody::Binary(bytes)) => Body::from(bytes),
        _ => Body::empty(),
    };
    let mut out = Response::new(body);
    *out.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    *out.headers_mut() = response.headers;
    out
}

fn plain(status: u16, body: &'static str) -> Response {
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::NOT_FOUND);
    out.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    out
}
