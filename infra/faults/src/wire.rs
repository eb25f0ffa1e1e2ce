//! Injected errors in each protocol's real wire format, so the Rust AWS SDK
//! parses and classifies them as it would the real service's:
//!
//! - **awsJson** (DynamoDB, Streams, SQS, Secrets Manager): status + body
//!   `{"__type": "<namespace>#<Code>", "message": "..."}` + `x-amzn-ErrorType`;
//!   SQS (query-compatible) also `x-amzn-query-error: <QueryCode>;Sender|Receiver`,
//!   which the SQS SDK prefers over `__type` for the error code (as real SQS
//!   sends: AccessDenied is `__type` `AccessDeniedException` but code `AccessDenied`).
//! - **awsQuery** (SNS, CloudWatch query): `text/xml`
//!   `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
//! - **rpcv2Cbor** (CloudWatch): a CBOR map `{"__type", "message"}` +
//!   `smithy-protocol: rpc-v2-cbor` + `x-amzn-query-error`.
//!
//! The SDK retries throttling codes (`ThrottlingException`,
//! `ProvisionedThroughputExceededException`, `RequestThrottled`, `Throttling`,
//! see aws-runtime's `THROTTLING_ERRORS`) and 500/502/503/504 statuses; it does
//! not retry AccessDenied or KMS errors.

use std::borrow::Cow;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use crate::classify::{Call, Protocol};
use crate::rules::Fault;

/// How one fault looks for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorShape {
    pub status: u16,
    /// The error code the SDK reports (`__type` after `#`, or XML `Code`).
    pub code: Cow<'static, str>,
    /// `__type` namespace (JSON protocols), without the `#`.
    pub namespace: Cow<'static, str>,
    /// `x-amzn-query-error` code and `Sender`/`Receiver` for query-compatible
    /// JSON services (SQS, CloudWatch); also the `<Type>` of query errors.
    pub query: Option<(Cow<'static, str>, &'static str)>,
}

const CORAL: &str = "com.amazon.coral.service";

