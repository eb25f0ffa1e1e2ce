//! Signed pushes (Standard Webhooks, `v1` = HMAC-SHA256), opt-in per endpoint.
//!
//! A push to a signing endpoint carries `webhook-id` (the batch's MessageId,
//! the same on every retry), `webhook-timestamp` (Unix seconds of the
//! attempt: every attempt is signed again, receivers reject timestamps more
//! than 5 minutes off) and `webhook-signature`: `v1,<base64 HMAC-SHA256(key,
//! "{id}.{timestamp}.{body}")>`, one per valid secret, space-separated (two
//! during a rotation's grace period).
//!
//! The signing secrets live in the endpoint's own Secrets Manager secret
//! (`platformsync/<stage>/endpoints/<id>`) next to its API key, as an
//! [`EndpointSecret`] document; a secret holding only the plain key (every
//! secret written before signing existed) reads as "a key, no signing
//! secrets". One secret, so the push function's cache refresh stays one
//! `GetSecretValue`.
//!
//! Pure: callers pass the time in.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The prefix of a signing secret's text form (Standard Webhooks, svix).
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest random bytes in a signing secret (the spec's minimum).
pub const MIN_SECRET_BYTES: usize = 24;
/// Most bytes in a signing secret (the spec's maximum).
pub const MAX_SECRET_BYTES: usize = 64;
/// The grace period during which a rotated-out secret still signs.
pub const DEFAULT_GRACE_SECONDS: i64 = 24 * 3600;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("a signing secret starts with {SECRET_PREFIX:?}")]
    NoPrefix,
    #[error("a signing secret is base64 after {SECRET_PREFIX:?}")]
    NotBase64,
    #[error(
        "a signing secret has {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, this one has {0}"
    )]
    Length(usize),
    /// The endpoint's secret is a JSON document we cannot read. The message
    /// names the problem, never a value.
    #[error("endpoint secret document unreadable: {0}")]
    Document(String),
}

/// One HMAC signing secret: 24 to 64 bytes, written `whsec_<base64>`.
/// `Debug` never shows it.
#[derive(Clone)]
pub struct SigningSecret(SecretSlice<u8>);

impl SigningSecret {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, SigningError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(SigningError::Length(bytes.len()));
        }
        Ok(Self(SecretSlice::from(bytes)))
    }

    /// Reads `whsec_<base64>` (standard alphabet, padded).
    pub fn parse(text: &str) -> Result<Self, SigningError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SigningError::NoPrefix)?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| SigningError::NotBase64)?;
        Self::from_bytes(bytes)
    }

    /// The `whsec_<base64>` text form, what the customer verifies with.
    pub fn to_text(&self) -> SecretString {
        SecretString::from(format!(
            "{SECRET_PREFIX}{}",
            BASE64.encode(self.0.expose_secret())
        ))
    }

    /// `None` never happens: HMAC takes a key of any length (ours has
    /// 24..=64 bytes by construction).
    fn signature(&self, content: &[&[u8]]) -> Option<String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret()).ok()?;
        for part in content {
            mac.update(part);
        }
        Some(BASE64.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose_secret() == other.0.expose_secret()
    }
}

