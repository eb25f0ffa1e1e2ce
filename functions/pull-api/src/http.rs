//! Translation between API Gateway HTTP API (payload 2.0) events and the
//! handler's terms.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use http::HeaderValue;
use secrecy::SecretString;

/// The API key the caller presented: `x-api-key: <key>` or
/// `Authorization: Bearer <key>`.
pub fn presented_key(req: &ApiGatewayV2httpRequest) -> Option<SecretString> {
    let header = |name| req.headers.get(name).and_then(|v| v.to_str().ok());
    header("x-api-key")
        .or_else(|| {
            header("authorization").and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
        })
        .map(|k| SecretString::from(k.trim().to_owned()))
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

/// The query string as sent (API Gateway's `rawQueryString`).
pub fn query(req: &ApiGatewayV2httpRequest) -> &str {
    req.raw_query_string.as_deref().unwrap_or_default()
}

/// A JSON response from text already rendered.
pub fn json_text(status: u16, text: String) -> ApiGatewayV2httpResponse {
    let mut resp = ApiGatewayV2httpResponse::default();
    resp.status_code = i64::from(status);
    resp.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.body = Some(Body::Text(text));
    resp
}
