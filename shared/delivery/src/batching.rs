//! Cutting one endpoint's pending transactions into batches (delivery rules 4-6).
//!
//! - **Order**: items are sorted by safe-local time, then serial number, then key,
//!   and batches are cut from that sequence in order, so transactions are ordered
//!   within a batch and across the batches of one plan.
//! - **No duplicates**: an item whose key appears twice is planned once.
//! - **Limits**: a batch holds at most `max_items` (the endpoint's max batch size,
//!   1..=1000) and its rendered size, estimated as [`ENVELOPE_ALLOWANCE_BYTES`] +
//!   item sizes + one separator between items, stays within `max_bytes` (the
//!   caller passes the SQS message limit, 1 MiB). Batches are filled greedily.
//! - **Nothing dropped**: an item too large to fit even alone is not a panic and
//!   does not block the others: it is returned in [`Plan::oversized`] for the
//!   caller to hold and report.
//! - **Replay-stable ids**: a batch's SQS deduplication id is the SHA-256 (hex) of
//!   the endpoint id and its items' keys in order, and its `MessageId` a UUID
//!   derived from the same hash. Planning the same input again (a retried stream
//!   batch, a Lambda re-run) yields the same batches with the same ids, so SQS
//!   and the receiver can both drop the repeat.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use uuid::Uuid;

/// The public contract's largest batch.
pub const MAX_ITEMS_LIMIT: usize = 1000;

/// SQS's largest message body, the usual `max_bytes`.
pub const SQS_MAX_MESSAGE_BYTES: usize = 1_048_576;

/// Room kept in every batch for what surrounds the items: `{"Metadata": {...},
/// "Transactions": [...]}` with MessageId, CorrelationId, Version, the
/// endpoint's own metadata and an API key placed in the body. Endpoint metadata
/// must be validated to stay well below this (8 KiB leaves ample margin).
pub const ENVELOPE_ALLOWANCE_BYTES: usize = 16 * 1024;

/// The `,` between two rendered items.
pub const SEPARATOR_BYTES: usize = 1;

/// One transaction to deliver, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchItem {
    /// The transaction's dedup/storage key; unique per transaction.
    pub key: String,
    /// Safe-local time, in a form that sorts chronologically as text.
    pub safe_time: String,
    /// The safe's serial number.
    pub serial: String,
    /// Size of the item's rendered JSON, as it will appear in the message body.
    pub bytes: usize,
}

/// One batch: one POST, one SQS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    pub items: Vec<BatchItem>,
    /// SQS `MessageDeduplicationId`: 64 hex characters (SQS allows 128).
    pub dedup_id: String,
    /// `Metadata.MessageId`: the same on every retry and every re-plan.
    pub message_id: Uuid,
}

impl PlannedBatch {
    /// The estimated rendered size this batch was planned with.
    pub fn rendered_bytes(&self) -> usize {
        rendered_bytes(&self.items)
    }
}

/// An item that exceeds `max_bytes` even alone.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "transaction {} of safe {} renders to {rendered_bytes} bytes with its envelope, over the {max_bytes}-byte batch limit",
    .item.key, .item.serial
)]
pub struct OversizedItem {
    pub item: BatchItem,
    pub rendered_bytes: usize,
    pub max_bytes: usize,
}

/// The outcome of planning.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Batches in delivery order.
    pub batches: Vec<PlannedBatch>,
    /// Items that fit in no batch; never silently dropped.
    pub oversized: Vec<OversizedItem>,
    /// How many repeated keys were removed.
    pub duplicates_removed: usize,
}

/// Limits the planner cannot work with: a configuration error, not a data one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PlanError {
    #[error("max batch size must be 1 to {MAX_ITEMS_LIMIT} transactions, got {0}")]
    MaxItems(usize),
    #[error(
        "batch byte limit {got} leaves no room for items after the {ENVELOPE_ALLOWANCE_BYTES}-byte envelope allowance"
    )]
    MaxBytes { got: usize },
}

/// Estimated rendered size of a batch holding `items`.
pub fn rendered_bytes(items: &[BatchItem]) -> usize {
    let separators = items
        .len()
        .saturating_sub(1)
        .saturating_mul(SEPARATOR_BYTES);
    items.iter().fold(
        ENVELOPE_ALLOWANCE_BYTES.saturating_add(separators),
        |acc, i| acc.saturating_add(i.bytes),
    )
}