/// `webhook-signature`: `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`
/// for each of `secrets`, space-separated. `body` is exactly the bytes sent.
pub fn sign(id: &str, timestamp: i64, body: &[u8], secrets: &[SigningSecret]) -> String {
    let prefix = format!("{id}.{timestamp}.");
    secrets
        .iter()
        .filter_map(|s| s.signature(&[prefix.as_bytes(), body]))
        .map(|signature| format!("v1,{signature}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A signing secret and, once rotated out, when it stops signing.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningEntry {
    pub secret: SigningSecret,
    /// Unix seconds; `None` = the current secret.
    pub expires_at: Option<i64>,
}

impl SigningEntry {
    pub fn valid_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

/// What the endpoint's Secrets Manager secret holds: its API key and its
/// signing secrets. Stored as the plain key while there are no signing
/// secrets (as before signing existed), else as
/// `{"Key": "...", "Signing": [{"Secret": "whsec_...", "ExpiresAt": 1700000000}]}`.
#[derive(Debug, Clone)]
pub struct EndpointSecret {
    pub key: SecretString,
    /// Newest first.
    pub signing: Vec<SigningEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Document {
    key: String,
    #[serde(default)]
    signing: Vec<DocumentEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DocumentEntry {
    secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

impl EndpointSecret {
    /// A key without signing secrets.
    pub fn plain(key: SecretString) -> Self {
        Self {
            key,
            signing: Vec::new(),
        }
    }

    /// Reads a stored value. A JSON object with a `Key` or `Signing` member
    /// is a document and must read in full (a broken document is an error,
    /// never sent as a key); anything else is a plain key.
    pub fn parse(text: &str) -> Result<Self, SigningError> {
        let looks_like_document = text.trim_start().starts_with('{')
            && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                .is_ok_and(|m| m.contains_key("Key") || m.contains_key("Signing"));
        if !looks_like_document {
            return Ok(Self::plain(SecretString::from(text.to_owned())));
        }
        // serde_json's message names the position and field, not the value.
        let doc: Document = serde_json::from_str(text).map_err(|e| {
            SigningError::Document(format!("line {} column {}", e.line(), e.column()))
        })?;
        let signing = doc
            .signing
            .into_iter()
            .map(|e| {
                Ok(SigningEntry {
                    secret: SigningSecret::parse(&e.secret)?,
                    expires_at: e.expires_at,
                })
            })
            .collect::<Result<Vec<_>, SigningError>>()?;
        Ok(Self {
            key: SecretString::from(doc.key),
            signing,
        })
    }

    /// The value to store: the plain key while there is no signing secret.
    pub fn to_stored(&self) -> SecretString {
        if self.signing.is_empty() {
            return self.key.clone();
        }
        let doc = Document {
            key: self.key.expose_secret().to_owned(),
            signing: self
                .signing
                .iter()
                .map(|e| DocumentEntry {
                    secret: e.secret.to_text().expose_secret().to_owned(),
                    expires_at: e.expires_at,
                })
                .collect(),
        };
        // Serializing strings and integers cannot fail.
        SecretString::from(serde_json::to_string(&doc).unwrap_or_default())
    }

    /// The secrets that sign at `now`, newest first.
    pub fn signing_at(&self, now: i64) -> Vec<SigningSecret> {
        self.signing
            .iter()
            .filter(|e| e.valid_at(now))
            .map(|e| e.secret.clone())
            .collect()
    }

    /// Makes `new` the current signing secret. Secrets still valid keep
    /// signing until `now + grace_seconds` (or their own earlier end); those
    /// already expired are dropped.
    pub fn rotate(&mut self, new: SigningSecret, now: i64, grace_seconds: i64) {
        let until = now.saturating_add(grace_seconds.max(0));
        let mut kept: Vec<SigningEntry> = self
            .signing
            .drain(..)
            .filter(|e| e.valid_at(now))
            .map(|e| SigningEntry {
                expires_at: Some(e.expires_at.map_or(until, |t| t.min(until))),
                secret: e.secret,
            })
            .filter(|e| e.valid_at(now))
            .collect();
        self.signing = vec![SigningEntry {
            secret: new,
            expires_at: None,
        }];
        self.signing.append(&mut kept);
    }

    /// Removes every signing secret (signing switched off).
    pub fn clear_signing(&mut self) {
        self.signing.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks / svix documentation.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret(byte: u8) -> SigningSecret {
        SigningSecret::from_bytes(vec![byte; 32]).unwrap()
    }

    #[test]
    fn the_documented_example_signs_as_published() {
        let s = SigningSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(sign(SPEC_ID, SPEC_TS, SPEC_BODY, &[s]), SPEC_SIGNATURE);
    }

    #[test]
    fn one_signature_per_secret_space_separated() {
        let spec = SigningSecret::parse(SPEC_SECRET).unwrap();
        let header = sign(SPEC_ID, SPEC_TS, SPEC_BODY, &[secret(1), spec]);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts[0].starts_with("v1,") && parts[0] != SPEC_SIGNATURE);
        assert_eq!(parts[1], SPEC_SIGNATURE);
        assert_eq!(sign(SPEC_ID, SPEC_TS, SPEC_BODY, &[]), "");
    }

    #[test]
    fn secrets_parse_and_format_whsec() {
        let s = SigningSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(s.to_text().expose_secret(), SPEC_SECRET);
        assert_eq!(
            SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SigningError::NoPrefix)
        );
        assert_eq!(
            SigningSecret::parse("whsec_not base64!"),
            Err(SigningError::NotBase64)
        );
        let short = format!("{SECRET_PREFIX}{}", BASE64.encode([7u8; 23]));
        assert_eq!(SigningSecret::parse(&short), Err(SigningError::Length(23)));
        assert_eq!(
            SigningSecret::from_bytes(vec![0; 65]),
            Err(SigningError::Length(65))
        );
        assert!(SigningSecret::from_bytes(vec![0; 64]).is_ok());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let s = SigningSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(format!("{s:?}"), "SigningSecret([redacted])");
        let mut doc = EndpointSecret::plain(SecretString::from("tok-123456".to_owned()));
        doc.rotate(s, 0, 10);
        let shown = format!("{doc:?}");
        assert!(
            !shown.contains("tok-123456") && !shown.contains("MfKQ9r8G"),
            "{shown}"
        );
    }

    #[test]
    fn a_plain_key_reads_as_a_key_without_signing_and_is_stored_as_is() {
        for text in ["tok-123456", "{not json", r#"{"token":"x"}"#] {
            let doc = EndpointSecret::parse(text).unwrap();
            assert_eq!(doc.key.expose_secret(), text);
            assert!(doc.signing.is_empty());
            assert_eq!(doc.to_stored().expose_secret(), text);
        }
    }

    #[test]
    fn a_document_round_trips_and_a_broken_one_is_an_error() {
        let mut doc = EndpointSecret::plain(SecretString::from("tok-1".to_owned()));
        doc.rotate(secret(1), 1_000, 100);
        doc.rotate(secret(2), 1_010, 100);
        let stored = doc.to_stored();
        let back = EndpointSecret::parse(stored.expose_secret()).unwrap();
        assert_eq!(back.key.expose_secret(), "tok-1");
        assert_eq!(back.signing, doc.signing);
        assert_eq!(back.signing[1].expires_at, Some(1_110));

        for broken in [
            r#"{"Key":"tok","Signing":[{"Secret":"whsec_x"}]}"#,
            r#"{"Signing":[]}"#,
            r#"{"Key":"tok","Signing":"whsec_x"}"#,
        ] {
            let err = EndpointSecret::parse(broken).unwrap_err();
            assert!(!err.to_string().contains("tok"), "{err}");
        }
    }

    #[test]
    fn rotation_signs_with_both_during_grace_then_only_the_new() {
        let mut doc = EndpointSecret::plain(SecretString::from("tok".to_owned()));
        doc.rotate(secret(1), 1_000, DEFAULT_GRACE_SECONDS);
        assert_eq!(doc.signing_at(1_000), vec![secret(1)]);

        doc.rotate(secret(2), 2_000, 60);
        assert_eq!(doc.signing_at(2_000), vec![secret(2), secret(1)]);
        assert_eq!(doc.signing_at(2_059), vec![secret(2), secret(1)]);
        assert_eq!(doc.signing_at(2_060), vec![secret(2)]);

        // A rotation during grace never extends an old secret's end.
        doc.rotate(secret(3), 2_030, 3_600);
        assert_eq!(doc.signing.len(), 3);
        assert_eq!(doc.signing[2].expires_at, Some(2_060));
        // After its end it is dropped at the next rotation.
        doc.rotate(secret(4), 9_000, 0);
        assert_eq!(doc.signing_at(9_000), vec![secret(4)]);
        assert_eq!(doc.signing.len(), 1);
    }

    #[test]
    fn an_independent_implementation_verifies_our_signatures() {
        let s = secret(9);
        let text = s.to_text();
        let id = "0b8f6c1e-6f57-4c3a-9b3e-2f1d5a7c9e10";
        let ts = 1_767_000_000;
        let body = br#"{"Metadata":{"MessageId":"x"},"Transactions":[{"Amount":5560.0000}]}"#;
        let signature = sign(id, ts, body, &[secret(8), s]);
        let webhook = standardwebhooks::Webhook::new(text.expose_secret()).unwrap();
        // `verify` checks the time too; its `sign` is the pure part.
        let theirs = webhook.sign(id, ts, body).unwrap();
        assert!(
            signature.split(' ').any(|part| part == theirs),
            "{signature} vs {theirs}"
        );

        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let headers = |body: &[u8], ts: i64| {
            let mut h = http::HeaderMap::new();
            h.insert(HEADER_ID, id.parse().unwrap());
            h.insert(HEADER_TIMESTAMP, ts.to_string().parse().unwrap());
            h.insert(
                HEADER_SIGNATURE,
                sign(id, ts, body, &[secret(8), secret(9)]).parse().unwrap(),
            );
            h
        };
        assert!(webhook.verify(body, &headers(body, now)).is_ok());
        let tampered = br#"{"Metadata":{"MessageId":"x"},"Transactions":[{"Amount":9999.0000}]}"#;
        assert!(webhook.verify(tampered, &headers(body, now)).is_err());
        assert!(webhook.verify(body, &headers(body, now - 600)).is_err());
        let other = standardwebhooks::Webhook::new(secret(7).to_text().expose_secret()).unwrap();
        assert!(other.verify(body, &headers(body, now)).is_err());
    }
}
