//! How the fan-out is configured (from `template.yaml`'s environment).

use platformsync_aws::delivery_queue::RetryPolicy;
use platformsync_aws::env::{self, EnvError};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub config_table: String,
    pub delivery_queue_url: String,
    /// Where bodies of records absent from a replayed event are read from
    /// (`TRANSACTIONS_TABLE`). Without it such a replay fails (transient).
    pub transactions_table: Option<String>,
    /// How long safe owners and endpoints are reused (`CONFIG_CACHE_SECONDS`,
    /// default 60): the bound on how stale a routing decision can be.
    pub config_cache_ttl: Duration,
    /// Time allowed when no Lambda deadline is known (`TIME_BUDGET_SECONDS`,
    /// default 50; keep it below the function timeout).
    pub time_budget: Duration,
    /// No AWS request starts closer than this to the deadline
    /// (`DEADLINE_MARGIN_SECONDS`, default 10): one request's worst case
    /// (every client's operation timeout is 8 s) plus the answer.
    pub deadline_margin: Duration,
    /// Attempts per message within one invocation, the first included
    /// (`SEND_ATTEMPTS`, default 5). Beyond them the batch is retried by
    /// Lambda, from the plan.
    pub send_attempts: u32,
    /// Wait before the first retry of a failed entry; doubles each time.
    pub send_backoff: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Env(#[from] EnvError),
}

impl Settings {
    /// The defaults for a config table and a delivery queue.
    pub fn new(config_table: impl Into<String>, delivery_queue_url: impl Into<String>) -> Self {
        Self {
            config_table: config_table.into(),
            delivery_queue_url: delivery_queue_url.into(),
            transactions_table: None,
            config_cache_ttl: Duration::from_secs(60),
            time_budget: Duration::from_secs(50),
            deadline_margin: Duration::from_secs(10),
            send_attempts: 5,
            send_backoff: Duration::from_millis(100),
        }
    }

    pub fn from_env() -> Result<Self, EnvError> {
        let mut settings = Self::new(
            env::required("CONFIG_TABLE")?,
            env::required("DELIVERY_QUEUE_URL")?,
        );
        settings.transactions_table = Some(env::required("TRANSACTIONS_TABLE")?);
        settings.config_cache_ttl =
            Duration::from_secs(env::parsed_or("CONFIG_CACHE_SECONDS", 60u64)?.min(3600));
        settings.time_budget =
            Duration::from_secs(env::parsed_or("TIME_BUDGET_SECONDS", 50u64)?.clamp(1, 900));
        settings.deadline_margin =
            Duration::from_secs(env::parsed_or("DEADLINE_MARGIN_SECONDS", 10u64)?.min(300));
        settings.send_attempts = env::parsed_or("SEND_ATTEMPTS", 5u32)?.clamp(1, 20);
        Ok(settings)
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.send_attempts,
            base_backoff: self.send_backoff,
            max_backoff: Duration::from_secs(2),
            deadline_margin: self.deadline_margin,
        }
    }
}
