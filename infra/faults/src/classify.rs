//! Which AWS service and operation a request is, and in which wire protocol
//! it travels (the protocol decides the shape of an injected error).

use hyper::HeaderMap;
use serde::{Deserialize, Serialize};

/// The wire protocol of a request, as the SDK that sent it speaks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// `awsJson1_0` / `awsJson1_1`: `POST /`, operation in `X-Amz-Target`
    /// (DynamoDB, DynamoDB Streams, SQS, Secrets Manager).
    AwsJson,
    /// `awsQuery`: a form body (or query string) with `Action=` (SNS,
    /// CloudWatch in older SDKs).
    AwsQuery,
    /// Smithy `rpcv2Cbor`: `POST /service/<S>/operation/<Op>` (CloudWatch in
    /// current SDKs).
    RpcV2Cbor,
    /// Anything else (REST protocols); the operation is not recognised.
    Rest,
}

/// One request, as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Canonical service name ([`canonical_service`]), e.g. `dynamodb`,
    /// `streams.dynamodb`, `sqs`, `sns`, `secretsmanager`, `monitoring`;
    /// `unknown` when nothing names it.
    pub service: String,
    /// The operation (`PutItem`, `SendMessageBatch`, `Publish`); empty when
    /// the request does not name one (REST protocols).
    pub operation: String,
    pub protocol: Protocol,
}

/// The canonical name of a service, as rules and statistics spell it: the
/// SigV4 signing name, except for DynamoDB Streams, which signs as `dynamodb`
/// and is told apart by its target prefix. Accepts a few friendly aliases.
pub fn canonical_service(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "cloudwatch" => "monitoring".to_owned(),
        "dynamodbstreams" | "dynamodb-streams" | "dynamodb_streams" | "streams" => {
            "streams.dynamodb".to_owned()
        }
        "secrets" | "secrets-manager" => "secretsmanager".to_owned(),
        _ => lower,
    }
}

/// Classifies a request from its headers, path (with query string) and body.
///
/// The service comes from the SigV4 credential scope
/// (`Credential=AKID/20240101/us-east-1/dynamodb/aws4_request`), the most
/// reliable source since every SDK request is signed; the `X-Amz-Target`
/// prefix, the rpcv2Cbor path or the query `Version` fill in when there is
/// no signature. The operation comes from the target, the path or `Action=`.
pub fn classify(headers: &HeaderMap, path_and_query: &str, body: &[u8]) -> Call {
    let scope = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(credential_scope_service);

    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (prefix, operation) = match target.rsplit_once('.') {
            Some((prefix, op)) => (prefix, op),
            None => ("", target),
        };
        let by_prefix = service_of_target_prefix(prefix);
        let service = match (scope, by_prefix) {
            // Streams sign as `dynamodb`: the prefix is the only way to tell.
            (_, Some(s)) if s == "streams.dynamodb" => s.to_owned(),
            (Some(s), _) => canonical_service(&s),
            (None, Some(s)) => s.to_owned(),
            (None, None) => canonical_service(prefix),
        };
        return Call {
            service,
            operation: operation.to_owned(),
            protocol: Protocol::AwsJson,
        };
    }

    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));

    // rpcv2Cbor (its requests always carry `Smithy-Protocol`):
    // /service/GraniteServiceVersion20100801/operation/PutMetricData
    let cbor = headers
        .get("smithy-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("rpc-v2-cbor"));
    if cbor
        && let Some(rest) = path.strip_prefix("/service/")
        && let Some((shape, operation)) = rest.split_once("/operation/")
    {
        let service = scope
            .map(|s| canonical_service(&s))
            .or_else(|| service_of_target_prefix(shape).map(str::to_owned))
            .unwrap_or_else(|| canonical_service(shape));
        return Call {
            service,
            operation: operation.trim_end_matches('/').to_owned(),
            protocol: Protocol::RpcV2Cbor,
        };
    }

    let form = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let body_text = if form {
        std::str::from_utf8(body).unwrap_or("")
    } else {
        ""
    };
    let action = form_value(body_text, "Action").or_else(|| form_value(query, "Action"));
    if let Some(operation) = action {
        let version = form_value(body_text, "Version").or_else(|| form_value(query, "Version"));
        let service = scope
            .map(|s| canonical_service(&s))
            .or_else(|| version.as_deref().and_then(service_of_query_version))
            .unwrap_or_else(|| "unknown".to_owned());
        return Call {
            service,
            operation,
            protocol: Protocol::AwsQuery,
        };
    }

    Call {
        service: scope
            .map(|s| canonical_service(&s))
            .unwrap_or_else(|| "unknown".to_owned()),
        operation: String::new(),
        protocol: Protocol::Rest,
    }
}

/// The service of a SigV4 `Authorization` header's credential scope.
fn credential_scope_service(authorization: &str) -> Option<String> {
    let start = authorization.find("Credential=")? + "Credential=".len();
    let credential = authorization[start..]
        .split([',', ' '])
        .next()
        .unwrap_or_default();
    // AKID / date / region / service / aws4_request
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() >= 5 && parts[parts.len() - 1] == "aws4_request" {
        let service = parts[parts.len() - 2];
        (!service.is_empty()).then(|| service.to_owned())
    } else {
        None
    }
}

