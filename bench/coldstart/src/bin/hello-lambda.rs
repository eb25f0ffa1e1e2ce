//! Hello-world Lambda: the cold-init baseline, as lambda_runtime's own
//! example writes it (`#[tokio::main]`, multi-threaded; the runtime's default
//! tracing subscriber), no clients, no configuration. `hello-lambda-1t` is
//! the same on one thread, as the functions run.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(event.payload)
    }))
    .await
}
