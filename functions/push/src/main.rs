//! Lambda entry point of the push function: builds its clients once per
//! container, then hands every SQS event to [`push::Push`] with the
//! invocation's deadline.

// The handler future nests the SDK futures deeply.
#![recursion_limit = "256"]

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};

// One thread: at 256-512 MB a function has a fraction of one vCPU, so a
// multi-threaded scheduler adds threads to start, not work done in parallel
// (ARCHITECTURE.md, decisions; docs/benchmarks.md, cold init).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // JSON logs at Lambda's log level, a plain level filter (no env-filter regex).
    platformsync_aws::logging::init_lambda();
    let push = push::Push::from_env().await?;
    let push = &push;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = platformsync_aws::lambda::deadline(event.context.deadline());
        Ok::<_, Error>(push.handle_before(event.payload, deadline).await)
    }))
    .await
}
