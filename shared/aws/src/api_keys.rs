//! Customer API keys for the pull API.
//!
//! A key is `psk_<key id>_<secret>`: 16 hex digits naming the key, then 64
//! hex digits (256 random bits). It is shown once, when it is created; the
//! configuration table keeps only a salted hash:
//!
//! | item | PK | SK |
//! |---|---|---|
//! | API key | `APIKEY#<key id>` | `APIKEY` |
//!
//! with `CustomerId`, `Salt` (16 random bytes), `Hash` = SHA-256(salt ||
//! secret), `CreatedAt` and, once revoked, `RevokedAt`.
//!
//! Why SHA-256 and not a password KDF (argon2, scrypt): the secret is 256
//! random bits, not something a person chose, so there is nothing to guess
//! and a slow hash would only slow every request. The salt keeps equal
//! secrets (there are none in practice) from having equal hashes. The hash
//! is compared in constant time (`subtle`).
//!
//! Randomness comes from the operating system's CSPRNG through `uuid`'s v4
//! (`getrandom`, already in the tree): 122 random bits per UUID.
//!
//! Verification is one strongly consistent `GetItem` by key id, with no
//! cache, so a revoked key is refused at once.

use crate::StoreError;
use crate::dynamo::{self, Item, s};
use aws_sdk_dynamodb::Client;
use platformsync_domain::endpoint::CustomerId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "psk_";
const KEY_ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;
const SK: &str = "APIKEY";

fn key(key_id: &str) -> Item {
    dynamo::pk_sk((format!("APIKEY#{key_id}"), SK.to_owned()))
}

/// `n` random bytes from the OS CSPRNG (UUID v4s, version bits dropped).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        // Bytes 6 and 8 carry the version and variant bits: skip them.
        out.extend(
            bytes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 6 && *i != 8)
                .map(|(_, b)| *b),
        );
    }
    out.truncate(n);
    out
}

/// SHA-256(salt || secret).
pub fn hash(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// The key id and secret of a presented key, if it has the shape of one.
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.trim().strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, KEY_ID_HEX) && hex(secret, SECRET_HEX)).then_some((id, secret))
}

/// One stored key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub customer_id: CustomerId,
    /// Hex.
    pub salt: String,
    /// Hex SHA-256(salt || secret).
    pub hash: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// A note for staff (who the key was given to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl ApiKeyRecord {
    /// Whether `secret` is this key's, in constant time; a revoked key
    /// matches nothing.
    pub fn matches(&self, secret: &str) -> bool {
        let (Ok(salt), Ok(stored)) = (hex::decode(&self.salt), hex::decode(&self.hash)) else {
            return false;
        };
        let computed = hash(&salt, secret);
        let equal: bool = computed.as_slice().ct_eq(stored.as_slice()).into();
        equal && self.revoked_at.is_none()
    }
}

/// A new key: the record to store and the key to show once.
pub fn generate(
    customer_id: &CustomerId,
    created_at: &str,
    label: Option<String>,
) -> (SecretString, ApiKeyRecord) {
    let key_id = hex::encode(random_bytes(KEY_ID_HEX / 2));
    let secret = hex::encode(random_bytes(SECRET_HEX / 2));
    let salt = random_bytes(16);
    let record = ApiKeyRecord {
        key_id: key_id.clone(),
        customer_id: customer_id.clone(),
        salt: hex::encode(&salt),
        hash: hex::encode(hash(&salt, &secret)),
        created_at: created_at.to_owned(),
        revoked_at: None,
        label,
    };
    (
        SecretString::from(format!("{PREFIX}{key_id}_{secret}")),
        record,
    )
}

/// The outcome of checking a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// A valid key of this customer.
    Customer(CustomerId),
    /// Unknown, malformed, wrong secret or revoked: all look alike to the caller.
    Refused,
}

#[derive(Debug, Clone)]
pub struct ApiKeyStore {
    client: Client,
    table: String,
}

