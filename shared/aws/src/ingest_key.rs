//! The ingest key SafeSync presents, checked so that rotating it never
//! causes a 401.
//!
//! Secrets Manager keeps the key's versions under staging labels: a new
//! value (`PutSecretValue`, `platformsync ingest-key rotate`) becomes
//! `AWSCURRENT` and the value it replaces becomes `AWSPREVIOUS`. SafeSync
//! cannot switch keys at the same instant as every Lambda container, so a
//! presented key is accepted when it equals either:
//!
//! - a container that still caches the old value sees the new key, finds no
//!   match, and fetches both labels again at once (rate-bounded: at most one
//!   fetch per [`IngestKeys::refetch_interval`], so a flood of wrong keys
//!   cannot turn into a flood of Secrets Manager calls);
//! - a container that already has the new value still accepts the old one as
//!   `AWSPREVIOUS`, until the next rotation makes it unknown.
//!
//! So the grace period of an old key is "until the next rotation", and
//! revoking a leaked key means rotating twice.
//!
//! An empty key never authenticates: an empty presented key is refused
//! before any lookup, and an empty stored version matches nothing.
//!
//! Comparison is constant-time in the key's bytes (both versions are always
//! compared). Values stay `SecretString`; errors name the secret, never a
//! value.

use crate::StoreError;
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, Instant};
use subtle::{Choice, ConstantTimeEq};
use tokio::sync::Mutex;

/// The longest the versions are served from memory (as the secret cache).
pub const MAX_TTL: Duration = Duration::from_secs(300);

/// Default least time between two fetches caused by a key that matched
/// nothing.
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(1);

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";

/// Which version a presented key matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    /// `AWSCURRENT`.
    Current,
    /// `AWSPREVIOUS`: SafeSync still uses the key that was rotated out.
    Previous,
    /// Neither (or the presented key is empty): 401.
    None,
}

/// The two versions a container holds.
#[derive(Debug, Clone, Default)]
struct Versions {
    current: Option<SecretString>,
    previous: Option<SecretString>,
    fetched_at: Option<Instant>,
    /// Last fetch attempt, successful or not: the rate bound.
    attempted_at: Option<Instant>,
}

impl Versions {
    fn fresh(&self, ttl: Duration) -> bool {
        self.fetched_at.is_some_and(|at| at.elapsed() < ttl)
    }

    fn check(&self, presented: &[u8]) -> KeyMatch {
        let current = matches(self.current.as_ref(), presented);
        let previous = matches(self.previous.as_ref(), presented);
        if bool::from(current) {
            KeyMatch::Current
        } else if bool::from(previous) {
            KeyMatch::Previous
        } else {
            KeyMatch::None
        }
    }
}

/// Constant-time in the bytes; an absent or empty stored value matches nothing.
fn matches(stored: Option<&SecretString>, presented: &[u8]) -> Choice {
    match stored {
        Some(s) if !s.expose_secret().is_empty() => s.expose_secret().as_bytes().ct_eq(presented),
        _ => Choice::from(0),
    }
}

/// One container's view of the ingest key secret.
#[derive(Debug)]
pub struct IngestKeys {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    ttl: Duration,
    refetch_interval: Duration,
    versions: Mutex<Versions>,
}

