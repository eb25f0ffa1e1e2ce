//! The rejects table: upload items that could not be parsed, kept raw with
//! the reason for 30 days so support can see exactly what SafeSync sent.

use crate::StoreError;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a reject is kept.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// DynamoDB items are at most 400 KB: raw text beyond this is cut (and the
/// cut is recorded) rather than losing the whole record.
pub const MAX_RAW_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RejectRecord {
    pub upload_id: String,
    /// `Transactions#000003`, `AuditTransactions#000000`, or `Body` for an
    /// upload refused as a whole.
    pub item_ref: String,
    pub code: String,
    pub reason: String,
    pub raw: String,
    #[serde(default)]
    pub raw_truncated: bool,
    pub received_at: String,
    /// Epoch seconds; the table's time to live.
    pub expires_at: i64,
}

impl RejectRecord {
    /// A record for `raw`, cut at [`MAX_RAW_BYTES`] on a character boundary.
    pub fn new(
        upload_id: &str,
        item_ref: String,
        code: &str,
        reason: String,
        raw: &str,
        received_at_epoch: i64,
        received_at: String,
    ) -> Self {
        let (raw, raw_truncated) = if raw.len() > MAX_RAW_BYTES {
            let mut end = MAX_RAW_BYTES;
            while !raw.is_char_boundary(end) {
                end -= 1;
            }
            (raw[..end].to_owned(), true)
        } else {
            (raw.to_owned(), false)
        };
        Self {
            upload_id: upload_id.to_owned(),
            item_ref,
            code: code.to_owned(),
            reason,
            raw,
            raw_truncated,
            received_at,
            expires_at: received_at_epoch + RETENTION.as_secs() as i64,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RejectStore {
    client: Client,
    table: String,
}

impl RejectStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Writes every record, 25 to a `BatchWriteItem`, retrying what DynamoDB
    /// leaves unprocessed with backoff.
    pub async fn put_all(&self, records: &[RejectRecord]) -> Result<(), StoreError> {
        for chunk in records.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|r| {
                    let item = serde_dynamo::to_item(r).map_err(|e| StoreError::Malformed {
                        resource: self.table.clone(),
                        key: r.item_ref.clone(),
                        message: e.to_string(),
                    })?;
                    Ok(WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(item)).build().map_err(
                            |e| StoreError::Malformed {
                                resource: self.table.clone(),
                                key: r.item_ref.clone(),
                                message: e.to_string(),
                            },
                        )?)
                        .build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut delay = Duration::from_millis(50);
            for attempt in 0.. {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| StoreError::sdk("BatchWriteItem", &self.table, e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt == 8 {
                    return Err(StoreError::Service {
                        operation: "BatchWriteItem",
                        resource: self.table.clone(),
                        message: format!(
                            "{} items still unprocessed after retries",
                            requests.len()
                        ),
                        retryable: true,
                    });
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        Ok(())
    }

    /// Every reject of one upload (for tests and support tools).
    pub async fn for_upload(&self, upload_id: &str) -> Result<Vec<RejectRecord>, StoreError> {
        let items: Vec<_> = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("UploadId = :u")
            .expression_attribute_values(
                ":u",
                aws_sdk_dynamodb::types::AttributeValue::S(upload_id.to_owned()),
            )
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| StoreError::sdk("Query", &self.table, e))?;
        crate::dynamo::decode_all(&self.table, upload_id, items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_text_is_cut_on_a_character_boundary() {
        let raw = "é".repeat(MAX_RAW_BYTES); // 2 bytes each
        let r = RejectRecord::new("u", "Body".into(), "c", "r".into(), &raw, 0, "t".into());
        assert!(r.raw_truncated);
        assert!(r.raw.len() <= MAX_RAW_BYTES);
        assert_eq!(r.expires_at, RETENTION.as_secs() as i64);
        let small = RejectRecord::new("u", "Body".into(), "c", "r".into(), "{}", 0, "t".into());
        assert!(!small.raw_truncated);
    }
}
