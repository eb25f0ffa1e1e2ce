//! How the push function is configured: `template.yaml`'s environment.

use std::time::Duration;

use platformsync_aws::env::{self, EnvError};
use platformsync_delivery::retry::DEFAULT_WINDOW;
use platformsync_delivery::ssrf::AllowList;
use platformsync_domain::endpoint::endpoint_secret_prefix;
use platformsync_http::client::DEFAULT_ATTEMPT_TIMEOUT;

/// Endpoint settings are re-read at most this often by default: staff edits
/// (a new URL, a new key name) take effect within half a minute.
pub const DEFAULT_CONFIG_CACHE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Settings {
    /// Endpoints, customers and endpoint health (`CONFIG_TABLE`).
    pub config_table: String,
    /// Delivered batches and retry state (`DELIVERY_LEDGER_TABLE`).
    pub ledger_table: String,
    /// The queue this function is triggered by (`DELIVERY_QUEUE_URL`).
    pub queue_url: String,
    /// Where malformed bodies go (`DEAD_LETTER_QUEUE_URL`).
    pub dead_letter_url: String,
    /// Failing / expired / recovered notifications (`NOTIFICATIONS_TOPIC_ARN`).
    pub topic_arn: String,
    /// The incident's window from the endpoint's first failed attempt since
    /// its last 200 (`RETRY_WINDOW_SECONDS`, 24 h).
    pub retry_window: Duration,
    /// While an endpoint is expired, at most one probe attempt this often
    /// (`PROBE_INTERVAL_SECONDS`, 15 min).
    pub probe_interval: Duration,
    /// A retry starting later than due by more than max(this, half its
    /// delay) credits the lateness (our downtime) to the window
    /// (`LATENESS_TOLERANCE_SECONDS`, 30 s).
    pub lateness_tolerance: Duration,
    /// Our own AWS failures back off from this, doubling per receive
    /// (`OUR_BACKOFF_BASE_SECONDS`, 5 s)...
    pub our_backoff_base: Duration,
    /// ... up to this (`OUR_BACKOFF_CAP_SECONDS`, 30 min): at most ~700
    /// receives in the queue's 14 days, below maxReceiveCount (1000).
    pub our_backoff_cap: Duration,
    /// Every AWS call, retries included (`AWS_OPERATION_TIMEOUT_MS`, 5 s).
    pub aws_operation_timeout: Duration,
    /// One try of an AWS call (`AWS_ATTEMPT_TIMEOUT_MS`, 2 s).
    pub aws_attempt_timeout: Duration,
    /// One POST, connect to response (`ATTEMPT_TIMEOUT_SECONDS`, 180 s).
    pub attempt_timeout: Duration,
    /// How long endpoint settings are cached (`CONFIG_CACHE_SECONDS`, 30 s).
    pub config_cache: Duration,
    /// Where endpoints' API keys live (`ENDPOINT_SECRET_PREFIX`; by default
    /// `platformsync/<stage>/endpoints/`, the stage read from the config
    /// table's template name `platformsync-<stage>-config`).
    pub endpoint_secret_prefix: String,
    /// Extra trusted CA certificates, PEM (`PLATFORMSYNC_EXTRA_CA_FILE`): local runs only.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Address ranges exempt from the SSRF refusal (`PLATFORMSYNC_ALLOW_CIDRS`,
    /// comma-separated): local runs only; empty in production.
    pub allow: AllowList,
}

impl Settings {
    /// The settings with the defaults above and nothing allow-listed.
    pub fn new(
        config_table: impl Into<String>,
        ledger_table: impl Into<String>,
        queue_url: impl Into<String>,
        dead_letter_url: impl Into<String>,
        topic_arn: impl Into<String>,
    ) -> Self {
        let config_table: String = config_table.into();
        let endpoint_secret_prefix = stage_of(&config_table)
            .map(endpoint_secret_prefix)
            .unwrap_or_default();
        Settings {
            endpoint_secret_prefix,
            config_table,
            ledger_table: ledger_table.into(),
            queue_url: queue_url.into(),
            dead_letter_url: dead_letter_url.into(),
            topic_arn: topic_arn.into(),
            retry_window: DEFAULT_WINDOW,
            probe_interval: crate::policy::DEFAULT_PROBE_INTERVAL,
            lateness_tolerance: crate::policy::DEFAULT_LATENESS_TOLERANCE,
            our_backoff_base: Duration::from_secs(5),
            our_backoff_cap: Duration::from_secs(30 * 60),
            aws_operation_timeout: Duration::from_secs(5),
            aws_attempt_timeout: Duration::from_secs(2),
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            config_cache: DEFAULT_CONFIG_CACHE,
            extra_ca_pem: None,
            allow: AllowList::none(),
        }
    }

