//! What the push function does to the delivery queue besides acknowledging:
//! schedule a retry (a visibility change), hand back unprocessed messages at
//! once, and move a batch to the dead-letter queue.
//!
//! The dead-letter queue keeps what push cannot read (a malformed body,
//! `Reason = malformed`) and what our own failures held for 12 days
//! (`Reason = retention`) for 14 days; batches push stops trying are parked
//! in DynamoDB instead ([`crate::parked`]), with their attempts. A moved message keeps its body (the
//! batch, which never holds a token), its group (the endpoint, so a replay
//! keeps the order) and gets as deduplication id the batch's `MessageId` (a
//! move retried after a crash is not doubled). Its message attributes say
//! why it is there:
//!
//! | attribute | value |
//! |---|---|
//! | `Reason` | `malformed` (not a batch this version can read) or `retention` (our own failures, 12 days) |
//! | `LastError` | the parse error, or our latest failure |
//! | `EndpointId`, `CustomerId` | when known |

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageAttributeValue,
};

use crate::StoreError;
use platformsync_domain::endpoint::{CustomerId, EndpointId};

/// SQS refuses message attribute values above this (256 KB overall; keep
/// attributes small, the body matters more).
const MAX_ATTRIBUTE_CHARS: usize = 1024;

/// A batch on its way to the dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The original SQS body, unchanged.
    pub body: &'a str,
    /// FIFO group: the endpoint id (or the original group of a malformed message).
    pub group_id: &'a str,
    /// The batch's `MessageId` (the SQS message id for a malformed body).
    pub deduplication_id: &'a str,
    /// `malformed` or `retention` (never an attempt's outcome: those batches
    /// are parked).
    pub reason: &'a str,
    pub last_error: Option<&'a str>,
    pub endpoint_id: Option<&'a EndpointId>,
    pub customer_id: Option<&'a CustomerId>,
}

#[derive(Debug, Clone)]
pub struct Redelivery {
    client: Client,
    queue_url: String,
    dead_letter_url: String,
}

/// A string attribute `name` (named in the error should SQS's builder refuse it).
fn attribute(name: &str, value: &str) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value.chars().take(MAX_ATTRIBUTE_CHARS).collect::<String>())
        .build()
        .map_err(|e| StoreError::Malformed {
            resource: "sqs message attribute".into(),
            key: name.to_owned(),
            message: e.to_string(),
        })
}

impl Redelivery {
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        dead_letter_url: impl Into<String>,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_url: dead_letter_url.into(),
        }
    }

    pub fn dead_letter_url(&self) -> &str {
        &self.dead_letter_url
    }

    /// The message comes back in `seconds` (a retry). While it is invisible
    /// its FIFO group stays locked, so later batches of the endpoint wait.
    pub async fn retry_in(&self, receipt_handle: &str, seconds: i32) -> Result<(), StoreError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| StoreError::sdk("ChangeMessageVisibility", &self.queue_url, e))?;
        Ok(())
    }

    /// Makes messages that were received but not processed visible again now
    /// (rather than after the queue's 21-minute visibility timeout).
    pub async fn release(&self, receipt_handles: &[&str]) -> Result<(), StoreError> {
        for chunk in receipt_handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*handle)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| self.malformed_entry("release", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| StoreError::sdk("ChangeMessageVisibilityBatch", &self.queue_url, e))?;
            self.no_failed_entries("ChangeMessageVisibilityBatch", out.failed(), chunk.len())?;
        }
        Ok(())
    }

    /// Deletes (acknowledges) messages now, rather than when the whole
    /// invocation answers: an endpoint's delivered batches do not wait for
    /// the invocation's slowest endpoint, and its FIFO group is free at once.
    /// Lambda deletes them again afterwards; deleting a deleted message is a
    /// no-op.
    pub async fn delete(&self, receipt_handles: &[&str]) -> Result<(), StoreError> {
        for chunk in receipt_handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*handle)
                        .build()
                        .map_err(|e| self.malformed_entry("delete", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| StoreError::sdk("DeleteMessageBatch", &self.queue_url, e))?;
            self.no_failed_entries("DeleteMessageBatch", out.failed(), chunk.len())?;
        }
        Ok(())
    }

    /// A batch request's entries that SQS refused, as one error naming the
    /// first (retryable unless the fault is ours to fix).
    fn no_failed_entries(
        &self,
        operation: &'static str,
        failed: &[BatchResultErrorEntry],
        sent: usize,
    ) -> Result<(), StoreError> {
        let Some(first) = failed.first() else {
            return Ok(());
        };
        Err(StoreError::Service {
            operation,
            resource: self.queue_url.clone(),
            message: format!(
                "{} of {sent} entries failed, e.g. {}: {}",
                failed.len(),
                first.code(),
                first.message().unwrap_or_default()
            ),
            retryable: !first.sender_fault(),
        })
    }

    fn malformed_entry(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Malformed {
            resource: self.queue_url.clone(),
            key: key.into(),
            message: e.to_string(),
        }
    }

    /// Sends the batch to the dead-letter queue with why it is there. The
    /// caller acknowledges the original only after this succeeded.
    pub async fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), StoreError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(letter.body)
            .message_group_id(letter.group_id)
            .message_deduplication_id(letter.deduplication_id)
            .message_attributes("Reason", attribute("Reason", letter.reason)?);
        // SQS refuses empty attribute values: absent ones are left out.
        let optional = [
            ("LastError", letter.last_error),
            ("EndpointId", letter.endpoint_id.map(EndpointId::as_str)),
            ("CustomerId", letter.customer_id.map(CustomerId::as_str)),
        ];
        for (name, value) in optional {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                request = request.message_attributes(name, attribute(name, value)?);
            }
        }
        request
            .send()
            .await
            .map_err(|e| StoreError::sdk("SendMessage", &self.dead_letter_url, e))?;
        Ok(())
    }
}
