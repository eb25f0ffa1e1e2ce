//! Hello-world Lambda on one thread (`current_thread`), as the functions'
//! `main.rs` run: the baseline without the multi-threaded scheduler's
//! start-up, so a ratio to it counts only what the functions add.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(event.payload)
    }))
    .await
}
