//! Push payload rendering (version 1).
//!
//! ```text
//! { "Metadata": { "MessageId": "<uuid>", "CorrelationId": "<uuid>"?, "Version": "1",
//!                 ...endpoint metadata... },
//!   "Transactions": [ ... ] }            (or "AuditTransactions")
//! ```
//!
//! The API key goes where the endpoint says: a header (`Bearer <token>` by
//! default, or the raw token as the real service sends it), a query pair, a
//! top-level body property, or a property inside `Metadata`. Endpoint metadata
//! never overrides `MessageId`, `CorrelationId`, `Version` or a key placed in
//! `Metadata`: such entries (compared ASCII case-insensitively, since some
//! receivers look keys up that way) are dropped. The secret stays a
//! [`SecretString`] everywhere except inside the body bytes, and
//! [`RenderedRequest`]'s `Debug` shows neither.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::transaction::{AuditTransaction, Transaction};
use crate::types::MessageKind;

/// Default name of the API key (header, query parameter or property).
pub const DEFAULT_KEY_NAME: &str = "Authorization";

/// Keys of `Metadata` that endpoint metadata can never set.
pub const RESERVED_METADATA_KEYS: [&str; 3] = ["MessageId", "CorrelationId", "Version"];

/// A payload layout customers can pin. Absent setting = [`PayloadVersion::LATEST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum PayloadVersion {
    #[default]
    V1,
}

impl PayloadVersion {
    pub const LATEST: PayloadVersion = PayloadVersion::V1;

    /// As written in `Metadata.Version`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadVersion::V1 => "1",
        }
    }

    /// Accepts `1`, `v1` or `V1`.
    pub fn parse(s: &str) -> Result<Self, PayloadError> {
        match s.trim() {
            "1" | "v1" | "V1" => Ok(PayloadVersion::V1),
            other => Err(PayloadError::UnknownVersion(crate::money::clip(other))),
        }
    }
}

impl fmt::Display for PayloadVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKeyPlacement {
    /// An HTTP header; `bearer` prefixes the value with `Bearer `.
    Header { bearer: bool },
    /// A query-string parameter.
    Query,
    /// A top-level property of the JSON body.
    Body,
    /// A property inside `Metadata`.
    Metadata,
}

impl Default for ApiKeyPlacement {
    fn default() -> Self {
        ApiKeyPlacement::Header { bearer: true }
    }
}

/// A configuration that cannot produce a well-formed request. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("unknown payload version {0:?}; known: 1")]
    UnknownVersion(String),
    #[error("API key name must be 1 to 128 characters")]
    KeyNameLength,
    #[error("API key name {0:?} is not a valid HTTP header name")]
    InvalidHeaderName(String),
    #[error("API key value contains characters not allowed in an HTTP header (control characters)")]
    InvalidHeaderValue,
    #[error("API key name {0:?} would collide with a property the payload already has")]
    ReservedKeyName(String),
    #[error("API key is empty")]
    EmptySecret,
}