/// Plan the batches of endpoint `endpoint_id`.
pub fn plan(
    endpoint_id: &str,
    mut items: Vec<BatchItem>,
    max_items: usize,
    max_bytes: usize,
) -> Result<Plan, PlanError> {
    if !(1..=MAX_ITEMS_LIMIT).contains(&max_items) {
        return Err(PlanError::MaxItems(max_items));
    }
    if max_bytes <= ENVELOPE_ALLOWANCE_BYTES {
        return Err(PlanError::MaxBytes { got: max_bytes });
    }

    // `bytes` last makes the order total, so the result does not depend on the
    // input order even for (invalid) same-key items of different sizes.
    items.sort_by(|a, b| {
        (&a.safe_time, &a.serial, &a.key, a.bytes).cmp(&(&b.safe_time, &b.serial, &b.key, b.bytes))
    });
    let before = items.len();
    let mut seen = HashSet::with_capacity(items.len());
    items.retain(|item| seen.insert(item.key.clone()));
    let duplicates_removed = before - items.len();

    let mut plan = Plan {
        duplicates_removed,
        ..Plan::default()
    };
    let mut current: Vec<BatchItem> = Vec::new();
    let mut current_bytes = ENVELOPE_ALLOWANCE_BYTES;
    for item in items {
        let alone = ENVELOPE_ALLOWANCE_BYTES.saturating_add(item.bytes);
        if alone > max_bytes {
            plan.oversized.push(OversizedItem {
                item,
                rendered_bytes: alone,
                max_bytes,
            });
            continue;
        }
        let with_item = current_bytes
            .saturating_add(SEPARATOR_BYTES)
            .saturating_add(item.bytes);
        if !current.is_empty() && (current.len() >= max_items || with_item > max_bytes) {
            plan.batches
                .push(seal(endpoint_id, std::mem::take(&mut current)));
            current_bytes = ENVELOPE_ALLOWANCE_BYTES;
        }
        current_bytes = if current.is_empty() {
            alone
        } else {
            current_bytes
                .saturating_add(SEPARATOR_BYTES)
                .saturating_add(item.bytes)
        };
        current.push(item);
    }
    if !current.is_empty() {
        plan.batches.push(seal(endpoint_id, current));
    }
    Ok(plan)
}

fn seal(endpoint_id: &str, items: Vec<BatchItem>) -> PlannedBatch {
    let hash = batch_hash(endpoint_id, items.iter().map(|i| i.key.as_str()));
    let mut first16 = [0u8; 16];
    first16.copy_from_slice(&hash[..16]);
    PlannedBatch {
        items,
        dedup_id: hex::encode(hash),
        // A version-8 (custom) UUID: the version and variant bits are set, the
        // rest is the hash, so it is as stable as the dedup id.
        message_id: uuid::Builder::from_custom_bytes(first16).into_uuid(),
    }
}

