//! Customers and their endpoints, as staff configure them (the spec's
//! "Endpoint settings").
//!
//! These are the stored shapes (PascalCase, as in DynamoDB and the ops CLI's
//! `--json`); [`EndpointSettings::validate`] is the one place their rules
//! live, so the CLI refuses what the push function could not use.
//!
//! The API key itself is never here: only the id of the Secrets Manager
//! secret that holds it.

use crate::payload::{ApiKey, ApiKeyPlacement, DEFAULT_KEY_NAME, PayloadVersion};
use crate::types::{AuditType, MessageKind, TransactionType};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Most transactions in one POST (spec: default and maximum 1000).
pub const MAX_BATCH_SIZE: u16 = 1000;

/// Endpoint metadata rides in every payload and every queue message: keep it small.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " id: 1 to 64 of `[a-z0-9-]`, so it is safe in keys, ARNs and SQS group ids.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, EndpointError> {
                let ok = (1..=64).contains(&s.len())
                    && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if ok {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(EndpointError::InvalidId {
                        what: $what,
                        value: s.to_owned(),
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = EndpointError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Maps keyed by the id are looked up by its text (same hash and order).
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        /// The id as written: checks read ids off records and flags as text.
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(CustomerId, "customer");
id_type!(EndpointId, "endpoint");

/// Where a stage keeps its endpoints' API keys: `platformsync/<stage>/endpoints/`
/// (template.yaml grants the push function `GetSecretValue` under it).
pub fn endpoint_secret_prefix(stage: &str) -> String {
    format!("platformsync/{stage}/endpoints/")
}

impl EndpointId {
    /// The Secrets Manager name of this endpoint's API key under `prefix`
    /// ([`endpoint_secret_prefix`]). Derived from the endpoint's identity,
    /// never read from its record: an id is claimed by one customer only
    /// (the config table's `ENDPOINTID#` claim), so no endpoint can name,
    /// and be sent with, another customer's key.
    pub fn secret_name(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid {what} id {value:?}: use 1 to 64 lowercase letters, digits or '-'")]
    InvalidId { what: &'static str, value: String },
    #[error("URL must be https:// with a host, got {0:?}")]
    NotHttps(String),
    #[error("max batch size must be 1 to {MAX_BATCH_SIZE}, got {0}")]
    BatchSize(u16),
    #[error("whitelist entry {0:?} is not a known transaction or audit type")]
    UnknownWhitelistType(String),
    #[error("message types must not be empty")]
    NoMessageTypes,
    #[error("endpoint metadata is {0} bytes; at most {MAX_METADATA_BYTES}")]
    MetadataTooLarge(usize),
    #[error(transparent)]
    Payload(#[from] crate::payload::PayloadError),
}

/// A label for staff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointType {
    #[default]
    Production,
    Test,
    Development,
}

/// Where the API key goes, as stored (`Bearer` is a separate flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyPlacement {
    #[default]
    Header,
    Body,
    Query,
    Metadata,
}

/// A customer: who gets told when its endpoints fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Customer {
    pub customer_id: CustomerId,
    pub name: String,
    #[serde(default)]
    pub notification_recipients: Vec<String>,
}

fn default_key_name() -> String {
    DEFAULT_KEY_NAME.to_owned()
}
fn default_true() -> bool {
    true
}
fn default_message_types() -> Vec<MessageKind> {
    vec![MessageKind::Transactions]
}
fn default_batch_size() -> u16 {
    MAX_BATCH_SIZE
}

/// One endpoint of a customer: every setting of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    pub endpoint_id: EndpointId,
    pub customer_id: CustomerId,
    pub url: String,
    #[serde(default)]
    pub endpoint_type: EndpointType,
    #[serde(default = "default_key_name")]
    pub api_key_name: String,
    #[serde(default)]
    pub api_key_placement: KeyPlacement,
    /// Header placement only: `Bearer <token>` (ours, default) or the raw
    /// token (as the real service sends it).
    #[serde(default = "default_true")]
    pub bearer: bool,
    /// Informational only: the name the CLI stored the key under, kept so
    /// records written before the name was derived still read. Nothing uses
    /// it to find a key: push and the CLI use [`EndpointId::secret_name`].
    #[serde(default)]
    pub api_key_secret: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Types to send; `None` = all. Either vocabulary's name matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whitelist: Option<Vec<String>>,
    #[serde(default = "default_message_types")]
    pub message_types: Vec<MessageKind>,
    #[serde(default = "default_batch_size")]
    pub max_batch_size: u16,
    /// Pinned payload version; `None` = the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_version: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Signed pushes (Standard Webhooks headers), opt-in. The signing
    /// secrets live with the key in the endpoint's secret, never here; a
    /// record written before signing existed reads as off.
    #[serde(default, skip_serializing_if = "is_false")]
    pub signing: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl EndpointSettings {
    /// Every rule an endpoint must satisfy before anything is sent to it.
    pub fn validate(&self) -> Result<(), EndpointError> {
        let host = self
            .url
            .strip_prefix("https://")
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default())
            .unwrap_or_default();
        if host.is_empty() || host.contains('@') {
            return Err(EndpointError::NotHttps(self.url.clone()));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.max_batch_size) {
            return Err(EndpointError::BatchSize(self.max_batch_size));
        }
        if self.message_types.is_empty() {
            return Err(EndpointError::NoMessageTypes);
        }
        for name in self.whitelist.iter().flatten() {
            if TransactionType::parse(name).is_err() && AuditType::parse(name).is_err() {
                return Err(EndpointError::UnknownWhitelistType(name.clone()));
            }
        }
        let metadata_bytes: usize = self
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum();
        if metadata_bytes > MAX_METADATA_BYTES {
            return Err(EndpointError::MetadataTooLarge(metadata_bytes));
        }
        self.payload_version()?;
        // The key name must suit its placement; checked with a stand-in value.
        self.api_key(SecretString::from("x".to_owned()))?;
        Ok(())
    }

    pub fn placement(&self) -> ApiKeyPlacement {
        match self.api_key_placement {
            KeyPlacement::Header => ApiKeyPlacement::Header {
                bearer: self.bearer,
            },
            KeyPlacement::Body => ApiKeyPlacement::Body,
            KeyPlacement::Query => ApiKeyPlacement::Query,
            KeyPlacement::Metadata => ApiKeyPlacement::Metadata,
        }
    }

    pub fn payload_version(&self) -> Result<PayloadVersion, EndpointError> {
        match &self.payload_version {
            None => Ok(PayloadVersion::LATEST),
            Some(v) => Ok(PayloadVersion::parse(v)?),
        }
    }

    /// The key, placed as configured, once fetched from its secret.
    pub fn api_key(&self, secret: SecretString) -> Result<ApiKey, EndpointError> {
        Ok(ApiKey::new(
            Some(&self.api_key_name),
            self.placement(),
            secret,
        )?)
    }

    /// Whether a stored record of `kind` and canonical `type_name` goes to
    /// this endpoint: enabled, message type subscribed, and whitelisted
    /// under either vocabulary's name.
    pub fn wants(&self, kind: MessageKind, type_name: &str) -> bool {
        if !self.enabled || !self.message_types.contains(&kind) {
            return false;
        }
        let Some(whitelist) = &self.whitelist else {
            return true;
        };
        // `parse` also reads a legacy code (`"30"`): a whitelist stored in
        // codes before registration normalised them still delivers.
        match kind {
            MessageKind::Transactions => TransactionType::parse(type_name).is_ok_and(|t| {
                whitelist
                    .iter()
                    .any(|w| TransactionType::parse(w).is_ok_and(|x| x == t))
            }),
            MessageKind::AuditTransactions => AuditType::parse(type_name)
                .is_ok_and(|t| whitelist.iter().any(|w| t.matches_name(w))),
        }
    }
}

/// A whitelist entry as it is stored: a transaction type's legacy numeric
/// code (`30`) becomes its canonical name (`CashIn`), so the stored list and
/// what staff see are in names; a name of either vocabulary is kept as given
/// (trimmed). `None` for an entry that names no transaction or audit type.
pub fn normalize_whitelist_entry(entry: &str) -> Option<String> {
    let entry = entry.trim();
    let is_code = !entry.is_empty() && entry.bytes().all(|b| b.is_ascii_digit());
    if is_code {
        return TransactionType::parse(entry)
            .ok()
            .map(|t| t.canonical_name().to_owned());
    }
    (TransactionType::parse(entry).is_ok() || AuditType::parse(entry).is_ok())
        .then(|| entry.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_with_their_text() {
        let id = CustomerId::parse("acme").unwrap();
        assert_eq!(id, "acme");
        assert_ne!(id, "globex");
        assert_ne!(EndpointId::parse("ep-1").unwrap(), "EP-1");
    }

    fn endpoint() -> EndpointSettings {
        serde_json::from_value(serde_json::json!({
            "EndpointId": "ep-1",
            "CustomerId": "acme",
            "Url": "https://hooks.example.com/push",
            "ApiKeySecret": "platformsync/prod/endpoints/ep-1",
        }))
        .unwrap()
    }

    #[test]
    fn the_secret_name_comes_from_the_id_not_the_record() {
        let mut e = endpoint();
        e.api_key_secret = "platformsync/prod/endpoints/someone-else".into();
        assert_eq!(
            e.endpoint_id.secret_name(&endpoint_secret_prefix("prod")),
            "platformsync/prod/endpoints/ep-1"
        );
        let old: EndpointSettings = serde_json::from_value(serde_json::json!({
            "EndpointId": "ep-2", "CustomerId": "acme", "Url": "https://h.example/x",
        }))
        .unwrap();
        assert_eq!(old.api_key_secret, "", "the field is no longer required");
    }

    #[test]
    fn signing_is_off_unless_stored_on() {
        let e = endpoint();
        assert!(!e.signing, "old records read as unsigned");
        let stored = serde_json::to_value(&e).unwrap();
        assert!(
            stored.get("Signing").is_none(),
            "unsigned records are unchanged"
        );
        let mut on = e.clone();
        on.signing = true;
        let stored = serde_json::to_value(&on).unwrap();
        assert_eq!(stored["Signing"], true);
        let back: EndpointSettings = serde_json::from_value(stored).unwrap();
        assert!(back.signing);
    }

    #[test]
    fn defaults_follow_the_spec() {
        let e = endpoint();
        assert_eq!(e.api_key_name, "Authorization");
        assert_eq!(e.placement(), ApiKeyPlacement::Header { bearer: true });
        assert_eq!(e.max_batch_size, 1000);
        assert_eq!(e.message_types, vec![MessageKind::Transactions]);
        assert!(e.enabled && e.whitelist.is_none());
        assert_eq!(e.payload_version().unwrap(), PayloadVersion::LATEST);
        e.validate().unwrap();
    }

    #[test]
    fn whitelist_matches_either_vocabulary() {
        let mut e = endpoint();
        e.whitelist = Some(vec!["ValidatedCashIn".into(), "ChangeRequest".into()]);
        assert!(e.wants(MessageKind::Transactions, "CashIn"));
        assert!(e.wants(MessageKind::Transactions, "ChangeRequest"));
        assert!(!e.wants(MessageKind::Transactions, "Servicing"));
        assert!(
            !e.wants(MessageKind::AuditTransactions, "DoorOpened"),
            "audits not subscribed"
        );
        e.message_types.push(MessageKind::AuditTransactions);
        e.whitelist = None;
        assert!(e.wants(MessageKind::AuditTransactions, "DoorOpened"));
        e.enabled = false;
        assert!(!e.wants(MessageKind::Transactions, "CashIn"));
    }

    #[test]
    fn legacy_codes_in_a_whitelist_become_names_and_still_match() {
        assert_eq!(normalize_whitelist_entry(" 30 ").as_deref(), Some("CashIn"));
        assert_eq!(
            normalize_whitelist_entry("ValidatedCashIn").as_deref(),
            Some("ValidatedCashIn")
        );
        assert_eq!(
            normalize_whitelist_entry("dooropened").as_deref(),
            Some("dooropened")
        );
        assert_eq!(normalize_whitelist_entry("999"), None);
        assert_eq!(normalize_whitelist_entry("CashOut"), None);
        assert_eq!(normalize_whitelist_entry(""), None);
        // A list stored in codes before normalisation still delivers.
        let mut e = endpoint();
        e.whitelist = Some(vec!["30".into()]);
        assert!(e.wants(MessageKind::Transactions, "CashIn"));
        assert!(!e.wants(MessageKind::Transactions, "ChangeRequest"));
    }

    #[test]
    fn invalid_settings_are_refused_with_the_reason() {
        type Mutation = fn(&mut EndpointSettings);
        let cases: Vec<(Mutation, &str)> = vec![
            (|e| e.url = "http://hooks.example.com".into(), "https"),
            (|e| e.url = "https://user:pw@example.com".into(), "https"),
            (|e| e.max_batch_size = 0, "batch size"),
            (|e| e.max_batch_size = 1001, "batch size"),
            (|e| e.whitelist = Some(vec!["CashOut".into()]), "CashOut"),
            (|e| e.message_types.clear(), "message types"),
            (|e| e.payload_version = Some("7".into()), "version"),
            (
                |e| {
                    e.metadata.insert("k".into(), "v".repeat(9000));
                },
                "metadata",
            ),
            (
                |e| {
                    e.api_key_placement = KeyPlacement::Metadata;
                    e.api_key_name = "MessageId".into();
                },
                "collide",
            ),
        ];
        for (mutate, needle) in cases {
            let mut e = endpoint();
            mutate(&mut e);
            let err = e.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        assert!(EndpointId::parse("Ep_1").is_err());
        assert!(CustomerId::parse("").is_err());
        assert!(serde_json::from_str::<EndpointId>("\"UPPER\"").is_err());
    }

    #[test]
    fn stored_form_round_trips() {
        let mut e = endpoint();
        e.whitelist = Some(vec!["CashIn".into()]);
        e.api_key_placement = KeyPlacement::Query;
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains(r#""ApiKeyPlacement":"query""#), "{text}");
        assert_eq!(serde_json::from_str::<EndpointSettings>(&text).unwrap(), e);
    }
}
