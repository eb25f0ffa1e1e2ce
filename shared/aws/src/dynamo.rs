//! DynamoDB plumbing every store shares: reading all pages of items into our
//! types, the conditional-failure check, and `BatchGetItem` /
//! `BatchWriteItem` with what DynamoDB leaves unprocessed retried.

use crate::StoreError;
use crate::backoff::Backoff;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, WriteRequest};
use serde::de::DeserializeOwned;
use std::collections::HashMap;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A string or number attribute as text; `None` when absent or of another type.
pub(crate) fn text(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v) | AttributeValue::N(v)) => Some(v.clone()),
        _ => None,
    }
}

/// Whether a conditional write was refused because its condition did not
/// hold. The one check every store uses: it reads the error's code, so it
/// serves every operation's error type alike (`PutItem`, `UpdateItem`, ...).
pub(crate) fn is_conditional_failure<E, R>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

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

/// Every item `keys` finds in `table` (at most 100 keys, as one request
/// allows), retrying unprocessed keys with backoff.
pub(crate) async fn batch_get(
    client: &Client,
    table: &str,
    keys: KeysAndAttributes,
) -> Result<Vec<Item>, StoreError> {
    let mut found = Vec::new();
    let mut pending = Some(keys);
    let mut delays = Backoff::UNPROCESSED.delays();
    while let Some(request) = pending.take() {
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
            let Some(delay) = delays.next() else {
                return Err(StoreError::Service {
                    operation: "BatchGetItem",
                    resource: table.to_owned(),
                    message: "keys still unprocessed after retries".into(),
                    retryable: true,
                });
            };
            tokio::time::sleep(delay).await;
        }
    }
    Ok(found)
}

/// Writes every request to `table` (at most 25, as one request allows),
/// retrying unprocessed items with backoff.
pub(crate) async fn batch_write(
    client: &Client,
    table: &str,
    mut requests: Vec<WriteRequest>,
) -> Result<(), StoreError> {
    let mut delays = Backoff::UNPROCESSED.delays();
    while !requests.is_empty() {
        let out = client
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .map_err(|e| StoreError::sdk("BatchWriteItem", table, e))?;
        requests = out
            .unprocessed_items
            .and_then(|mut u| u.remove(table))
            .unwrap_or_default();
        if !requests.is_empty() {
            let Some(delay) = delays.next() else {
                return Err(StoreError::Service {
                    operation: "BatchWriteItem",
                    resource: table.to_owned(),
                    message: format!("{} items still unprocessed after retries", requests.len()),
                    retryable: true,
                });
            };
            tokio::time::sleep(delay).await;
        }
    }
    Ok(())
}