/// The error a real `service` answers for `fault` (hangs have none).
pub fn shape(service: &str, fault: &Fault) -> Option<ErrorShape> {
    let s = |status,
             code: &'static str,
             namespace: &'static str,
             query: Option<(&'static str, &'static str)>| {
        Some(ErrorShape {
            status,
            code: code.into(),
            namespace: namespace.into(),
            query: query.map(|(code, kind)| (code.into(), kind)),
        })
    };
    const DDB: &str = "com.amazonaws.dynamodb.v20120810";
    const SQS: &str = "com.amazonaws.sqs";
    const SM: &str = "com.amazonaws.secretsmanager";
    match (service, fault) {
        (_, Fault::Hang { .. } | Fault::LoseAnswer { .. }) => None,

        (
            _,
            Fault::Error {
                status,
                code,
                query_code,
            },
        ) => Some(ErrorShape {
            status: *status,
            code: code.clone().into(),
            namespace: match service {
                "dynamodb" | "streams.dynamodb" => DDB,
                "sqs" => SQS,
                "secretsmanager" => SM,
                _ => CORAL,
            }
            .into(),
            query: Some((
                query_code.as_ref().unwrap_or(code).clone().into(),
                if *status >= 500 { "Receiver" } else { "Sender" },
            )),
        }),

        ("dynamodb", Fault::Throttle) => {
            s(400, "ProvisionedThroughputExceededException", DDB, None)
        }
        ("streams.dynamodb", Fault::Throttle) => s(400, "ThrottlingException", CORAL, None),
        ("dynamodb" | "streams.dynamodb", Fault::Internal) => {
            s(500, "InternalServerError", DDB, None)
        }
        ("dynamodb" | "streams.dynamodb", Fault::Kms) => {
            s(400, "KMSAccessDeniedException", DDB, None)
        }

        ("sqs", Fault::Throttle) => s(
            400,
            "RequestThrottled",
            SQS,
            Some(("RequestThrottled", "Sender")),
        ),
        ("sqs", Fault::Internal) => s(
            500,
            "InternalFailure",
            CORAL,
            Some(("InternalFailure", "Receiver")),
        ),
        ("sqs", Fault::Unavailable) => s(
            503,
            "ServiceUnavailable",
            CORAL,
            Some(("ServiceUnavailable", "Receiver")),
        ),
        ("sqs", Fault::AccessDenied) => s(
            403,
            "AccessDeniedException",
            CORAL,
            Some(("AccessDenied", "Sender")),
        ),
        ("sqs", Fault::Kms) => s(
            400,
            "KmsAccessDenied",
            SQS,
            Some(("KMS.AccessDeniedException", "Sender")),
        ),

        ("secretsmanager", Fault::Throttle) => s(400, "ThrottlingException", CORAL, None),
        ("secretsmanager", Fault::Internal) => s(500, "InternalServiceError", SM, None),
        ("secretsmanager", Fault::Kms) => s(400, "DecryptionFailure", SM, None),

        ("sns", Fault::Throttle) => s(400, "Throttling", "", Some(("Throttling", "Sender"))),
        ("sns", Fault::Internal) => s(
            500,
            "InternalError",
            "",
            Some(("InternalError", "Receiver")),
        ),
        ("sns", Fault::AccessDenied) => s(
            403,
            "AuthorizationError",
            "",
            Some(("AuthorizationError", "Sender")),
        ),
        ("sns", Fault::Kms) => s(
            400,
            "KMSAccessDenied",
            "",
            Some(("KMSAccessDenied", "Sender")),
        ),

        ("monitoring", Fault::Throttle) => {
            s(400, "Throttling", CORAL, Some(("Throttling", "Sender")))
        }
        ("monitoring", Fault::Internal) => s(
            500,
            "InternalServiceError",
            CORAL,
            Some(("InternalServiceError", "Receiver")),
        ),
        ("monitoring", Fault::AccessDenied) => {
            s(403, "AccessDenied", CORAL, Some(("AccessDenied", "Sender")))
        }

        // What every service shares (AWS "common errors").
        (_, Fault::Throttle) => s(
            400,
            "ThrottlingException",
            CORAL,
            Some(("Throttling", "Sender")),
        ),
        (_, Fault::Internal) => s(
            500,
            "InternalFailure",
            CORAL,
            Some(("InternalFailure", "Receiver")),
        ),
        (_, Fault::Unavailable) => s(
            503,
            "ServiceUnavailable",
            CORAL,
            Some(("ServiceUnavailable", "Receiver")),
        ),
        (_, Fault::AccessDenied) => s(
            400,
            "AccessDeniedException",
            CORAL,
            Some(("AccessDenied", "Sender")),
        ),
        (_, Fault::Kms) => s(
            400,
            "KMSAccessDeniedException",
            CORAL,
            Some(("KMSAccessDenied", "Sender")),
        ),
    }
}

