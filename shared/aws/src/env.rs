//! Typed access to the environment variables `template.yaml` sets for each
//! function. A missing variable is a configuration error reported at cold
//! start with its name, not a panic deep inside a request.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The value of `name`, which must be set and non-empty.
pub fn required(name: &'static str) -> Result<String, EnvError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(EnvError::Missing(name)),
    }
}

/// The value of `name` parsed as `T`, or `default` when it is unset.
pub fn parsed_or<T>(name: &'static str, default: T) -> Result<T, EnvError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e: T::Err| EnvError::Invalid {
            name,
            reason: e.to_string(),
        }),
        _ => Ok(default),
    }
}
