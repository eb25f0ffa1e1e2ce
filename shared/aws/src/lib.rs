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

#[cfg(feature = "apigw")]
pub mod apigw;
pub mod backoff;
pub mod config;
pub mod env;
pub mod error;
pub mod lambda;
pub mod logging;
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

pub use aws_types::SdkConfig;
pub use error::StoreError;

mod sdk;
pub use sdk::{Calls, OnFirstUse, http_client, on_first_use, sdk_config, sdk_config_for};