/// The full HTTP answer injecting `fault` into `call`; `None` for hangs.
pub fn error_response(
    call: &Call,
    fault: &Fault,
    request_content_type: Option<&str>,
    request_id: &str,
) -> Option<Response<Full<Bytes>>> {
    let shape = shape(&call.service, fault)?;
    let message = format!(
        "platformsync-faults injected {} into {}.{}",
        shape.code,
        call.service,
        if call.operation.is_empty() {
            "*"
        } else {
            &call.operation
        }
    );
    let (content_type, body): (String, Vec<u8>) = match call.protocol {
        Protocol::AwsQuery => (
            "text/xml".to_owned(),
            query_xml(&shape, &message, request_id),
        ),
        Protocol::RpcV2Cbor => (
            "application/cbor".to_owned(),
            cbor_text_map(&[("__type", shape.code.as_ref()), ("message", &message)]),
        ),
        Protocol::AwsJson | Protocol::Rest => {
            let content_type = request_content_type
                .filter(|ct| ct.starts_with("application/x-amz-json"))
                .unwrap_or("application/x-amz-json-1.0")
                .to_owned();
            let type_id = if shape.namespace.is_empty() {
                shape.code.to_string()
            } else {
                format!("{}#{}", shape.namespace, shape.code)
            };
            let body = serde_json::json!({ "__type": type_id, "message": message });
            (content_type, body.to_string().into_bytes())
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(shape.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    let put = |headers: &mut hyper::HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put(headers, CONTENT_TYPE.as_str(), &content_type);
    put(headers, "x-amzn-requestid", request_id);
    match call.protocol {
        Protocol::AwsJson | Protocol::Rest => {
            put(headers, "x-amzn-errortype", &shape.code);
            if let Some((code, kind)) = &shape.query
                && matches!(call.service.as_str(), "sqs" | "monitoring")
            {
                put(headers, "x-amzn-query-error", &format!("{code};{kind}"));
            }
        }
        Protocol::RpcV2Cbor => {
            put(headers, "smithy-protocol", "rpc-v2-cbor");
            if let Some((code, kind)) = &shape.query {
                put(headers, "x-amzn-query-error", &format!("{code};{kind}"));
            }
        }
        Protocol::AwsQuery => {}
    }
    Some(response)
}

fn query_xml(shape: &ErrorShape, message: &str, request_id: &str) -> Vec<u8> {
    let (code, kind) = shape
        .query
        .clone()
        .unwrap_or((shape.code.clone(), "Sender"));
    format!(
        "<ErrorResponse><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error>\
         <RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(kind),
        xml_escape(&code),
        xml_escape(message),
        xml_escape(request_id)
    )
    .into_bytes()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A CBOR map of text keys to text values (RFC 8949 major types 5 and 3):
/// the whole of CBOR an error body needs, so no CBOR crate.
fn cbor_text_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    fn head(out: &mut Vec<u8>, major: u8, len: usize) {
        let m = major << 5;
        match len {
            0..=23 => out.push(m | len as u8),
            24..=0xff => out.extend([m | 24, len as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend((len as u16).to_be_bytes());
            }
            _ => {
                out.push(m | 26);
                out.extend((len as u32).to_be_bytes());
            }
        }
    }
    let mut out = Vec::new();
    head(&mut out, 5, pairs.len());
    for (k, v) in pairs {
        for text in [k, v] {
            head(&mut out, 3, text.len());
            out.extend(text.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn call(service: &str, operation: &str, protocol: Protocol) -> Call {
        Call {
            service: service.into(),
            operation: operation.into(),
            protocol,
        }
    }

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn dynamodb_throttling_is_json_with_error_type() {
        let r = error_response(
            &call("dynamodb", "PutItem", Protocol::AwsJson),
            &Fault::Throttle,
            Some("application/x-amz-json-1.0"),
            "rid",
        )
        .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.headers()["x-amzn-errortype"],
            "ProvisionedThroughputExceededException"
        );
        assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.0");
        let json: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
        assert_eq!(
            json["__type"],
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
        );
        assert!(json["message"].as_str().unwrap().contains("PutItem"));
    }

    #[tokio::test]
    async fn sqs_carries_the_query_error_header() {
        let r = error_response(
            &call("sqs", "SendMessageBatch", Protocol::AwsJson),
            &Fault::AccessDenied,
            None,
            "rid",
        )
        .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["x-amzn-query-error"], "AccessDenied;Sender");
        assert_eq!(r.headers()["x-amzn-errortype"], "AccessDeniedException");
    }

    #[tokio::test]
    async fn secrets_manager_keeps_json_1_1() {
        let r = error_response(
            &call("secretsmanager", "GetSecretValue", Protocol::AwsJson),
            &Fault::Kms,
            Some("application/x-amz-json-1.1"),
            "rid",
        )
        .unwrap();
        assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.1");
        assert!(body(r).await.contains("#DecryptionFailure"));
    }

    #[tokio::test]
    async fn sns_is_query_xml() {
        let r = error_response(
            &call("sns", "Publish", Protocol::AwsQuery),
            &Fault::Throttle,
            None,
            "r<1>",
        )
        .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "text/xml");
        assert_eq!(
            body(r).await,
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>\
             platformsync-faults injected Throttling into sns.Publish</Message></Error>\
             <RequestId>r&lt;1&gt;</RequestId></ErrorResponse>"
        );
    }

    #[tokio::test]
    async fn custom_errors_take_the_services_protocol() {
        let fault = Fault::Error {
            status: 400,
            code: "ThrottlingException".into(),
            query_code: None,
        };
        let r = error_response(
            &call("dynamodb", "PutItem", Protocol::AwsJson),
            &fault,
            None,
            "rid",
        )
        .unwrap();
        assert_eq!(r.headers()["x-amzn-errortype"], "ThrottlingException");
        assert!(r.headers().get("x-amzn-query-error").is_none());
        assert!(
            body(r)
                .await
                .contains("com.amazonaws.dynamodb.v20120810#ThrottlingException")
        );

        let fault = Fault::Error {
            status: 400,
            code: "QueueDoesNotExist".into(),
            query_code: Some("AWS.SimpleQueueService.NonExistentQueue".into()),
        };
        let r = error_response(
            &call("sqs", "SendMessage", Protocol::AwsJson),
            &fault,
            None,
            "rid",
        )
        .unwrap();
        assert_eq!(
            r.headers()["x-amzn-query-error"],
            "AWS.SimpleQueueService.NonExistentQueue;Sender"
        );

        let fault = Fault::Error {
            status: 500,
            code: "KMSInvalidStateException".into(),
            query_code: None,
        };
        let r = error_response(
            &call("sns", "Publish", Protocol::AwsQuery),
            &fault,
            None,
            "rid",
        )
        .unwrap();
        assert_eq!(r.status(), 500);
        let xml = body(r).await;
        assert!(
            xml.contains("<Type>Receiver</Type><Code>KMSInvalidStateException</Code>"),
            "{xml}"
        );
    }

    #[test]
    fn cbor_map_bytes() {
        assert_eq!(
            cbor_text_map(&[("a", "bc")]),
            vec![0xa1, 0x61, b'a', 0x62, b'b', b'c']
        );
        let long = "x".repeat(300);
        let encoded = cbor_text_map(&[("m", &long)]);
        assert_eq!(&encoded[..5], &[0xa1, 0x61, b'm', 0x79, 0x01]);
    }

    #[test]
    fn every_fault_has_a_shape_for_every_service_but_hang() {
        let faults = [
            Fault::Throttle,
            Fault::Internal,
            Fault::Unavailable,
            Fault::AccessDenied,
            Fault::Kms,
        ];
        // s3: a service with no shapes of its own gets the generic ones.
        for service in crate::upstreams::services().chain(["s3"]) {
            for fault in &faults {
                let shape = shape(service, fault).unwrap();
                let retried = matches!(
                    fault,
                    Fault::Throttle | Fault::Internal | Fault::Unavailable
                );
                // The code the SDK reports: query-compatible services use the header's.
                let code = match (service, &shape.query) {
                    ("sqs" | "sns" | "monitoring", Some((code, _))) => code.as_ref(),
                    _ => shape.code.as_ref(),
                };
                let throttling = [
                    "Throttling",
                    "ThrottlingException",
                    "ProvisionedThroughputExceededException",
                    "RequestThrottled",
                ];
                assert_eq!(
                    retried,
                    shape.status >= 500 || throttling.contains(&code),
                    "{service} {fault:?} {shape:?}"
                );
            }
        }
        assert!(
            shape(
                "sqs",
                &Fault::Hang {
                    seconds: 1.0,
                    forward: true
                }
            )
            .is_none()
        );
    }
}
