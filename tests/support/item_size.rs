//! DynamoDB item sizes as DynamoDB bills them (attribute names plus values;
//! numbers by significant digits), for the benchmarks' write-unit figures.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// Bytes one attribute value takes.
pub fn value_bytes(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_bytes(v)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_bytes(v))
                .sum::<usize>()
        }
        AttributeValue::Ss(l) => l.iter().map(String::len).sum(),
        _ => 0,
    }
}

/// Bytes of `items` in all, and the write units their puts cost (one per
/// started KB per item).
pub fn bytes_and_write_units(items: &[HashMap<String, AttributeValue>]) -> (usize, usize) {
    let mut bytes = 0;
    let mut units = 0;
    for item in items {
        let b: usize = item.iter().map(|(k, v)| k.len() + value_bytes(v)).sum();
        bytes += b;
        units += b.div_ceil(1024).max(1);
    }
    (bytes, units)
}

/// Every item of the deployment's table `logical_id` whose `PK` begins with
/// `pk_prefix` (every item without one), read with a paginated `Scan`.
pub async fn scan(
    stack: &crate::Stack,
    logical_id: &str,
    pk_prefix: Option<&str>,
) -> Vec<HashMap<String, AttributeValue>> {
    let mut scan = stack
        .clients
        .dynamodb
        .scan()
        .table_name(stack.reference(logical_id));
    if let Some(prefix) = pk_prefix {
        scan = scan
            .filter_expression("begins_with(PK, :p)")
            .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned()));
    }
    scan.into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("scan of {logical_id}: {e}"))
}
