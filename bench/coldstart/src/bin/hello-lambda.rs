//! Hello-world Lambda: the cold-init baseline. Same runtime wiring as the
//! functions' `main.rs` (tokio multi-thread, the runtime's default tracing
//! subscriber), no clients, no configuration.

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
