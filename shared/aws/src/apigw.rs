//! What both API Gateway functions (ingest, pull-api) read from an HTTP API
//! (payload 2.0) event and how they answer: the caller's key, the body's
//! bytes, method, path and query, and JSON answers with a status.
//!
//! One place, so the two APIs cannot drift in how a key is presented or how
//! an error answer is shaped (`{"Error": {"Code", "Message"}}` in both).

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{self, HeaderValue};
use base64::Engine;
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

/// The key the caller presented, as sent: `x-api-key: <key>` or
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

/// The query string as sent (API Gateway's `rawQueryString`).
pub fn query(req: &ApiGatewayV2httpRequest) -> &str {
    req.raw_query_string.as_deref().unwrap_or_default()
}

/// A JSON answer. A body that cannot be rendered (never, for the plain
/// structs answered with) becomes `{}` rather than a panic in a handler.
pub fn json(status: u16, body: &impl Serialize) -> ApiGatewayV2httpResponse {
    json_text(
        status,
        serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned()),
    )
}

/// A JSON answer from text already rendered.
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

/// The `Error` object of every error answer: `{"Code", "Message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
}

/// An error answer with nothing beside the error: `{"Error": {"Code", "Message"}}`.
pub fn error(
    status: u16,
    code: &'static str,
    message: impl Into<String>,
) -> ApiGatewayV2httpResponse {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct ErrorResponse {
        error: ErrorBody,
    }
    json(
        status,
        &ErrorResponse {
            error: ErrorBody {
                code,
                message: message.into(),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&'static str, &'static str)]) -> ApiGatewayV2httpRequest {
        let mut req = ApiGatewayV2httpRequest::default();
        for (name, value) in headers {
            req.headers.insert(*name, HeaderValue::from_static(value));
        }
        req
    }

    #[test]
    fn keys_come_from_either_header_and_x_api_key_wins() {
        assert_eq!(presented_key(&request(&[("x-api-key", "k1")])), Some("k1"));
        assert_eq!(
            presented_key(&request(&[("authorization", "Bearer k2")])),
            Some("k2")
        );
        assert_eq!(
            presented_key(&request(&[("authorization", "bearer k3")])),
            Some("k3")
        );
        assert_eq!(
            presented_key(&request(&[
                ("authorization", "Bearer k2"),
                ("x-api-key", "k1")
            ])),
            Some("k1")
        );
        assert_eq!(
            presented_key(&request(&[("authorization", "Basic x")])),
            None
        );
        assert_eq!(presented_key(&request(&[])), None);
    }

    #[test]
    fn bodies_are_decoded_when_base64() {
        let mut req = request(&[]);
        assert_eq!(body_bytes(&req), Ok(Vec::new()));
        req.body = Some("aGk=".to_owned());
        assert_eq!(body_bytes(&req), Ok(b"aGk=".to_vec()));
        req.is_base64_encoded = true;
        assert_eq!(body_bytes(&req), Ok(b"hi".to_vec()));
        req.body = Some("%%".to_owned());
        assert!(body_bytes(&req).is_err());
    }

    #[test]
    fn errors() {
        let resp = error(401, "unauthorized", "no key");
        assert_eq!(resp.status_code, 401);
        assert_eq!(
            resp.headers.get(http::header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/json"))
        );
        assert_eq!(
            resp.body,
            Some(Body::Text(
                r#"{"Error":{"Code":"unauthorized","Message":"no key"}}"#.to_owned()
            ))
        );
    }
}
