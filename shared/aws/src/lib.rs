//! AWS adapters: everything that talks to AWS goes through here.
//!
//! Every client is built from the standard AWS environment (region,
//! credentials, `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`), so the
//! same binary runs on Lambda, against moto or against LocalStack, with no code
//! path that knows which.
//!
//! The domain crate knows nothing of this one; this one maps domain values to
//! DynamoDB items and back, and turns SDK errors into typed errors that say
//! which table, key or secret was involved.

pub mod env;
pub mod error;
pub mod lambda;
pub mod metrics;

#[cfg(feature = "dynamodb")]
pub mod api_keys;
#[cfg(feature = "dynamodb")]
pub mod assignments;
#[cfg(feature = "dynamodb")]
pub mod config_table;
#[cfg(feature = "sqs")]
pub mod delivery_queue;
#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "dynamodb")]
pub mod fanout_plans;
#[cfg(feature = "dynamodb")]
pub mod health;
#[cfg(feature = "dynamodb")]
pub mod held;
#[cfg(feature = "secrets")]
pub mod ingest_key;
#[cfg(feature = "dynamodb")]
pub mod ledger;
#[cfg(feature = "sns")]
pub mod notifier;
#[cfg(feature = "dynamodb")]
pub mod parked;
#[cfg(feature = "sqs")]
pub mod redelivery;
#[cfg(feature = "dynamodb")]
pub mod rejects;
#[cfg(feature = "secrets")]
pub mod secrets;
#[cfg(feature = "dynamodb")]
pub mod transactions;

pub use aws_config::SdkConfig;
pub use error::StoreError;

/// Loads the shared SDK configuration; build every client from it, once, at
/// cold start.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// Like [`sdk_config`], with the SDK's standard retry mode (exponential
/// backoff with jitter on throttling and transient errors) allowed
/// `max_attempts` attempts per call instead of the default 3.
pub async fn sdk_config_with_retries(max_attempts: u32) -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .load()
        .await
}
