//! The API key check: PlatformSync sends the endpoint's key where the
//! endpoint's settings say (a header, `Bearer <key>` or the raw key; a query
//! parameter; a top-level body property; or a property inside `Metadata`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

/// Where the key is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// An HTTP header; with `bearer` its value is `Bearer <key>`, else the raw key.
    Header { bearer: bool },
    /// A query-string parameter.
    Query,
    /// A top-level property of the JSON body.
    Body,
    /// A property inside the body's `Metadata`.
    Metadata,
}

impl FromStr for Placement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "header" => Ok(Placement::Header { bearer: true }),
            "query" => Ok(Placement::Query),
            "body" => Ok(Placement::Body),
            "metadata" => Ok(Placement::Metadata),
            other => Err(format!(
                "unknown key placement {other:?}: use header, query, body or metadata"
            )),
        }
    }
}

/// The expected key, its name and placement. `Debug` never shows the key.
#[derive(Clone)]
pub struct KeyCheck {
    /// Header, query parameter or property name (PlatformSync's default: `Authorization`).
    pub name: String,
    pub placement: Placement,
    key: String,
}

impl fmt::Debug for KeyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCheck")
            .field("name", &self.name)
            .field("placement", &self.placement)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// What the request carried, for the check.
pub(crate) struct Presented<'a> {
    pub headers: &'a hyper::HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a BTreeMap<String, Box<RawValue>>,
    pub metadata: &'a serde_json::Map<String, serde_json::Value>,
}

impl KeyCheck {
    /// `key` must not be empty.
    pub fn new(name: impl Into<String>, placement: Placement, key: impl Into<String>) -> Self {
        KeyCheck {
            name: name.into(),
            placement,
            key: key.into(),
        }
    }

    fn equals(&self, presented: &str) -> bool {
        !self.key.is_empty() && bool::from(presented.as_bytes().ct_eq(self.key.as_bytes()))
    }

    /// Whether the request carries the key where expected.
    pub(crate) fn accepts(&self, request: &Presented<'_>) -> bool {
        match self.placement {
            Placement::Header { bearer } => {
                let Some(value) = request
                    .headers
                    .get(self.name.as_str())
                    .and_then(|v| v.to_str().ok())
                else {
                    return false;
                };
                let token = if bearer {
                    match value.split_once(' ') {
                        Some((scheme, token)) if scheme.eq_ignore_ascii_case("Bearer") => token,
                        _ => return false,
                    }
                } else {
                    value
                };
                self.equals(token)
            }
            Placement::Query => {
                url::form_urlencoded::parse(request.query.unwrap_or_default().as_bytes())
                    .any(|(name, value)| name == self.name && self.equals(&value))
            }
            Placement::Body => request
                .body
                .get(&self.name)
                .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
                .is_some_and(|v| self.equals(&v)),
            Placement::Metadata => request
                .metadata
                .get(&self.name)
                .and_then(|v| v.as_str())
                .is_some_and(|v| self.equals(v)),
        }
    }
}
