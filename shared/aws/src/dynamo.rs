//! DynamoDB plumbing every store shares, so each store says only what it
//! stores: items to and from our types through `serde_dynamo` ([`encode`],
//! [`decode`]), `PutItem` plain or conditional ([`put`], [`put_if`],
//! [`put_if_absent`]), `GetItem` ([`get`]), every page of a `Query` or
//! `Scan` ([`query_all`], [`scan_all`]), the conditional-failure check, the
//! one time codec ([`rfc3339`]) and `BatchGetItem` / `BatchWriteItem` with
//! what DynamoDB leaves unprocessed retried.

use crate::StoreError;
use crate::backoff::Backoff;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, WriteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use time::OffsetDateTime;

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

/// The key of a table keyed by generic `PK` and `SK` (the configuration
/// table's items).
pub(crate) fn pk_sk((pk, sk): (String, String)) -> Item {
    HashMap::from([("PK".to_owned(), s(pk)), ("SK".to_owned(), s(sk))])
}

/// The one time codec of stored items: RFC 3339, as every store writes
/// times (empty only for a year outside 0..=9999, which no clock gives).
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    platformsync_domain::record::rfc3339(at).unwrap_or_default()
}

/// `value` as an item, naming the table and `label` on failure.
pub(crate) fn encode<T: Serialize>(
    table: &str,
    label: &str,
    value: &T,
) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| malformed(table, label, e))
}

/// An item as `T`, naming the table and `label` on failure.
pub(crate) fn decode<T: DeserializeOwned>(
    table: &str,
    label: &str,
    item: Item,
) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| malformed(table, label, e))
}

/// Writes `item`, replacing whatever has its key.
pub(crate) async fn put(client: &Client, table: &str, item: Item) -> Result<(), StoreError> {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .map_err(|e| StoreError::sdk("PutItem", table, e))?;
    Ok(())
}

/// Writes `item` if `condition` holds (`values` are its placeholders):
/// `Ok(false)` when it did not, and nothing was written.
pub(crate) async fn put_if(
    client: &Client,
    table: &str,
    item: Item,
    condition: &str,
    values: impl IntoIterator<Item = (&str, AttributeValue)>,
) -> Result<bool, StoreError> {
    let sent = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .set_expression_attribute_values(placeholders(values))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(StoreError::sdk("PutItem", table, e)),
    }
}

/// Writes `item` unless an item with its key exists (`attribute` is one of
/// the key's attributes): `Ok(false)` when one did, and it was left alone.
pub(crate) async fn put_if_absent(
    client: &Client,
    table: &str,
    item: Item,
    attribute: &str,
) -> Result<bool, StoreError> {
    let condition = format!("attribute_not_exists({attribute})");
    crate::dynamo::put_if(client, table, item, &condition, []).await
}

/// Deletes the item under `key` (absent already is fine).
pub(crate) async fn delete(client: &Client, table: &str, key: Item) -> Result<(), StoreError> {
    client
        .delete_item()
        .table_name(table)
        .set_key(Some(key))
        .send()
        .await
        .map_err(|e| StoreError::sdk("DeleteItem", table, e))?;
    Ok(())
}

/// The item under `key`; strongly consistent when `consistent`.
pub(crate) async fn get_item(
    client: &Client,
    table: &str,
    key: Item,
    consistent: bool,
) -> Result<Option<Item>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .set_consistent_read(consistent.then_some(true))
        .send()
        .await
        .map_err(|e| StoreError::sdk("GetItem", table, e))?;
    Ok(out.item)
}

/// The item under `key` as `T` (`label` names it on failure).
pub(crate) async fn get<T: DeserializeOwned>(
    client: &Client,
    table: &str,
    key: Item,
    consistent: bool,
    label: &str,
) -> Result<Option<T>, StoreError> {
    crate::dynamo::get_item(client, table, key, consistent)
        .await?
        .map(|item| decode(table, label, item))
        .transpose()
}

/// Every page of `query` (table name set here).
pub(crate) async fn query_all(
    table: &str,
    query: QueryFluentBuilder,
) -> Result<Vec<Item>, StoreError> {
    query
        .table_name(table)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| StoreError::sdk("Query", table, e))
}

/// An expression's placeholder values as the SDK takes them (`None` for none).
fn placeholders<'a>(
    values: impl IntoIterator<Item = (&'a str, AttributeValue)>,
) -> Option<HashMap<String, AttributeValue>> {
    let values: HashMap<String, AttributeValue> =
        values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    (!values.is_empty()).then_some(values)
}

/// Every item, every page, whose key matches `key_condition` (`values` are
/// its placeholders); strongly consistent when `consistent`. The one way a
/// store asks for a key range; [`query_all`] is for queries that also
/// filter or project.
pub(crate) async fn query_items<'a>(
    client: &Client,
    table: &str,
    key_condition: &str,
    values: impl IntoIterator<Item = (&'a str, AttributeValue)>,
    consistent: bool,
) -> Result<Vec<Item>, StoreError> {
    let query = client
        .query()
        .key_condition_expression(key_condition)
        .set_expression_attribute_values(placeholders(values))
        .set_consistent_read(consistent.then_some(true));
    query_all(table, query).await
}

/// [`query_items`] as `T` (`label` names what was asked for on failure).
pub(crate) async fn query<'a, T: DeserializeOwned>(
    client: &Client,
    table: &str,
    key_condition: &str,
    values: impl IntoIterator<Item = (&'a str, AttributeValue)>,
    consistent: bool,
    label: &str,
) -> Result<Vec<T>, StoreError> {
    let items = query_items(client, table, key_condition, values, consistent).await?;
    decode_all(table, label, items)
}

/// The items of a `PK`/`SK` table (the configuration table) in partition
/// `pk` whose `SK` starts with `sk_prefix`, as `T`.
pub(crate) async fn query_prefix<T: DeserializeOwned>(
    client: &Client,
    table: &str,
    pk: &str,
    sk_prefix: &str,
    consistent: bool,
) -> Result<Vec<T>, StoreError> {
    query(
        client,
        table,
        "PK = :pk AND begins_with(SK, :sk)",
        [(":pk", s(pk)), (":sk", s(sk_prefix))],
        consistent,
        pk,
    )
    .await
}

/// Every page of `scan` (table name set here).
pub(crate) async fn scan_all(
    table: &str,
    scan: ScanFluentBuilder,
) -> Result<Vec<Item>, StoreError> {
    scan.table_name(table)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| StoreError::sdk("Scan", table, e))
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
        .map(|item| decode(table, key, item))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_absent_when_there_are_none() {
        assert_eq!(placeholders([]), None);
        let values = placeholders([(":pk", s("CUSTOMER#a")), (":n", n(3))]).unwrap();
        assert_eq!(values.len(), 2);
        assert_eq!(values[":pk"], s("CUSTOMER#a"));
        assert_eq!(values[":n"], AttributeValue::N("3".into()));
    }
}
