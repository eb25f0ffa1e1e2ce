//! What the function reads from its environment (`template.yaml`).

use platformsync_aws::env::{self, EnvError};
use platformsync_domain::quality::QualityPolicy;

/// A synchronous Lambda invocation's request payload is at most 6 MB; a body
/// over it gets 413 before any work.
///
/// On AWS this answer is never seen: Lambda refuses an invocation whose event
/// is over 6 MB before the function runs (the event is the body plus
/// headers, base64 adding a third for binary bodies), and API Gateway HTTP
/// API then answers SafeSync `413 Request Entity Too Large` with its own
/// body `{"message":"Request Entity Too Large"}` (docs/upload.md). Only the
/// local runner and in-process callers see this one.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// How the function is configured.
#[derive(Debug, Clone)]
pub struct Settings {
    pub transactions_table: String,
    pub config_table: String,
    pub rejects_table: String,
    /// ARN or name of the secret holding the key SafeSync presents.
    pub ingest_key_secret: String,
    /// Conditional puts in flight at once.
    pub write_concurrency: usize,
    pub max_body_bytes: usize,
    pub quality: QualityPolicy,
}

impl Settings {
    pub fn from_env() -> Result<Self, EnvError> {
        let defaults = QualityPolicy::default();
        // 0 (the default): no maximum age for RetrievedOn.
        let max_age_hours: i64 = env::parsed_or("RETRIEVED_ON_MAX_AGE_HOURS", 0)?;
        let quality = QualityPolicy {
            future_margin: time::Duration::seconds(env::parsed_or(
                "FUTURE_MARGIN_SECONDS",
                defaults.future_margin.whole_seconds(),
            )?),
            retrieved_max_age: (max_age_hours > 0).then(|| time::Duration::hours(max_age_hours)),
            ..defaults
        };
        Ok(Self {
            transactions_table: env::required("TRANSACTIONS_TABLE")?,
            config_table: env::required("CONFIG_TABLE")?,
            rejects_table: env::required("REJECTS_TABLE")?,
            ingest_key_secret: env::required("INGEST_KEY_SECRET_ARN")?,
            write_concurrency: env::parsed_or("WRITE_CONCURRENCY", 32usize)?.clamp(1, 256),
            max_body_bytes: MAX_BODY_BYTES,
            quality,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Env(#[from] EnvError),
}