    pub fn from_env() -> Result<Self, EnvError> {
        let mut settings = Settings::new(
            env::required("CONFIG_TABLE")?,
            env::required("DELIVERY_LEDGER_TABLE")?,
            env::required("DELIVERY_QUEUE_URL")?,
            env::required("DEAD_LETTER_QUEUE_URL")?,
            env::required("NOTIFICATIONS_TOPIC_ARN")?,
        );
        settings.retry_window = Duration::from_secs(env::parsed_or(
            "RETRY_WINDOW_SECONDS",
            DEFAULT_WINDOW.as_secs(),
        )?);
        let secs = |n: u64| Duration::from_secs(n);
        let millis = |d: Duration| d.as_millis() as u64;
        settings.probe_interval = secs(env::parsed_or(
            "PROBE_INTERVAL_SECONDS",
            settings.probe_interval.as_secs(),
        )?);
        settings.lateness_tolerance = secs(env::parsed_or(
            "LATENESS_TOLERANCE_SECONDS",
            settings.lateness_tolerance.as_secs(),
        )?);
        settings.our_backoff_base = secs(env::parsed_or(
            "OUR_BACKOFF_BASE_SECONDS",
            settings.our_backoff_base.as_secs(),
        )?);
        settings.our_backoff_cap = secs(env::parsed_or(
            "OUR_BACKOFF_CAP_SECONDS",
            settings.our_backoff_cap.as_secs(),
        )?);
        settings.aws_operation_timeout = Duration::from_millis(env::parsed_or(
            "AWS_OPERATION_TIMEOUT_MS",
            millis(settings.aws_operation_timeout),
        )?);
        settings.aws_attempt_timeout = Duration::from_millis(env::parsed_or(
            "AWS_ATTEMPT_TIMEOUT_MS",
            millis(settings.aws_attempt_timeout),
        )?);
        settings.attempt_timeout = Duration::from_secs(
            env::parsed_or("ATTEMPT_TIMEOUT_SECONDS", DEFAULT_ATTEMPT_TIMEOUT.as_secs())?.max(1),
        );
        settings.config_cache = Duration::from_secs(env::parsed_or(
            "CONFIG_CACHE_SECONDS",
            DEFAULT_CONFIG_CACHE.as_secs(),
        )?);
        if let Ok(prefix) = std::env::var("ENDPOINT_SECRET_PREFIX")
            && !prefix.trim().is_empty()
        {
            settings.endpoint_secret_prefix = prefix.trim().to_owned();
        }
        if settings.endpoint_secret_prefix.is_empty() {
            return Err(EnvError::Invalid {
                name: "ENDPOINT_SECRET_PREFIX",
                reason: "not set, and CONFIG_TABLE is not named platformsync-<stage>-config".into(),
            });
        }
        if let Ok(path) = std::env::var("PLATFORMSYNC_EXTRA_CA_FILE")
            && !path.trim().is_empty()
        {
            let pem = std::fs::read(path.trim()).map_err(|e| EnvError::Invalid {
                name: "PLATFORMSYNC_EXTRA_CA_FILE",
                reason: format!("cannot read {path}: {e}"),
            })?;
            settings.extra_ca_pem = Some(pem);
        }
        if let Ok(cidrs) = std::env::var("PLATFORMSYNC_ALLOW_CIDRS")
            && !cidrs.trim().is_empty()
        {
            settings.allow = AllowList::parse(&cidrs).map_err(|e| EnvError::Invalid {
                name: "PLATFORMSYNC_ALLOW_CIDRS",
                reason: e.to_string(),
            })?;
        }
        Ok(settings)
    }
}

/// The stage in a config table named as template.yaml names it
/// (`platformsync-<stage>-config`).
fn stage_of(config_table: &str) -> Option<&str> {
    config_table
        .strip_prefix("platformsync-")?
        .strip_suffix("-config")
        .filter(|stage| !stage.is_empty())
}

#[cfg(test)]
mod secret_prefix_tests {
    use super::*;

    #[test]
    fn the_secret_prefix_follows_the_stage() {
        let s = Settings::new("platformsync-prod-config", "l", "q", "d", "t");
        assert_eq!(s.endpoint_secret_prefix, "platformsync/prod/endpoints/");
        assert_eq!(stage_of("my-own-table"), None);
        assert_eq!(stage_of("platformsync--config"), None);
    }
}