fn service_of_target_prefix(prefix: &str) -> Option<&'static str> {
    let p = prefix.to_ascii_lowercase();
    Some(if p.starts_with("dynamodbstreams_") {
        "streams.dynamodb"
    } else if p.starts_with("dynamodb_") {
        "dynamodb"
    } else if p == "amazonsqs" {
        "sqs"
    } else if p == "secretsmanager" {
        "secretsmanager"
    } else if p.starts_with("graniteserviceversion") {
        "monitoring"
    } else {
        return None;
    })
}

fn service_of_query_version(version: &str) -> Option<String> {
    match version {
        "2010-03-31" => Some("sns".to_owned()),
        "2010-08-01" => Some("monitoring".to_owned()),
        "2012-11-05" => Some("sqs".to_owned()),
        _ => None,
    }
}

/// The first value of `key` in an `application/x-www-form-urlencoded`
/// string, percent-decoded.
fn form_value(form: &str, key: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                out.push(hex_value(bytes[i + 1]) * 16 + hex_value(bytes[i + 2]));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn auth(service: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/{service}/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=abc"
        )
    }

    #[test]
    fn dynamodb_json() {
        let h = headers(&[
            ("authorization", &auth("dynamodb")),
            ("x-amz-target", "DynamoDB_20120810.PutItem"),
            ("content-type", "application/x-amz-json-1.0"),
        ]);
        let call = classify(&h, "/", b"{}");
        assert_eq!(call.service, "dynamodb");
        assert_eq!(call.operation, "PutItem");
        assert_eq!(call.protocol, Protocol::AwsJson);
    }

    #[test]
    fn streams_sign_as_dynamodb_but_are_told_apart_by_target() {
        let h = headers(&[
            ("authorization", &auth("dynamodb")),
            ("x-amz-target", "DynamoDBStreams_20120810.GetRecords"),
        ]);
        let call = classify(&h, "/", b"{}");
        assert_eq!(call.service, "streams.dynamodb");
        assert_eq!(call.operation, "GetRecords");
    }

    #[test]
    fn sqs_and_secrets_manager_json() {
        let h = headers(&[
            ("authorization", &auth("sqs")),
            ("x-amz-target", "AmazonSQS.SendMessageBatch"),
        ]);
        let call = classify(&h, "/", b"{}");
        assert_eq!(
            (call.service.as_str(), call.operation.as_str()),
            ("sqs", "SendMessageBatch")
        );

        let h = headers(&[
            ("authorization", &auth("secretsmanager")),
            ("x-amz-target", "secretsmanager.GetSecretValue"),
        ]);
        let call = classify(&h, "/", b"{}");
        assert_eq!(
            (call.service.as_str(), call.operation.as_str()),
            ("secretsmanager", "GetSecretValue")
        );
    }

    #[test]
    fn unsigned_json_falls_back_to_the_target_prefix() {
        let h = headers(&[("x-amz-target", "AmazonSQS.ReceiveMessage")]);
        let call = classify(&h, "/", b"{}");
        assert_eq!(call.service, "sqs");
        let h = headers(&[(
            "x-amz-target",
            "GraniteServiceVersion20100801.PutMetricData",
        )]);
        assert_eq!(classify(&h, "/", b"").service, "monitoring");
    }

    #[test]
    fn sns_query_body() {
        let h = headers(&[
            ("authorization", &auth("sns")),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ]);
        let body = b"Action=Publish&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At&Message=hi";
        let call = classify(&h, "/", body);
        assert_eq!(call.service, "sns");
        assert_eq!(call.operation, "Publish");
        assert_eq!(call.protocol, Protocol::AwsQuery);
    }

    #[test]
    fn unsigned_query_uses_the_version() {
        let h = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let call = classify(&h, "/", b"Version=2010-08-01&Action=PutMetricData");
        assert_eq!(call.service, "monitoring");
        assert_eq!(call.operation, "PutMetricData");
        // Action in the query string (GET) works too.
        let call = classify(
            &HeaderMap::new(),
            "/?Action=ListTopics&Version=2010-03-31",
            b"",
        );
        assert_eq!(
            (call.service.as_str(), call.operation.as_str()),
            ("sns", "ListTopics")
        );
    }

    #[test]
    fn cloudwatch_cbor_path() {
        let h = headers(&[
            ("authorization", &auth("monitoring")),
            ("smithy-protocol", "rpc-v2-cbor"),
        ]);
        let call = classify(
            &h,
            "/service/GraniteServiceVersion20100801/operation/PutMetricData",
            b"",
        );
        assert_eq!(call.service, "monitoring");
        assert_eq!(call.operation, "PutMetricData");
        assert_eq!(call.protocol, Protocol::RpcV2Cbor);
    }

    #[test]
    fn rest_requests_keep_their_service_and_no_operation() {
        let h = headers(&[("authorization", &auth("s3"))]);
        let call = classify(&h, "/bucket/key", b"");
        assert_eq!(call.service, "s3");
        assert_eq!(call.operation, "");
        assert_eq!(call.protocol, Protocol::Rest);
        assert_eq!(classify(&HeaderMap::new(), "/", b"").service, "unknown");
    }

    #[test]
    fn a_form_body_without_the_form_content_type_is_not_read() {
        // A JSON body that happens to contain "Action=" is not a query call.
        let call = classify(&HeaderMap::new(), "/", b"Action=Publish");
        assert_eq!(call.protocol, Protocol::Rest);
    }

    #[test]
    fn aliases() {
        assert_eq!(canonical_service("CloudWatch"), "monitoring");
        assert_eq!(canonical_service("dynamodbstreams"), "streams.dynamodb");
        assert_eq!(canonical_service("SQS"), "sqs");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab+c%"), "a:b c%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