impl IngestKeys {
    /// `ttl` is capped at [`MAX_TTL`]; mismatches refetch at most once per
    /// [`DEFAULT_REFETCH_INTERVAL`].
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        secret_id: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            ttl: ttl.min(MAX_TTL),
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
            versions: Mutex::new(Versions::default()),
        }
    }

    /// Another least time between two mismatch-driven fetches.
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    pub fn refetch_interval(&self) -> Duration {
        self.refetch_interval
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// Which version `presented` is. `Err` only when the secret cannot be
    /// read (answer 503: SafeSync retries); a wrong key is `Ok(None)`.
    pub async fn verify(&self, presented: &str) -> Result<KeyMatch, StoreError> {
        if presented.is_empty() {
            return Ok(KeyMatch::None);
        }
        let presented = presented.as_bytes();
        // One lock for the whole check: concurrent requests of one container
        // wait for one fetch instead of each making their own.
        let mut versions = self.versions.lock().await;
        if !versions.fresh(self.ttl) {
            match self.fetch().await {
                Ok(fetched) => *versions = fetched,
                Err(e) => {
                    versions.attempted_at = Some(Instant::now());
                    return Err(e);
                }
            }
            return Ok(versions.check(presented));
        }
        let found = versions.check(presented);
        if found != KeyMatch::None {
            return Ok(found);
        }
        // Maybe the key was rotated since the last fetch: look again, but
        // not more often than the rate bound allows.
        let recently = versions
            .attempted_at
            .is_some_and(|at| at.elapsed() < self.refetch_interval);
        if recently {
            return Ok(KeyMatch::None);
        }
        match self.fetch().await {
            Ok(fetched) => *versions = fetched,
            Err(e) => {
                versions.attempted_at = Some(Instant::now());
                return Err(e);
            }
        }
        Ok(versions.check(presented))
    }

    /// Both versions, now. `AWSPREVIOUS` is absent before the first rotation.
    async fn fetch(&self) -> Result<Versions, StoreError> {
        let attempted_at = Instant::now();
        let (current, previous) = tokio::join!(self.version(CURRENT), self.version(PREVIOUS));
        let current = current?.ok_or_else(|| StoreError::Malformed {
            resource: "secrets manager".into(),
            key: self.secret_id.clone(),
            message: "the secret has no AWSCURRENT version".into(),
        })?;
        Ok(Versions {
            current: Some(current),
            previous: previous?,
            fetched_at: Some(Instant::now()),
            attempted_at: Some(attempted_at),
        })
    }

    /// The value labelled `stage`; `None` when no version carries the label.
    async fn version(&self, stage: &str) -> Result<Option<SecretString>, StoreError> {
        let out = match self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(StoreError::sdk("GetSecretValue", &self.secret_id, e)),
        };
        out.secret_string()
            .map(|s| Some(SecretString::from(s.to_owned())))
            .ok_or_else(|| StoreError::Malformed {
                resource: "secrets manager".into(),
                key: format!("{} ({stage})", self.secret_id),
                message: "the secret has no string value".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(current: Option<&str>, previous: Option<&str>) -> Versions {
        Versions {
            current: current.map(|s| SecretString::from(s.to_owned())),
            previous: previous.map(|s| SecretString::from(s.to_owned())),
            fetched_at: Some(Instant::now()),
            attempted_at: Some(Instant::now()),
        }
    }

    #[test]
    fn current_and_previous_match_and_nothing_else() {
        let v = versions(Some("new-key"), Some("old-key"));
        assert_eq!(v.check(b"new-key"), KeyMatch::Current);
        assert_eq!(v.check(b"old-key"), KeyMatch::Previous);
        assert_eq!(v.check(b"new-ke"), KeyMatch::None);
        assert_eq!(v.check(b"new-keyy"), KeyMatch::None);
        assert_eq!(v.check(b""), KeyMatch::None);
    }

    #[test]
    fn an_empty_stored_version_matches_nothing() {
        let v = versions(Some(""), None);
        assert_eq!(v.check(b""), KeyMatch::None);
        let v = versions(Some("k"), Some(""));
        assert_eq!(v.check(b""), KeyMatch::None);
        assert_eq!(v.check(b"k"), KeyMatch::Current);
        assert_eq!(Versions::default().check(b"k"), KeyMatch::None);
    }

    #[test]
    fn versions_are_fresh_for_the_ttl_only() {
        let v = versions(Some("k"), None);
        assert!(v.fresh(Duration::from_secs(60)));
        assert!(!v.fresh(Duration::ZERO));
        assert!(!Versions::default().fresh(MAX_TTL));
    }

    #[test]
    fn debug_never_shows_a_key() {
        let text = format!("{:?}", versions(Some("s3cr3t-current"), Some("s3cr3t-old")));
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
