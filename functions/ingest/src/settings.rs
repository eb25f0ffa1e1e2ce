//! What the function reads from its environment (`template.yaml`).

use platformsync_aws::config::{Function, Reader, knob};
use platformsync_aws::env::EnvError;
use platformsync_domain::quality::QualityPolicy;
use std::time::Duration;

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
    /// Writes still running this long before the Lambda deadline are
    /// answered "not stored, re-send" (`DEADLINE_MARGIN_SECONDS`).
    pub deadline_margin: Duration,
}

impl Settings {
    /// The settings from the process environment (Lambda).
    pub fn from_env() -> Result<Self, EnvError> {
        Self::load(&Reader::from_env(Function::Ingest))
    }

    /// The settings from `reader`, through the knob table
    /// (`platformsync_aws::config`: defaults, bounds, docs/configuration.md).
    pub fn load(reader: &Reader<'_>) -> Result<Self, EnvError> {
        // 0: no maximum age for RetrievedOn.
        let max_age = reader.duration(&knob::RETRIEVED_ON_MAX_AGE_HOURS)?;
        let seconds = |d: std::time::Duration| time::Duration::seconds(d.as_secs() as i64);
        let quality = QualityPolicy {
            future_margin: seconds(reader.duration(&knob::FUTURE_MARGIN_SECONDS)?),
            retrieved_max_age: (!max_age.is_zero()).then(|| seconds(max_age)),
            ..QualityPolicy::default()
        };
        Ok(Self {
            transactions_table: reader.text(&knob::TRANSACTIONS_TABLE)?,
            config_table: reader.text(&knob::CONFIG_TABLE)?,
            rejects_table: reader.text(&knob::REJECTS_TABLE)?,
            ingest_key_secret: reader.text(&knob::INGEST_KEY_SECRET_ARN)?,
            write_concurrency: reader.count(&knob::WRITE_CONCURRENCY)? as usize,
            max_body_bytes: MAX_BODY_BYTES,
            quality,
            deadline_margin: deadline_margin(reader)?,
        })
    }
}

/// Between zero (writes cut at the deadline itself: the Lambda times out
/// and SafeSync gets API Gateway's 5xx, not our 503) and the function's
/// timeout (every upload cut before it starts).
fn deadline_margin(reader: &Reader<'_>) -> Result<Duration, EnvError> {
    let margin = reader.duration(&knob::DEADLINE_MARGIN_SECONDS)?;
    if margin.is_zero() || margin >= crate::budget::FUNCTION_TIMEOUT {
        return Err(EnvError::Invalid {
            name: knob::DEADLINE_MARGIN_SECONDS.name,
            reason: format!(
                "{margin:?}: ingest needs at least 1 s and less than its {:?} timeout",
                crate::budget::FUNCTION_TIMEOUT
            ),
        });
    }
    Ok(margin)
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Env(#[from] EnvError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, EnvError> {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        Settings::load(&Reader::with_lookup(Function::Ingest, |n| {
            vars.get(n).map(|v| v.to_string())
        }))
    }

    const TABLES: &[(&str, &str)] = &[
        ("TRANSACTIONS_TABLE", "t"),
        ("CONFIG_TABLE", "c"),
        ("REJECTS_TABLE", "r"),
        ("INGEST_KEY_SECRET_ARN", "k"),
    ];

    #[test]
    fn defaults_are_the_tables() {
        let s = load(TABLES).unwrap();
        assert_eq!(s.write_concurrency, 32);
        assert_eq!(s.quality.future_margin, time::Duration::hours(1));
        assert_eq!(s.quality.retrieved_max_age, None);
        assert_eq!(s.rejects_table, "r");
    }

    #[test]
    fn the_deadline_margin_lies_inside_the_function_timeout() {
        assert_eq!(
            load(TABLES).unwrap().deadline_margin,
            Duration::from_secs(4)
        );
        for bad in ["0", "29", "300"] {
            let mut vars = TABLES.to_vec();
            vars.push(("DEADLINE_MARGIN_SECONDS", bad));
            let e = load(&vars).unwrap_err().to_string();
            assert!(e.contains("DEADLINE_MARGIN_SECONDS"), "{bad}: {e}");
        }
        let mut vars = TABLES.to_vec();
        vars.push(("DEADLINE_MARGIN_SECONDS", "28"));
        assert_eq!(
            load(&vars).unwrap().deadline_margin,
            Duration::from_secs(28)
        );
    }

    #[test]
    fn set_values_and_bad_ones() {
        let mut vars = TABLES.to_vec();
        vars.push(("RETRIEVED_ON_MAX_AGE_HOURS", "48"));
        vars.push(("WRITE_CONCURRENCY", "8"));
        let s = load(&vars).unwrap();
        assert_eq!(s.quality.retrieved_max_age, Some(time::Duration::hours(48)));
        assert_eq!(s.write_concurrency, 8);
        vars.push(("WRITE_CONCURRENCY", "0"));
        let vars: Vec<_> = vars
            .into_iter()
            .filter(|v| *v != ("WRITE_CONCURRENCY", "8"))
            .collect();
        let e = load(&vars).unwrap_err();
        assert!(e.to_string().contains("WRITE_CONCURRENCY"), "{e}");
        assert_eq!(
            load(&TABLES[1..]).unwrap_err(),
            EnvError::Missing("TRANSACTIONS_TABLE")
        );
    }
}
