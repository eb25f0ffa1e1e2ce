//! How the push function is configured: `template.yaml`'s environment.

use std::time::Duration;

use platformsync_aws::Calls;
use platformsync_aws::config::{Function, Reader, knob};
use platformsync_aws::env::EnvError;
use platformsync_delivery::ssrf::AllowList;
use platformsync_domain::endpoint::endpoint_secret_prefix;

/// Endpoint settings are re-read at most this often by default: staff edits
/// (a new URL, a new key name) take effect within half a minute.
pub const DEFAULT_CONFIG_CACHE: Duration =
    knob::CONFIG_CACHE_SECONDS.default_duration_for(Function::Push);

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
    /// Attempts and timeouts of every AWS call (`AWS_MAX_ATTEMPTS` 4,
    /// `AWS_OPERATION_TIMEOUT_MS` 5 s, `AWS_ATTEMPT_TIMEOUT_MS` 2 s).
    pub calls: Calls,
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
    /// The settings with the table's defaults and nothing allow-listed.
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
            retry_window: knob::RETRY_WINDOW_SECONDS.default_duration_for(Function::Push),
            probe_interval: knob::PROBE_INTERVAL_SECONDS.default_duration_for(Function::Push),
            lateness_tolerance: knob::LATENESS_TOLERANCE_SECONDS
                .default_duration_for(Function::Push),
            our_backoff_base: knob::OUR_BACKOFF_BASE_SECONDS.default_duration_for(Function::Push),
            our_backoff_cap: knob::OUR_BACKOFF_CAP_SECONDS.default_duration_for(Function::Push),
            calls: Calls::defaults_for(Function::Push),
            attempt_timeout: knob::ATTEMPT_TIMEOUT_SECONDS.default_duration_for(Function::Push),
            config_cache: DEFAULT_CONFIG_CACHE,
            extra_ca_pem: None,
            allow: AllowList::none(),
        }
    }

    /// The settings from the process environment (Lambda).
    pub fn from_env() -> Result<Self, EnvError> {
        Self::load(&Reader::from_env(Function::Push))
    }

    /// The settings from `reader`, through the knob table
    /// (`platformsync_aws::config`: defaults, bounds, docs/configuration.md).
    pub fn load(reader: &Reader<'_>) -> Result<Self, EnvError> {
        let mut settings = Settings::new(
            reader.text(&knob::CONFIG_TABLE)?,
            reader.text(&knob::DELIVERY_LEDGER_TABLE)?,
            reader.text(&knob::DELIVERY_QUEUE_URL)?,
            reader.text(&knob::DEAD_LETTER_QUEUE_URL)?,
            reader.text(&knob::NOTIFICATIONS_TOPIC_ARN)?,
        );
        settings.retry_window = reader.duration(&knob::RETRY_WINDOW_SECONDS)?;
        settings.probe_interval = reader.duration(&knob::PROBE_INTERVAL_SECONDS)?;
        settings.lateness_tolerance = reader.duration(&knob::LATENESS_TOLERANCE_SECONDS)?;
        settings.our_backoff_base = reader.duration(&knob::OUR_BACKOFF_BASE_SECONDS)?;
        settings.our_backoff_cap = reader.duration(&knob::OUR_BACKOFF_CAP_SECONDS)?;
        settings.calls = Calls::from_knobs(reader)?;
        settings.attempt_timeout = reader.duration(&knob::ATTEMPT_TIMEOUT_SECONDS)?;
        settings.config_cache = reader.duration(&knob::CONFIG_CACHE_SECONDS)?;
        if let Some(prefix) = reader.optional_text(&knob::ENDPOINT_SECRET_PREFIX)? {
            settings.endpoint_secret_prefix = prefix;
        }
        if settings.endpoint_secret_prefix.is_empty() {
            return Err(EnvError::Invalid {
                name: knob::ENDPOINT_SECRET_PREFIX.name,
                reason: "not set, and CONFIG_TABLE is not named platformsync-<stage>-config".into(),
            });
        }
        if let Some(path) = reader.optional_text(&knob::PLATFORMSYNC_EXTRA_CA_FILE)? {
            let pem = std::fs::read(&path).map_err(|e| EnvError::Invalid {
                name: knob::PLATFORMSYNC_EXTRA_CA_FILE.name,
                reason: format!("cannot read {path}: {e}"),
            })?;
            settings.extra_ca_pem = Some(pem);
        }
        if let Some(cidrs) = reader.optional_text(&knob::PLATFORMSYNC_ALLOW_CIDRS)? {
            settings.allow = AllowList::parse(&cidrs).map_err(|e| EnvError::Invalid {
                name: knob::PLATFORMSYNC_ALLOW_CIDRS.name,
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

#[cfg(test)]
mod loader_tests {
    use super::*;
    use std::collections::HashMap;

    const REQUIRED: &[(&str, &str)] = &[
        ("CONFIG_TABLE", "platformsync-dev-config"),
        ("DELIVERY_LEDGER_TABLE", "l"),
        ("DELIVERY_QUEUE_URL", "q"),
        ("DEAD_LETTER_QUEUE_URL", "d"),
        ("NOTIFICATIONS_TOPIC_ARN", "t"),
    ];

    fn load(extra: &[(&str, &str)]) -> Result<Settings, EnvError> {
        let vars: HashMap<&str, &str> = REQUIRED.iter().chain(extra).copied().collect();
        Settings::load(&Reader::with_lookup(Function::Push, |n| {
            vars.get(n).map(|v| v.to_string())
        }))
    }

    #[test]
    fn defaults_are_the_tables_and_the_crates_own() {
        let s = load(&[]).unwrap();
        // The table's defaults agree with the constants the rules use.
        assert_eq!(s.retry_window, platformsync_delivery::retry::DEFAULT_WINDOW);
        assert_eq!(s.probe_interval, crate::policy::DEFAULT_PROBE_INTERVAL);
        assert_eq!(
            s.lateness_tolerance,
            crate::policy::DEFAULT_LATENESS_TOLERANCE
        );
        assert_eq!(
            s.attempt_timeout,
            platformsync_http::client::DEFAULT_ATTEMPT_TIMEOUT
        );
        assert_eq!(s.config_cache, Duration::from_secs(30));
        assert_eq!(s.calls.operation_timeout, Duration::from_secs(5));
        assert_eq!(s.our_backoff_cap, Duration::from_secs(1800));
        assert_eq!(s.endpoint_secret_prefix, "platformsync/dev/endpoints/");
        assert!(s.allow.is_empty() && s.extra_ca_pem.is_none());
    }

    #[test]
    fn new_has_the_loaders_defaults() {
        let loaded = load(&[]).unwrap();
        let new = Settings::new("platformsync-dev-config", "l", "q", "d", "t");
        assert_eq!(format!("{new:?}"), format!("{loaded:?}"));
    }

    #[test]
    fn set_values_and_bad_ones() {
        let s = load(&[
            ("RETRY_WINDOW_SECONDS", "10"),
            ("AWS_ATTEMPT_TIMEOUT_MS", "750"),
        ])
        .unwrap();
        assert_eq!(s.retry_window, Duration::from_secs(10));
        assert_eq!(s.calls.attempt_timeout, Duration::from_millis(750));
        let e = load(&[("ATTEMPT_TIMEOUT_SECONDS", "0")]).unwrap_err();
        assert!(e.to_string().contains("ATTEMPT_TIMEOUT_SECONDS"), "{e}");
        let e = load(&[("PLATFORMSYNC_ALLOW_CIDRS", "not-a-range")]).unwrap_err();
        assert!(e.to_string().contains("PLATFORMSYNC_ALLOW_CIDRS"), "{e}");
    }
}
