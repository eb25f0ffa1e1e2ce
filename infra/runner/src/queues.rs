//! An SQS event source, played as Lambda's event source mapping plays it:
//! receive up to `BatchSize` messages, invoke, delete only the messages the
//! function did not report as failed. Visibility changes the function made
//! (its retry schedule) stay in force: the runner never touches a failed
//! message. A function error deletes nothing, so every message of the batch
//! comes back after its visibility timeout.

use crate::functions::Function;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, warn};

pub struct QueueSource {
    pub function: Arc<Function>,
    pub queue_arn: String,
    pub queue_url: String,
    pub batch_size: usize,
    /// Local override of the queue's visibility timeout for received
    /// messages (shortens recovery after a killed runner); `None` = the
    /// queue's own, as on AWS.
    pub visibility_timeout: Option<Duration>,
}

pub async fn run(src: QueueSource, sqs: aws_sdk_sqs::Client, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let received = tokio::select! {
            r = sqs
                .receive_message()
                .queue_url(&src.queue_url)
                .max_number_of_messages(src.batch_size.clamp(1, 10) as i32)
                .wait_time_seconds(1)
                .set_visibility_timeout(src.visibility_timeout.map(|d| d.as_secs() as i32))
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send() => r,
            _ = shutdown.changed() => return,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                warn!(queue = %src.queue_url, error = %e, "receive failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        tracing::debug!(
            messages = messages.len(),
            groups = ?messages
                .iter()
                .map(|m| m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned()
                    .unwrap_or_default())
                .collect::<Vec<_>>(),
            ids = ?messages.iter().map(|m| m.message_id().unwrap_or_default().to_owned()).collect::<Vec<_>>(),
            "received"
        );
        let event = push::sqs_event(&src.queue_arn, &messages);
        let done = match src.function.sqs(event).await {
            Ok(response) => push::acknowledged(&messages, &response),
            Err(e) => {
                error!(function = %src.function.logical_id, error = %e, "function error: no message deleted");
                continue;
            }
        };
        if done.is_empty() {
            continue;
        }
        match sqs
            .delete_message_batch()
            .queue_url(&src.queue_url)
            .set_entries(Some(done))
            .send()
            .await
        {
            Ok(out) if !out.failed().is_empty() => {
                warn!(
                    failed = out.failed().len(),
                    "some deletes failed: those messages will be redelivered"
                )
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "delete failed: the batch will be redelivered"),
        }
    }
}

/// The queue URL of a queue ARN, asked of SQS.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, arn: &str) -> anyhow::Result<String> {
    let name = arn.rsplit(':').next().unwrap_or_default();
    let out = sqs.get_queue_url().queue_name(name).send().await?;
    let url = out.queue_url().unwrap_or_default().to_owned();
    // Sanity: the URL found is the queue of that ARN.
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    let found = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(found == arn, "queue {name} has ARN {found}, expected {arn}");
    Ok(url)
}
