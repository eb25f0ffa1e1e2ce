//! Lambda entry point of the ingest function: builds its clients once per
//! container, then hands every API Gateway event to [`ingest::Ingest`].

// The handler future nests the SDK futures deeply; computing its layout
// needs more than the default query depth.
#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let ingest = ingest::Ingest::from_env().await?;
    let ingest = &ingest;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, Error>(ingest.handle(event.payload).await)
        },
    ))
    .await
}
