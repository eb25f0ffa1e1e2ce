//! The Lambda functions' log subscriber.
//!
//! What `lambda_runtime::tracing::init_default_subscriber` does (JSON lines
//! when `AWS_LAMBDA_LOG_FORMAT=JSON`, no timestamps or targets: Lambda adds
//! its own), with the level from `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`) as a
//! plain level filter. The runtime's version builds an `EnvFilter`, whose
//! regex engine is a quarter of a megabyte of every binary and part of its
//! cold init; per-target directives in `RUST_LOG` are not supported here (the
//! first bare level in it is used).

use tracing_subscriber::filter::LevelFilter;

/// Installs the subscriber; a second call (or another subscriber already
/// set, e.g. in tests) is a no-op.
pub fn init_lambda() {
    let var = |name| std::env::var(name).ok();
    let level = level_from(
        var("AWS_LAMBDA_LOG_LEVEL")
            .or_else(|| var("RUST_LOG"))
            .as_deref(),
    );
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level)
        .with_writer(std::io::stdout);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Lambda's levels (TRACE .. FATAL, any case) or a `RUST_LOG` whose first
/// bare directive is a level; INFO otherwise.
fn level_from(configured: Option<&str>) -> LevelFilter {
    let Some(configured) = configured else {
        return LevelFilter::INFO;
    };
    configured
        .split(',')
        .map(str::trim)
        .filter(|d| !d.contains('='))
        .find_map(|d| match d.to_ascii_uppercase().as_str() {
            "FATAL" => Some(LevelFilter::ERROR),
            other => other.parse().ok(),
        })
        .unwrap_or(LevelFilter::INFO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_from_lambda_and_rust_log() {
        assert_eq!(level_from(None), LevelFilter::INFO);
        assert_eq!(level_from(Some("WARN")), LevelFilter::WARN);
        assert_eq!(level_from(Some("debug")), LevelFilter::DEBUG);
        assert_eq!(level_from(Some("FATAL")), LevelFilter::ERROR);
        assert_eq!(level_from(Some("hyper=trace,warn")), LevelFilter::WARN);
        assert_eq!(level_from(Some("hyper=trace")), LevelFilter::INFO);
        assert_eq!(level_from(Some("bogus")), LevelFilter::INFO);
    }
}
