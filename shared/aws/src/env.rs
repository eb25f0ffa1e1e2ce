//! The error of a function's configuration: a variable that is missing or
//! invalid, reported at cold start with its name, not a panic deep inside a
//! request. The variables, their defaults and bounds, and the one way to read
//! them are in [`crate::config`].

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}
