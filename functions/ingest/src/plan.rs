//! What to do with each item of a parsed upload: no I/O, so every rule here is
//! unit-tested without a stack.

use platformsync_aws::rejects::RejectRecord;
use platformsync_aws::transactions::{DeliveryStatus, HoldNote, StoredTransaction};
use platformsync_domain::quality::{self, QualityPolicy};
use platformsync_domain::upload::{ItemRef, ParsedUpload, UploadItem};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A valid item to store.
#[derive(Debug, Clone)]
pub struct Write {
    pub item: ItemRef,
    pub record: StoredTransaction,
}

impl Write {
    pub fn is_held(&self) -> bool {
        self.record.status == DeliveryStatus::Held
    }
}

/// An item whose storage key an earlier item of the same upload has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    pub item: ItemRef,
    pub first_write: usize,
}

/// An item that could not be parsed.
#[derive(Debug, Clone)]
pub struct Reject {
    pub item: ItemRef,
    pub reason: String,
    pub record: RejectRecord,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// First occurrence of each storage key in the upload.
    pub writes: Vec<Write>,
    /// Later occurrences of a key already in this upload, with the index in
    /// `writes` of the first one: they share its fate and cost no write.
    pub repeats: Vec<Repeat>,
    pub rejects: Vec<Reject>,
    /// Journal numbers seen per safe (valid items only).
    pub sequences: BTreeMap<String, Vec<u64>>,
}

/// Decides the fate of every item of `upload`.
pub fn plan(
    upload: &ParsedUpload,
    upload_id: &str,
    now: OffsetDateTime,
    policy: &QualityPolicy,
) -> Plan {
    let received_at = now.format(&Rfc3339).unwrap_or_default();
    let mut out = Plan::default();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for outcome in &upload.items {
        match &outcome.result {
            Err(error) => {
                let reason = error.to_string();
                out.rejects.push(Reject {
                    item: outcome.item,
                    record: RejectRecord::new(
                        upload_id,
                        item_ref(outcome.item),
                        error.code(),
                        reason.clone(),
                        &outcome.raw,
                        now.unix_timestamp(),
                        received_at.clone(),
                    ),
                    reason,
                });
            }
            Ok(item) => {
                if let Some(n) = item.sequence_number() {
                    out.sequences
                        .entry(item.serial().as_str().to_owned())
                        .or_default()
                        .push(n);
                }
                let key = item.storage_key();
                match seen.entry((key.partition.as_str().to_owned(), key.sort)) {
                    Entry::Occupied(first) => {
                        out.repeats.push(Repeat {
                            item: outcome.item,
                            first_write: *first.get(),
                        });
                        continue;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(out.writes.len());
                    }
                }
                out.writes.push(Write {
                    item: outcome.item,
                    record: record(item, upload_id, &received_at, now, policy),
                });
            }
        }
    }
    out
}

/// The stored form of a valid item.
pub fn record(
    item: &UploadItem,
    upload_id: &str,
    received_at: &str,
    now: OffsetDateTime,
    policy: &QualityPolicy,
) -> StoredTransaction {
    let hold_reasons: Vec<HoldNote> = quality::check(item, now, policy)
        .iter()
        .map(|r| HoldNote {
            code: r.code().to_owned(),
            message: r.to_string(),
        })
        .collect();
    let key = item.storage_key();
    StoredTransaction {
        serial_number: key.partition.as_str().to_owned(),
        sort_key: key.sort,
        dedup_key: item.dedup_key().to_string(),
        kind: item.kind().wire_name().to_owned(),
        transaction_type: item.type_name().to_owned(),
        status: if hold_reasons.is_empty() {
            DeliveryStatus::Deliverable
        } else {
            DeliveryStatus::Held
        },
        hold_reasons,
        payload: item.to_json(),
        sequence_number: item.sequence_number(),
        upload_id: upload_id.to_owned(),
        received_at: received_at.to_owned(),
    }
}

/// The rejects table's sort key: array and zero-padded index, so a query
/// lists an upload's rejects in body order.
pub fn item_ref(item: ItemRef) -> String {
    format!("{}#{:06}", item.kind.wire_name(), item.index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use platformsync_domain::upload::parse_upload;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    const GOOD: &str = r#"{"PickupGroupId": 1, "SerialNumber": "ut07761", "RetrievedOn": "2019-09-12T14:11:20.387Z",
        "TransactionDateTime": "2019-09-12T08:00:00", "UserName": "JOSE", "TransactionType": "CashIn",
        "Amount": 40.00, "Denominations": [{"UnitValue": 20.0000, "Count": 2, "Currency": "USD"}]}"#;

    #[test]
    fn items_are_written_once_rejected_or_held() {
        let mismatch = GOOD.replace("40.00", "45.00");
        let reread = GOOD.replace("14:11:20.387Z", "15:00:00Z");
        let body =
            format!(r#"{{"Transactions": [{GOOD}, {reread}, {{"SerialNumber": 5}}, {mismatch}]}}"#);
        let parsed = parse_upload(body.as_bytes()).unwrap();
        let plan = plan(&parsed, "u1", now(), &QualityPolicy::default());

        assert_eq!(plan.writes.len(), 2, "the re-read is a repeat, not a write");
        assert_eq!(
            plan.repeats,
            vec![Repeat {
                item: ItemRef {
                    kind: plan.writes[0].item.kind,
                    index: 1
                },
                first_write: 0
            }]
        );
        let first = &plan.writes[0].record;
        assert_eq!(first.serial_number, "UT07761");
        assert_eq!(first.status, DeliveryStatus::Deliverable);
        assert!(
            first.payload.contains(r#""Amount":40.00"#),
            "{}",
            first.payload
        );
        assert!(first.sort_key.starts_with("2019-09-12T08:00:00.0000000#"));
        assert!(plan.writes[1].is_held());
        assert_eq!(
            plan.writes[1].record.hold_reasons[0].code,
            "amount_mismatch"
        );

        assert_eq!(plan.rejects.len(), 1);
        let reject = &plan.rejects[0];
        assert_eq!(reject.item.index, 2);
        assert_eq!(reject.record.item_ref, "Transactions#000002");
        assert_eq!(reject.record.raw, r#"{"SerialNumber": 5}"#);
        assert!(
            reject.reason.starts_with("Transactions[2]."),
            "{}",
            reject.reason
        );
    }

    #[test]
    fn sequence_numbers_are_collected_per_safe() {
        let a = GOOD.replace(
            r#""PickupGroupId": 1,"#,
            r#""PickupGroupId": 1, "SequenceNumber": 7,"#,
        );
        let b = a.replace("\"SequenceNumber\": 7", "\"SequenceNumber\": 9");
        let body = format!(r#"{{"Transactions": [{a}, {b}]}}"#);
        let plan = plan(
            &parse_upload(body.as_bytes()).unwrap(),
            "u",
            now(),
            &QualityPolicy::default(),
        );
        assert_eq!(plan.sequences.get("UT07761"), Some(&vec![7, 9]));
    }
}
