//! Secrets read at run time and cached briefly.
//!
//! Tokens never leave this module except as `SecretString`, whose `Debug`
//! redacts; errors name the secret, never its value. The cache keeps a value
//! at most five minutes (AWS's own Lambda extension caps its cache there), so
//! a rotated key is picked up without a deploy; `refresh` skips the cache for
//! the "401 from the endpoint: maybe the key was just rotated" case.
//!
//! Not the official `aws_secretsmanager_caching` crate: this is the whole of
//! what we need (one map and a clock), and that crate brings its own SDK
//! client configuration.

use crate::StoreError;
use secrecy::SecretString;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The longest a secret value may be served from memory.
pub const MAX_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct SecretCache {
    client: aws_sdk_secretsmanager::Client,
    ttl: Duration,
    entries: Mutex<HashMap<String, (SecretString, Instant)>>,
}

impl SecretCache {
    /// `ttl` is capped at [`MAX_TTL`].
    pub fn new(client: aws_sdk_secretsmanager::Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl: ttl.min(MAX_TTL),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The secret's current value, from the cache while it is fresh.
    pub async fn get(&self, secret_id: &str) -> Result<SecretString, StoreError> {
        if let Some((value, fetched)) = self.entries.lock().await.get(secret_id)
            && fetched.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        self.refresh(secret_id).await
    }

    /// Fetches the secret now, whatever the cache holds.
    pub async fn refresh(&self, secret_id: &str) -> Result<SecretString, StoreError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| StoreError::sdk("GetSecretValue", secret_id, e))?;
        let value = out
            .secret_string()
            .map(|s| SecretString::from(s.to_owned()))
            .ok_or_else(|| StoreError::Malformed {
                resource: "secrets manager".into(),
                key: secret_id.into(),
                message: "the secret has no string value".into(),
            })?;
        self.entries
            .lock()
            .await
            .insert(secret_id.to_owned(), (value.clone(), Instant::now()));
        Ok(value)
    }
}
