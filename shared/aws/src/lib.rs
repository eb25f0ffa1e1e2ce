//! AWS adapters: everything that talks to AWS goes through here.
//!
//! Every client is built from the standard AWS environment (region,
//! credentials, `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`), so the
//! same binary runs on Lambda, against moto or LocalStack, with no code path
//! that knows which.

pub mod env;

pub use aws_config::SdkConfig;

/// Loads the shared SDK configuration once; build every client from it.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