impl ApiKeyStore {
    /// `table`: the configuration table.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Makes and stores a new key for `customer_id`; returns the key (show
    /// it once) and its record.
    pub async fn create(
        &self,
        customer_id: &CustomerId,
        created_at: &str,
        label: Option<String>,
    ) -> Result<(SecretString, ApiKeyRecord), StoreError> {
        let (presented, record) = generate(customer_id, created_at, label);
        let mut item = dynamo::encode(&self.table, &record.key_id, &record)?;
        item.extend(key(&record.key_id));
        // A key id is 64 random bits; never overwrite one all the same.
        if !dynamo::put_if_absent(&self.client, &self.table, item, "PK").await? {
            return Err(StoreError::Service {
                operation: "PutItem",
                resource: self.table.clone(),
                message: format!(
                    "key id {} is taken (ConditionalCheckFailedException)",
                    record.key_id
                ),
                retryable: false,
            });
        }
        Ok((presented, record))
    }

    /// The stored record of a key id.
    pub async fn record(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        // Consistent: a revocation must be seen by the next request.
        dynamo::get(&self.client, &self.table, key(key_id), true, key_id).await
    }

    /// Checks a presented key: one `GetItem`, constant-time comparison.
    pub async fn verify(&self, presented: &SecretString) -> Result<Verified, StoreError> {
        let Some((key_id, secret)) = parse(presented.expose_secret()) else {
            return Ok(Verified::Refused);
        };
        Ok(match self.record(key_id).await? {
            Some(r) if r.matches(secret) => Verified::Customer(r.customer_id),
            _ => Verified::Refused,
        })
    }

    /// A customer's keys (revoked ones too): a scan, for the ops CLI only.
    pub async fn list(&self, customer_id: &CustomerId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let customer_id = customer_id.as_str();
        let scan = self
            .client
            .scan()
            .filter_expression("SK = :sk AND CustomerId = :c")
            .expression_attribute_values(":sk", s(SK))
            .expression_attribute_values(":c", s(customer_id));
        let items = dynamo::scan_all(&self.table, scan).await?;
        let mut keys: Vec<ApiKeyRecord> = dynamo::decode_all(&self.table, customer_id, items)?;
        keys.sort_by(|a, b| (&a.created_at, &a.key_id).cmp(&(&b.created_at, &b.key_id)));
        Ok(keys)
    }

    /// Revokes a key of `customer_id`. `Ok(false)`: no such key of that
    /// customer. Revoking twice keeps the first time.
    pub async fn revoke(
        &self,
        customer_id: &CustomerId,
        key_id: &str,
        revoked_at: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(key_id)))
            .update_expression("SET RevokedAt = if_not_exists(RevokedAt, :at)")
            .condition_expression("attribute_exists(PK) AND CustomerId = :c")
            .expression_attribute_values(":at", s(revoked_at))
            .expression_attribute_values(":c", s(customer_id.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if dynamo::is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(StoreError::sdk("UpdateItem", &self.table, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> CustomerId {
        CustomerId::parse("acme").unwrap()
    }

    #[test]
    fn a_generated_key_verifies_and_only_it() {
        let (key, record) = generate(&acme(), "2026-01-01T00:00:00Z", None);
        let (id, secret) = parse(key.expose_secret()).unwrap();
        assert_eq!(id, record.key_id);
        assert!(record.matches(secret));
        let mut wrong = secret.to_owned();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(63.., last);
        assert!(!record.matches(&wrong));
        assert!(!record.matches(""));
        // Nothing of the secret is stored.
        let stored = serde_json::to_string(&record).unwrap();
        assert!(!stored.contains(secret));
        let revoked = ApiKeyRecord {
            revoked_at: Some("x".into()),
            ..record
        };
        assert!(!revoked.matches(secret));
    }

    #[test]
    fn keys_and_salts_differ() {
        let (k1, r1) = generate(&acme(), "", None);
        let (k2, r2) = generate(&acme(), "", None);
        assert_ne!(k1.expose_secret(), k2.expose_secret());
        assert_ne!(r1.salt, r2.salt);
        assert_ne!(r1.key_id, r2.key_id);
        assert_eq!(k1.expose_secret().len(), 4 + 16 + 1 + 64);
    }

    #[test]
    fn malformed_keys_are_not_parsed() {
        let id = "0123456789abcdef";
        let secret = "ab".repeat(32);
        assert!(parse(&format!("psk_{id}_{secret}")).is_some());
        for bad in [
            String::new(),
            format!("{id}_{secret}"),
            format!("psk_{id}{secret}"),
            format!("psk_{id}_{secret}0"),
            format!("psk_{}_{secret}", &id[1..]),
            format!("psk_{id}_{}", "zz".repeat(32)),
        ] {
            assert!(parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn random_bytes_are_random_enough() {
        let a = random_bytes(32);
        let b = random_bytes(32);
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
