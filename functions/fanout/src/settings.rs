//! How the fan-out is configured (from `template.yaml`'s environment).

use platformsync_aws::Calls;
use platformsync_aws::config::{Function, Reader, knob};
use platformsync_aws::delivery_queue::RetryPolicy;
use platformsync_aws::env::EnvError;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub config_table: String,
    pub delivery_queue_url: String,
    /// Where bodies of records absent from a replayed event are read from
    /// (`TRANSACTIONS_TABLE`). Without it such a replay fails (transient).
    pub transactions_table: Option<String>,
    /// How long safe owners and endpoints are reused (`CONFIG_CACHE_SECONDS`,
    /// default 30): the bound on how stale a routing decision can be.
    pub config_cache_ttl: Duration,
    /// Time allowed when no Lambda deadline is known (`TIME_BUDGET_SECONDS`,
    /// default 50; keep it below the function timeout).
    pub time_budget: Duration,
    /// No AWS request starts closer than this to the deadline
    /// (`DEADLINE_MARGIN_SECONDS`, default 10): one request's worst case
    /// (`calls.operation_timeout`) plus the answer.
    pub deadline_margin: Duration,
    /// Attempts and timeouts of every AWS call (`AWS_MAX_ATTEMPTS` 3,
    /// `AWS_OPERATION_TIMEOUT_MS` 8 s, `AWS_ATTEMPT_TIMEOUT_MS` 3 s).
    pub calls: Calls,
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
    /// The table's defaults for a config table and a delivery queue.
    pub fn new(config_table: impl Into<String>, delivery_queue_url: impl Into<String>) -> Self {
        let fanout = Function::Fanout;
        Self {
            config_table: config_table.into(),
            delivery_queue_url: delivery_queue_url.into(),
            transactions_table: None,
            config_cache_ttl: knob::CONFIG_CACHE_SECONDS.default_duration_for(fanout),
            time_budget: knob::TIME_BUDGET_SECONDS.default_duration_for(fanout),
            deadline_margin: knob::DEADLINE_MARGIN_SECONDS.default_duration_for(fanout),
            calls: Calls::defaults_for(fanout),
            send_attempts: knob::SEND_ATTEMPTS.default_for(fanout).unwrap_or(1) as u32,
            send_backoff: Duration::from_millis(100),
        }
    }

    /// The fan-out's settings from the process environment (Lambda).
    pub fn from_env() -> Result<Self, EnvError> {
        Self::load(&Reader::from_env(Function::Fanout))
    }

    /// The settings from `reader` (the fan-out's or stream-recovery's
    /// knobs: the same ones), through the knob table
    /// (`platformsync_aws::config`: defaults, bounds, docs/configuration.md).
    pub fn load(reader: &Reader<'_>) -> Result<Self, EnvError> {
        let mut settings = Self::new(
            reader.text(&knob::CONFIG_TABLE)?,
            reader.text(&knob::DELIVERY_QUEUE_URL)?,
        );
        settings.transactions_table = Some(reader.text(&knob::TRANSACTIONS_TABLE)?);
        settings.config_cache_ttl = reader.duration(&knob::CONFIG_CACHE_SECONDS)?;
        settings.time_budget = reader.duration(&knob::TIME_BUDGET_SECONDS)?;
        settings.deadline_margin = reader.duration(&knob::DEADLINE_MARGIN_SECONDS)?;
        settings.calls = Calls::from_knobs(reader)?;
        settings.send_attempts = reader.count(&knob::SEND_ATTEMPTS)?;
        // The margin exists to let one request finish before the deadline.
        if settings.deadline_margin < settings.calls.operation_timeout {
            return Err(EnvError::Invalid {
                name: knob::DEADLINE_MARGIN_SECONDS.name,
                reason: format!(
                    "{:?} is less than AWS_OPERATION_TIMEOUT_MS ({:?})",
                    settings.deadline_margin, settings.calls.operation_timeout
                ),
            });
        }
        Ok(settings)
    }

    /// The SDK clients' timeouts (the `SdkConfig` of `from_env` carries
    /// them too; tests hand the function their own).
    pub fn timeouts(&self) -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
        self.calls.timeouts()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(function: Function, extra: &[(&str, &str)]) -> Result<Settings, EnvError> {
        let required = [
            ("CONFIG_TABLE", "c"),
            ("DELIVERY_QUEUE_URL", "q"),
            ("TRANSACTIONS_TABLE", "t"),
        ];
        let vars: HashMap<&str, &str> = required.iter().chain(extra).copied().collect();
        Settings::load(&Reader::with_lookup(function, |n| {
            vars.get(n).map(|v| v.to_string())
        }))
    }

    #[test]
    fn defaults_are_the_tables() {
        let s = load(Function::Fanout, &[]).unwrap();
        assert_eq!(s.config_cache_ttl, Duration::from_secs(30));
        assert_eq!(s.time_budget, Duration::from_secs(50));
        assert_eq!(s.deadline_margin, Duration::from_secs(10));
        assert_eq!(s.calls.operation_timeout, Duration::from_secs(8));
        assert_eq!(s.calls.attempt_timeout, Duration::from_secs(3));
        assert_eq!(s.send_attempts, 5);
        assert_eq!(s.transactions_table.as_deref(), Some("t"));
        // Stream-recovery is configured by the same knobs.
        let r = load(Function::StreamRecovery, &[("SEND_ATTEMPTS", "7")]).unwrap();
        assert_eq!(r.send_attempts, 7);
    }

    #[test]
    fn new_has_the_loaders_defaults() {
        let mut new = Settings::new("c", "q");
        new.transactions_table = Some("t".into());
        let loaded = load(Function::Fanout, &[]).unwrap();
        assert_eq!(format!("{new:?}"), format!("{loaded:?}"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        // Once clamped to 3600, now refused.
        let e = load(Function::Fanout, &[("CONFIG_CACHE_SECONDS", "7200")]).unwrap_err();
        assert!(e.to_string().contains("CONFIG_CACHE_SECONDS"), "{e}");
        let e = load(Function::Fanout, &[("DEADLINE_MARGIN_SECONDS", "5")]).unwrap_err();
        assert!(e.to_string().contains("DEADLINE_MARGIN_SECONDS"), "{e}");
        assert_eq!(
            load(Function::Fanout, &[("DELIVERY_QUEUE_URL", "")]).unwrap_err(),
            EnvError::Missing("DELIVERY_QUEUE_URL")
        );
    }
}
