//! DynamoDB plumbing every store shares: reading all pages of items into our
//! types, and `BatchGetItem` with DynamoDB's "unprocessed keys" retried.

use crate::StoreError;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::time::Duration;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// A store's item that does not have the shape this code writes.
pub(crate) fn malformed(table: &str, key: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::Malformed {
        resource: table.to_owned(),
        key: key.to_owned(),
        message: message.to_string(),
    }
}

/// Items as `T`, naming the table and `key` (what was asked for) on failure.
pub(crate) fn decode_all<T: DeserializeOwned>(
    table: &str,
    key: &str,
    items: Vec<Item>,
) -> Result<Vec<T>, StoreError> {
    items
        .into_iter()
        .map(|item| serde_dynamo::from_item(item).map_err(|e| malformed(table, key, e)))
        .collect()
}

/// Rounds of `BatchGetItem` for keys DynamoDB leaves unprocessed (it does
/// under throttling) before giving up as retryable.
const BATCH_GET_ROUNDS: u32 = 8;

/// Every item `keys` finds in `table` (at most 100 keys, as one request
/// allows), retrying unprocessed keys with backoff.
pub(crate) async fn batch_get(
    client: &Client,
    table: &str,
    keys: KeysAndAttributes,
) -> Result<Vec<Item>, StoreError> {
    let mut found = Vec::new();
    let mut pending = Some(keys);
    let mut delay = Duration::from_millis(50);
    let mut rounds = 0;
    while let Some(request) = pending.take() {
        rounds += 1;
        let out = client
            .batch_get_item()
            .request_items(table, request)
            .send()
            .await
            .map_err(|e| StoreError::sdk("BatchGetItem", table, e))?;
        if let Some(items) = out.responses.and_then(|mut r| r.remove(table)) {
            found.extend(items);
        }
        pending = out
            .unprocessed_keys
            .and_then(|mut u| u.remove(table))
            .filter(|k| !k.keys().is_empty());
        if pending.is_some() {
            if rounds >= BATCH_GET_ROUNDS {
                return Err(StoreError::Service {
                    operation: "BatchGetItem",
                    resource: table.to_owned(),
                    message: "keys still unprocessed after retries".into(),
                    retryable: true,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
    Ok(found)
}
