//! The transactions table, read by key range: one `Query` per call, on the
//! table's own keys (partition = serial, sort key between two bounds).
//! Eventually consistent reads (half the read units); the filter
//! expression keeps the route's kind, pushable items and the asked types.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity, Select};

use crate::paging::{CountPage, Match, ReadPage, Reader, Row};
use crate::ranges::KeyRange;

/// A query that failed after the SDK's retries.
#[derive(Debug, thiserror::Error)]
#[error("Query on {table}: {message}")]
pub struct ReadError {
    pub table: String,
    pub message: String,
}

/// What the reads of this container cost so far.
#[derive(Debug, Default)]
pub struct Counters {
    pub queries: AtomicU64,
    /// Items DynamoDB evaluated (`ScannedCount`): what read units follow.
    pub evaluated: AtomicU64,
    pub returned: AtomicU64,
    /// `ConsumedCapacity` reported, in hundredths of a read unit.
    pub capacity_centiunits: AtomicU64,
}

#[derive(Debug)]
pub struct TransactionRanges {
    client: Client,
    table: String,
    pub counters: Counters,
}

impl TransactionRanges {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            counters: Counters::default(),
        }
    }

    fn query(&self, range: &KeyRange, m: &Match, start: Option<&str>) -> QueryFluentBuilder {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#serial", "SerialNumber")
            .expression_attribute_names("#sk", "SortKey")
            .expression_attribute_names("#kind", "Kind")
            .expression_attribute_names("#status", "Status")
            .expression_attribute_values(":serial", AttributeValue::S(range.serial.to_string()))
            .expression_attribute_values(":lo", AttributeValue::S(range.lo.clone()))
            .expression_attribute_values(":kind", AttributeValue::S(m.kind.clone()))
            .expression_attribute_values(":deliverable", AttributeValue::S("Deliverable".into()))
            .expression_attribute_values(":released", AttributeValue::S("Released".into()))
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        q = match &range.hi {
            Some(hi) => q
                .key_condition_expression("#serial = :serial AND #sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":hi", AttributeValue::S(hi.clone())),
            None => q.key_condition_expression("#serial = :serial AND #sk >= :lo"),
        };
        // Held and discarded transactions are not the customer's to see
        // until staff release them: the same rule as the push.
        let mut filter = "#kind = :kind AND #status IN (:deliverable, :released)".to_owned();
        if !m.types.is_empty() {
            q = q.expression_attribute_names("#type", "TransactionType");
            let names: Vec<String> = (0..m.types.len()).map(|i| format!(":t{i}")).collect();
            for (name, value) in names.iter().zip(&m.types) {
                q = q.expression_attribute_values(name, AttributeValue::S(value.clone()));
            }
            filter.push_str(&format!(" AND #type IN ({})", names.join(", ")));
        }
        q = q.filter_expression(filter);
        if let Some(start) = start {
            q = q.exclusive_start_key("SerialNumber", AttributeValue::S(range.serial.to_string()));
            q = q.exclusive_start_key("SortKey", AttributeValue::S(start.to_owned()));
        }
        q
    }

    fn account(&self, scanned: i32, returned: usize, capacity: Option<f64>) {
        let c = &self.counters;
        c.queries.fetch_add(1, Ordering::Relaxed);
        c.evaluated
            .fetch_add(u64::try_from(scanned).unwrap_or(0), Ordering::Relaxed);
        c.returned.fetch_add(returned as u64, Ordering::Relaxed);
        if let Some(units) = capacity {
            c.capacity_centiunits
                .fetch_add((units * 100.0).round() as u64, Ordering::Relaxed);
        }
    }

    fn error(&self, e: impl std::error::Error + 'static) -> ReadError {
        ReadError {
            table: self.table.clone(),
            message: platformsync_aws::error::chain(&e),
        }
    }
}

fn next_key(last: Option<&HashMap<String, AttributeValue>>) -> Option<String> {
    match last?.get("SortKey")? {
        AttributeValue::S(s) => Some(s.clone()),
        _ => None,
    }
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name)? {
        AttributeValue::S(s) => Some(s.clone()),
        _ => None,
    }
}

impl Reader for TransactionRanges {
    type Error = ReadError;

    async fn count_page(
        &self,
        range: &KeyRange,
        m: &Match,
        start: Option<&str>,
    ) -> Result<CountPage, ReadError> {
        let out = self
            .query(range, m, start)
            .select(Select::Count)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        self.account(
            out.scanned_count,
            0,
            out.consumed_capacity
                .as_ref()
                .and_then(|c| c.capacity_units),
        );
        Ok(CountPage {
            count: u64::try_from(out.count).unwrap_or(0),
            next: next_key(out.last_evaluated_key.as_ref()),
        })
    }

    async fn read_page(
        &self,
        range: &KeyRange,
        m: &Match,
        start: Option<&str>,
        limit: usize,
    ) -> Result<ReadPage, ReadError> {
        let out = self
            .query(range, m, start)
            .expression_attribute_names("#payload", "Payload")
            .projection_expression("#sk, #payload")
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let items = out.items.unwrap_or_default();
        self.account(
            out.scanned_count,
            items.len(),
            out.consumed_capacity
                .as_ref()
                .and_then(|c| c.capacity_units),
        );
        let mut rows = Vec::with_capacity(items.len());
        for item in &items {
            let (Some(sort_key), Some(payload)) = (text(item, "SortKey"), text(item, "Payload"))
            else {
                return Err(ReadError {
                    table: self.table.clone(),
                    message: "an item without SortKey or Payload".into(),
                });
            };
            rows.push(Row { sort_key, payload });
        }
        Ok(ReadPage {
            rows,
            next: next_key(out.last_evaluated_key.as_ref()),
        })
    }
}
