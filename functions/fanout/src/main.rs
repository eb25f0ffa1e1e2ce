//! Lambda entry point of the fan-out function: builds its clients once per
//! container, then hands every DynamoDB stream batch to [`fanout::Fanout`]
//! with the invocation's deadline.

// The handler future nests the SDK futures deeply; computing its layout
// needs more than the default query depth.
#![recursion_limit = "256"]

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::time::{Duration, Instant, SystemTime};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let fanout = fanout::Fanout::from_env().await?;
    let fanout = &fanout;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        // The context's deadline is wall-clock; sends are timed on the
        // monotonic clock.
        let remaining = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let deadline = Instant::now() + remaining;
        Ok::<_, Error>(fanout.handle_until(event.payload, deadline).await)
    }))
    .await
}