/// An endpoint's API key and where it goes. The name is checked against the placement.
#[derive(Clone)]
pub struct ApiKey {
    name: String,
    placement: ApiKeyPlacement,
    secret: SecretString,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl ApiKey {
    /// `name` `None` means [`DEFAULT_KEY_NAME`].
    pub fn new(
        name: Option<&str>,
        placement: ApiKeyPlacement,
        secret: SecretString,
    ) -> Result<Self, PayloadError> {
        let name = name.unwrap_or(DEFAULT_KEY_NAME);
        if name.is_empty() || name.chars().nth(128).is_some() {
            return Err(PayloadError::KeyNameLength);
        }
        if secret.expose_secret().is_empty() {
            return Err(PayloadError::EmptySecret);
        }
        let reserved = |list: &[&str]| list.iter().any(|r| r.eq_ignore_ascii_case(name));
        match placement {
            ApiKeyPlacement::Header { .. } => {
                if !name.bytes().all(is_tchar) {
                    return Err(PayloadError::InvalidHeaderName(crate::money::clip(name)));
                }
                let bad = |c: char| c.is_control() && c != '\t';
                if secret.expose_secret().chars().any(bad) {
                    return Err(PayloadError::InvalidHeaderValue);
                }
            }
            ApiKeyPlacement::Body => {
                if reserved(&["Metadata", "Transactions", "AuditTransactions"]) {
                    return Err(PayloadError::ReservedKeyName(name.to_owned()));
                }
            }
            ApiKeyPlacement::Metadata => {
                if reserved(&RESERVED_METADATA_KEYS) {
                    return Err(PayloadError::ReservedKeyName(name.to_owned()));
                }
            }
            ApiKeyPlacement::Query => {}
        }
        Ok(ApiKey {
            name: name.to_owned(),
            placement,
            secret,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn placement(&self) -> ApiKeyPlacement {
        self.placement
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("placement", &self.placement)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// The records of one batch, all of one kind.
#[derive(Debug, Clone, Copy)]
pub enum PayloadItems<'a> {
    /// Stored payload JSON, one per record (as written by `to_json`).
    Raw {
        kind: MessageKind,
        items: &'a [Box<RawValue>],
    },
    Transactions(&'a [Transaction]),
    Audits(&'a [AuditTransaction]),
}

impl PayloadItems<'_> {
    pub fn kind(&self) -> MessageKind {
        match self {
            PayloadItems::Raw { kind, .. } => *kind,
            PayloadItems::Transactions(_) => MessageKind::Transactions,
            PayloadItems::Audits(_) => MessageKind::AuditTransactions,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            PayloadItems::Raw { items, .. } => items.len(),
            PayloadItems::Transactions(t) => t.len(),
            PayloadItems::Audits(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything one POST is made of.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    /// One per batch, the same on every retry.
    pub message_id: Uuid,
    pub correlation_id: Option<Uuid>,
    pub endpoint_metadata: &'a BTreeMap<String, String>,
    pub items: PayloadItems<'a>,
    pub api_key: &'a ApiKey,
}

/// A header value that may be the secret.
#[derive(Clone)]
pub enum HeaderValue {
    Public(String),
    Secret(SecretString),
}

impl HeaderValue {
    pub fn expose(&self) -> &str {
        match self {
            HeaderValue::Public(s) => s,
            HeaderValue::Secret(s) => s.expose_secret(),
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, HeaderValue::Secret(_))
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderValue::Public(s) => fmt::Debug::fmt(s, f),
            HeaderValue::Secret(_) => f.write_str("[REDACTED]"),
        }
    }
}

/// The rendered POST: body, headers (`Content-Type` included) and query pairs.
#[derive(Clone)]
pub struct RenderedRequest {
    /// JSON body. Holds the secret when the key is placed in the body or
    /// `Metadata` (see `body_contains_secret`): never log it.
    pub body: Vec<u8>,
    pub headers: Vec<(String, HeaderValue)>,
    pub query: Vec<(String, SecretString)>,
    pub body_contains_secret: bool,
}

impl fmt::Debug for RenderedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let query: Vec<(&str, &str)> = self
            .query
            .iter()
            .map(|(k, _)| (k.as_str(), "[REDACTED]"))
            .collect();
        f.debug_struct("RenderedRequest")
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("headers", &self.headers)
            .field("query", &query)
            .field("body_contains_secret", &self.body_contains_secret)
            .finish()
    }
}

/// Writes `s` as a JSON string literal.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn json_value<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    // The record types serialise infallibly (strings, integers, raw numbers).
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Renders with the given version (today there is only v1).
pub fn render(version: PayloadVersion, input: &RenderInput<'_>) -> RenderedRequest {
    match version {
        PayloadVersion::V1 => render_v1(input),
    }
}

/// Renders a push payload, version 1. See the module docs.
pub fn render_v1(input: &RenderInput<'_>) -> RenderedRequest {
    let key = input.api_key;
    let secret = key.secret.expose_secret();
    let mut body = Vec::with_capacity(256 + 512 * input.items.len());

    body.extend_from_slice(b"{\"Metadata\":{\"MessageId\":");
    json_str(&mut body, &input.message_id.to_string());
    if let Some(correlation_id) = input.correlation_id {
        body.extend_from_slice(b",\"CorrelationId\":");
        json_str(&mut body, &correlation_id.to_string());
    }
    body.extend_from_slice(b",\"Version\":");
    json_str(&mut body, PayloadVersion::V1.as_str());
    let key_in_metadata = key.placement == ApiKeyPlacement::Metadata;
    for (k, v) in input.endpoint_metadata {
        let reserved = RESERVED_METADATA_KEYS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(k))
            || (key_in_metadata && key.name.eq_ignore_ascii_case(k));
        if reserved {
            continue;
        }
        body.push(b',');
        json_str(&mut body, k);
        body.push(b':');
        json_str(&mut body, v);
    }
    if key_in_metadata {
        body.push(b',');
        json_str(&mut body, &key.name);
        body.push(b':');
        json_str(&mut body, secret);
    }
    body.push(b'}');
    if key.placement == ApiKeyPlacement::Body {
        body.push(b',');
        json_str(&mut body, &key.name);
        body.push(b':');
        json_str(&mut body, secret);
    }
    body.push(b',');
    json_str(&mut body, input.items.kind().wire_name());
    body.extend_from_slice(b":[");
    match input.items {
        PayloadItems::Raw { items, .. } => {
            for (i, raw) in items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(raw.get().as_bytes());
            }
        }
        PayloadItems::Transactions(items) => {
            for (i, t) in items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                json_value(&mut body, t);
            }
        }
        PayloadItems::Audits(items) => {
            for (i, a) in items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                json_value(&mut body, a);
            }
        }
    }
    body.extend_from_slice(b"]}");

    let mut headers = vec![(
        "Content-Type".to_owned(),
        HeaderValue::Public("application/json".to_owned()),
    )];
    let mut query = Vec::new();
    match key.placement {
        ApiKeyPlacement::Header { bearer } => {
            let value = if bearer {
                SecretString::from(format!("Bearer {secret}"))
            } else {
                key.secret.clone()
            };
            headers.push((key.name.clone(), HeaderValue::Secret(value)));
        }
        ApiKeyPlacement::Query => query.push((key.name.clone(), key.secret.clone())),
        ApiKeyPlacement::Body | ApiKeyPlacement::Metadata => {}
    }
    RenderedRequest {
        body,
        headers,
        query,
        body_contains_secret: matches!(
            key.placement,
            ApiKeyPlacement::Body | ApiKeyPlacement::Metadata
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-\"token\"";

    fn key(name: Option<&str>, placement: ApiKeyPlacement) -> ApiKey {
        ApiKey::new(name, placement, SecretString::from(SECRET)).unwrap()
    }

    fn raw_items() -> Vec<Box<RawValue>> {
        vec![RawValue::from_string(r#"{"Amount":20.0000}"#.to_owned()).unwrap()]
    }

    fn render_with(key: &ApiKey, md: &BTreeMap<String, String>) -> RenderedRequest {
        let items = raw_items();
        render_v1(&RenderInput {
            message_id: Uuid::nil(),
            correlation_id: None,
            endpoint_metadata: md,
            items: PayloadItems::Raw {
                kind: MessageKind::Transactions,
                items: &items,
            },
            api_key: key,
        })
    }

    fn body(r: &RenderedRequest) -> String {
        String::from_utf8(r.body.clone()).unwrap()
    }

    #[test]
    fn header_bearer_default() {
        let r = render_with(&key(None, ApiKeyPlacement::default()), &BTreeMap::new());
        assert_eq!(
            body(&r),
            r#"{"Metadata":{"MessageId":"00000000-0000-0000-0000-000000000000","Version":"1"},"Transactions":[{"Amount":20.0000}]}"#
        );
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.headers[1].0, "Authorization");
        assert_eq!(r.headers[1].1.expose(), format!("Bearer {SECRET}"));
        assert!(r.query.is_empty());
        assert!(!r.body_contains_secret);
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
    }

    #[test]
    fn header_raw() {
        let k = key(Some("X-Api-Key"), ApiKeyPlacement::Header { bearer: false });
        let r = render_with(&k, &BTreeMap::new());
        assert_eq!(r.headers[1].0, "X-Api-Key");
        assert_eq!(r.headers[1].1.expose(), SECRET);
    }

    #[test]
    fn query_placement() {
        let r = render_with(
            &key(Some("apikey"), ApiKeyPlacement::Query),
            &BTreeMap::new(),
        );
        assert_eq!(r.query.len(), 1);
        assert_eq!(r.query[0].0, "apikey");
        assert_eq!(r.query[0].1.expose_secret(), SECRET);
        assert_eq!(r.headers.len(), 1);
        assert!(!body(&r).contains("s3cr3t"));
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    #[test]
    fn body_placement() {
        let r = render_with(
            &key(Some("ApiKey"), ApiKeyPlacement::Body),
            &BTreeMap::new(),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["ApiKey"], SECRET);
        assert!(r.body_contains_secret);
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    #[test]
    fn metadata_placement_and_reserved_keys_win() {
        let md: BTreeMap<String, String> = [
            ("MessageId", "evil"),
            ("version", "9"),
            ("ApiKey", "not-the-key"),
            ("Store", "42"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let r = render_with(&key(Some("ApiKey"), ApiKeyPlacement::Metadata), &md);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let m = v["Metadata"].as_object().unwrap();
        assert_eq!(m["MessageId"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(m["Version"], "1");
        assert_eq!(m["ApiKey"], SECRET);
        assert_eq!(m["Store"], "42");
        assert!(!m.contains_key("version"));
        assert_eq!(m.len(), 4);
        // Exactly one ApiKey property in the text, too.
        assert_eq!(body(&r).matches("\"ApiKey\"").count(), 1);
    }

    #[test]
    fn invalid_configurations() {
        let s = || SecretString::from("k");
        assert_eq!(
            ApiKey::new(Some("Bad Header"), ApiKeyPlacement::default(), s()).unwrap_err(),
            PayloadError::InvalidHeaderName("Bad Header".into())
        );
        assert!(ApiKey::new(Some(""), ApiKeyPlacement::Query, s()).is_err());
        assert!(ApiKey::new(Some("Metadata"), ApiKeyPlacement::Body, s()).is_err());
        assert!(ApiKey::new(Some("transactions"), ApiKeyPlacement::Body, s()).is_err());
        assert!(ApiKey::new(Some("Version"), ApiKeyPlacement::Metadata, s()).is_err());
        assert!(ApiKey::new(None, ApiKeyPlacement::Query, SecretString::from("")).is_err());
        let e = ApiKey::new(
            None,
            ApiKeyPlacement::default(),
            SecretString::from("a\r\nX-Evil: 1"),
        )
        .unwrap_err();
        assert_eq!(e, PayloadError::InvalidHeaderValue);
        assert!(!e.to_string().contains("Evil"));
        let k = key(None, ApiKeyPlacement::default());
        assert!(!format!("{k:?}").contains("s3cr3t"));
    }

    #[test]
    fn versions() {
        assert_eq!(PayloadVersion::parse("v1").unwrap(), PayloadVersion::LATEST);
        assert_eq!(PayloadVersion::default(), PayloadVersion::V1);
        assert!(PayloadVersion::parse("2").is_err());
    }
}
