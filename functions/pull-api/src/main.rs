//! Lambda entry point of the pull API: builds its clients once per
//! container, then hands every API Gateway event to [`pull_api::PullApi`].

// The handler future nests the SDK futures deeply; computing its layout
// needs more than the default query depth.
#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};

// One thread: at 256-512 MB a function has a fraction of one vCPU, so a
// multi-threaded scheduler adds threads to start, not work done in parallel
// (ARCHITECTURE.md, decisions; docs/benchmarks.md, cold init).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // JSON logs at Lambda's log level, a plain level filter (no env-filter regex).
    platformsync_aws::logging::init_lambda();
    let api = pull_api::PullApi::from_env().await?;
    let api = &api;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, Error>(api.handle(event.payload).await)
        },
    ))
    .await
}
