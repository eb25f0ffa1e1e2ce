//! Translation between API Gateway HTTP API (payload 2.0) events and the
//! handler's terms.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use http::HeaderValue;
use serde::Serialize;

/// The body's bytes. API Gateway base64-encodes bodies it does not consider
/// text, which is also how bytes that are not UTF-8 arrive.
pub fn body_bytes(req: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, base64::DecodeError> {
    match &req.body {
        None => Ok(Vec::new()),
        Some(b) if req.is_base64_encoded => base64::engine::general_purpose::STANDARD.decode(b),
        Some(b) => Ok(b.clone().into_bytes()),
    }
}

/// The ingest key the caller presented: `x-api-key: <key>` or
/// `Authorization: Bearer <key>`.
pub fn presented_key(req: &ApiGatewayV2httpRequest) -> Option<&str> {
    let header = |name| req.headers.get(name).and_then(|v| v.to_str().ok());
    header("x-api-key").or_else(|| {
        header("authorization").and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    })
}

pub fn method(req: &ApiGatewayV2httpRequest) -> &http::Method {
    &req.request_context.http.method
}

pub fn path(req: &ApiGatewayV2httpRequest) -> &str {
    req.raw_path
        .as_deref()
        .or(req.request_context.http.path.as_deref())
        .unwrap_or("/")
}

pub fn json(status: u16, body: &impl Serialize) -> ApiGatewayV2httpResponse {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    let mut resp = ApiGatewayV2httpResponse::default();
    resp.status_code = i64::from(status);
    resp.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.body = Some(Body::Text(text));
    resp
}