/// SHA-256 over the endpoint id and the keys, each length-prefixed so that no
/// two different inputs (`"ab","c"` vs `"a","bc"`) share a hash.
pub fn batch_hash<'a>(endpoint_id: &str, keys: impl IntoIterator<Item = &'a str>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"platformsync/batch/v1\0");
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(endpoint_id.as_bytes());
    for key in keys {
        field(key.as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn item(key: &str, time: &str, serial: &str, bytes: usize) -> BatchItem {
        BatchItem {
            key: key.into(),
            safe_time: time.into(),
            serial: serial.into(),
            bytes,
        }
    }

    #[test]
    fn sorts_dedups_and_splits_by_count() {
        let items = vec![
            item("k3", "2026-01-01T10:00:02", "UT1", 100),
            item("k1", "2026-01-01T10:00:00", "UT2", 100),
            item("k2", "2026-01-01T10:00:00", "UT1", 100),
            item("k1", "2026-01-01T10:00:00", "UT2", 100),
            item("k4", "2026-01-01T10:00:03", "UT1", 100),
        ];
        let plan = plan("ep-1", items, 2, SQS_MAX_MESSAGE_BYTES).unwrap();
        assert_eq!(plan.duplicates_removed, 1);
        let keys: Vec<Vec<&str>> = plan
            .batches
            .iter()
            .map(|b| b.items.iter().map(|i| i.key.as_str()).collect())
            .collect();
        assert_eq!(keys, vec![vec!["k2", "k1"], vec!["k3", "k4"]]);
        assert!(plan.oversized.is_empty());
    }

    #[test]
    fn splits_by_bytes() {
        let max = ENVELOPE_ALLOWANCE_BYTES + 999;
        // envelope + 499 + 1 + 499 = max exactly: fits; a third does not.
        let items = (0..3)
            .map(|i| item(&format!("k{i}"), "t", "S", 499))
            .collect();
        let plan = plan("ep", items, 1000, max).unwrap();
        assert_eq!(plan.batches.len(), 2);
        assert_eq!(plan.batches[0].items.len(), 2);
        assert_eq!(plan.batches[0].rendered_bytes(), max);
    }

    #[test]
    fn oversized_items_are_reported_not_dropped() {
        let max = ENVELOPE_ALLOWANCE_BYTES + 100;
        let items = vec![
            item("small-1", "1", "S", 10),
            item("huge", "2", "S", 101),
            item("small-2", "3", "S", 10),
        ];
        let plan = plan("ep", items, 1000, max).unwrap();
        assert_eq!(plan.batches.len(), 1);
        assert_eq!(plan.batches[0].items.len(), 2);
        assert_eq!(plan.oversized.len(), 1);
        let o = &plan.oversized[0];
        assert_eq!((o.item.key.as_str(), o.rendered_bytes), ("huge", max + 1));
        assert!(o.to_string().contains("huge"));
    }

    #[test]
    fn rejects_unusable_limits() {
        assert_eq!(
            plan("ep", vec![], 0, SQS_MAX_MESSAGE_BYTES),
            Err(PlanError::MaxItems(0))
        );
        assert_eq!(
            plan("ep", vec![], 1001, SQS_MAX_MESSAGE_BYTES),
            Err(PlanError::MaxItems(1001))
        );
        assert_eq!(
            plan("ep", vec![], 10, ENVELOPE_ALLOWANCE_BYTES),
            Err(PlanError::MaxBytes {
                got: ENVELOPE_ALLOWANCE_BYTES
            })
        );
        assert_eq!(
            plan("ep", vec![], 1000, SQS_MAX_MESSAGE_BYTES).unwrap(),
            Plan::default()
        );
    }

    #[test]
    fn ids_are_stable_and_sqs_compatible() {
        let items = vec![item("a", "1", "S", 10), item("b", "2", "S", 10)];
        let one = plan("ep", items.clone(), 1000, SQS_MAX_MESSAGE_BYTES).unwrap();
        let two = plan(
            "ep",
            items.into_iter().rev().collect(),
            1000,
            SQS_MAX_MESSAGE_BYTES,
        )
        .unwrap();
        assert_eq!(one, two);
        let batch = &one.batches[0];
        assert_eq!(batch.dedup_id.len(), 64);
        assert!(batch.dedup_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(batch.message_id.get_version_num(), 8);
        assert_eq!(batch.message_id.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(
            &batch.message_id.as_bytes()[..6],
            &hex::decode(&batch.dedup_id).unwrap()[..6]
        );

        let other_endpoint = plan(
            "ep2",
            one.batches[0].items.clone(),
            1000,
            SQS_MAX_MESSAGE_BYTES,
        )
        .unwrap();
        assert_ne!(other_endpoint.batches[0].dedup_id, batch.dedup_id);
        assert_ne!(other_endpoint.batches[0].message_id, batch.message_id);
    }

    #[test]
    fn hash_fields_are_unambiguous() {
        assert_ne!(batch_hash("ep", ["ab", "c"]), batch_hash("ep", ["a", "bc"]));
        assert_ne!(batch_hash("epa", ["b"]), batch_hash("ep", ["ab"]));
        assert_ne!(batch_hash("ep", [] as [&str; 0]), batch_hash("ep", [""]));
    }

    fn arb_items() -> impl Strategy<Value = Vec<BatchItem>> {
        // Few distinct keys, times and serials so duplicates and ties are common.
        prop::collection::vec((0u16..300, 0u8..20, 0u8..4), 0..400).prop_map(|raw| {
            raw.into_iter()
                .map(|(k, t, s)| BatchItem {
                    key: format!("key-{k}"),
                    safe_time: format!("2026-01-01T10:00:{t:02}"),
                    serial: format!("UT{s}"),
                    // Sizes 1..4000 spread over keys, so small byte limits bite.
                    bytes: 1 + usize::from(k) * 397 % 4000,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn planning_invariants(
            items in arb_items(),
            max_items in 1usize..=MAX_ITEMS_LIMIT,
            room in 1usize..20_000,
        ) {
            let max_bytes = ENVELOPE_ALLOWANCE_BYTES + room;
            let plan = plan("endpoint-7", items.clone(), max_items, max_bytes).unwrap();

            // No item lost or duplicated: every distinct key exactly once,
            // in a batch or among the oversized.
            let distinct: HashMap<&str, &BatchItem> =
                items.iter().map(|i| (i.key.as_str(), i)).collect();
            let mut placed: Vec<&str> = plan.batches.iter()
                .flat_map(|b| b.items.iter().map(|i| i.key.as_str()))
                .chain(plan.oversized.iter().map(|o| o.item.key.as_str()))
                .collect();
            placed.sort_unstable();
            let mut expected: Vec<&str> = distinct.keys().copied().collect();
            expected.sort_unstable();
            prop_assert_eq!(placed, expected);
            prop_assert_eq!(plan.duplicates_removed, items.len() - distinct.len());

            // Ordered within and across batches.
            let times: Vec<&str> = plan.batches.iter()
                .flat_map(|b| b.items.iter().map(|i| i.safe_time.as_str()))
                .collect();
            prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));

            // Limits.
            for batch in &plan.batches {
                prop_assert!(!batch.items.is_empty());
                prop_assert!(batch.items.len() <= max_items);
                prop_assert!(batch.rendered_bytes() <= max_bytes);
                prop_assert!(batch.dedup_id.len() <= 128);
            }
            for o in &plan.oversized {
                prop_assert!(o.rendered_bytes > max_bytes);
            }

            // Determinism, whatever the input order.
            let mut shuffled = items.clone();
            shuffled.reverse();
            prop_assert_eq!(&plan, &super::plan("endpoint-7", shuffled, max_items, max_bytes).unwrap());
        }

        #[test]
        fn greedy_batches_are_full(
            items in arb_items(),
            max_items in 1usize..50,
        ) {
            // With no byte pressure, every batch but the last is exactly full.
            let plan = plan("ep", items, max_items, usize::MAX).unwrap();
            if let Some((_, full)) = plan.batches.split_last() {
                prop_assert!(full.iter().all(|b| b.items.len() == max_items));
            }
        }
    }
}
