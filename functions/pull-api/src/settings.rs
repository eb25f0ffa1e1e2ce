//! What the function reads from its environment (`template.yaml`), through
//! the knob table (`platformsync_aws::config`: defaults, bounds,
//! docs/configuration.md).

use platformsync_aws::config::{Function, Reader, knob};
use platformsync_aws::env::EnvError;

/// How the function is configured (from `template.yaml`'s environment).
#[derive(Debug, Clone)]
pub struct Settings {
    pub transactions_table: String,
    pub config_table: String,
}

impl Settings {
    /// The settings from the process environment (Lambda).
    pub fn from_env() -> Result<Self, EnvError> {
        Self::load(&Reader::from_env(Function::PullApi))
    }

    /// The settings from `reader`, through the knob table.
    pub fn load(reader: &Reader<'_>) -> Result<Self, EnvError> {
        Ok(Self {
            transactions_table: reader.text(&knob::TRANSACTIONS_TABLE)?,
            config_table: reader.text(&knob::CONFIG_TABLE)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Env(#[from] EnvError),
}
