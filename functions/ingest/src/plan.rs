//! What to do with each item of a parsed upload: no I/O, so every rule here is
//! unit-tested without a stack.

use platformsync_domain::dedup::StorageKey;
use platformsync_domain::quality::{self, QualityPolicy};
use platformsync_domain::record::{DeliveryStatus, HoldNote, RejectRecord, StoredTransaction};
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::upload::{ItemError, ItemErrorKind, ItemRef, ParsedUpload, UploadItem};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;

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
    pub sequences: BTreeMap<SerialNumber, Vec<u64>>,
}

/// Most steps in one safe's chain of writes (see [`Plan::writes_by_safe`]):
/// the chain fits ingest's ~25 s write budget at up to ~100 ms a step
/// (a put takes a few milliseconds; a throttled one pauses for its retries).
pub const MAX_STEPS_PER_SAFE: usize = 250;

impl Plan {
    /// The writes, per safe, as a chain of steps in the safe's time order
    /// (by sort key): a step's writes go together, the next step starts when
    /// they have landed, safes side by side. DynamoDB Streams keeps one
    /// partition key's changes in write order while the partition is not
    /// split, so the fan-out sees a safe's transactions in the order they
    /// happened, across stream batches too.
    /// A step is one write unless the safe has more than
    /// [`MAX_STEPS_PER_SAFE`] in the upload (a backfill): then steps of a
    /// few consecutive writes keep the chain that long, and only writes of
    /// one step (the same few moments) may reach the stream out of order.
    pub fn writes_by_safe(&self) -> Vec<Vec<Vec<usize>>> {
        let mut by_safe: BTreeMap<&SerialNumber, Vec<usize>> = BTreeMap::new();
        for (i, w) in self.writes.iter().enumerate() {
            by_safe.entry(&w.record.serial_number).or_default().push(i);
        }
        by_safe
            .into_values()
            .map(|mut writes| {
                writes.sort_by(|a, b| {
                    let key = |i: &usize| self.writes[*i].record.sort_key.as_str();
                    key(a).cmp(key(b))
                });
                let step = writes.len().div_ceil(MAX_STEPS_PER_SAFE).max(1);
                writes.chunks(step).map(<[usize]>::to_vec).collect()
            })
            .collect()
    }
}

/// The largest stored form of one valid item that is written.
///
/// DynamoDB refuses items over 400 KB, and a transaction must also fit, with
/// others, in one delivery message (SQS: 256 KB). An item the table refuses
/// would fail on every re-send of its upload (a 503 forever), so it is
/// rejected here with its reason instead. The parser already bounds every
/// field and list (`MAX_DENOMINATIONS`), so no valid record comes near this
/// (the largest possible is about 33 KB); this is the belt for what those
/// bounds miss.
pub const MAX_STORED_ITEM_BYTES: usize = 64 * 1024;

/// An upper bound of the DynamoDB size of `record`: its JSON form (attribute
/// names and values as text, quotes and escapes included) is never smaller
/// than DynamoDB counts it (names and strings as UTF-8 bytes, numbers at
/// most one byte per digit and one more).
pub fn stored_size(record: &StoredTransaction) -> usize {
    serde_json::to_vec(record).map_or(usize::MAX, |v| v.len())
}

/// Decides the fate of every item of `upload`.
pub fn plan(
    upload: &ParsedUpload,
    upload_id: &str,
    now: OffsetDateTime,
    policy: &QualityPolicy,
) -> Plan {
    plan_with_limit(upload, upload_id, now, policy, MAX_STORED_ITEM_BYTES)
}

/// [`plan`] with another size limit (tests).
pub fn plan_with_limit(
    upload: &ParsedUpload,
    upload_id: &str,
    now: OffsetDateTime,
    policy: &QualityPolicy,
    max_item_bytes: usize,
) -> Plan {
    let mut out = Plan::default();
    let mut seen: HashMap<StorageKey, usize> = HashMap::new();
    for outcome in &upload.items {
        match &outcome.result {
            Err(error) => {
                out.rejects
                    .push(reject(outcome.item, error, &outcome.raw, upload_id, now));
            }
            Ok(item) => {
                let seen_key = item.storage_key();
                if let Some(&first_write) = seen.get(&seen_key) {
                    out.repeats.push(Repeat {
                        item: outcome.item,
                        first_write,
                    });
                    continue;
                }
                let record = record(item, upload_id, now, policy);
                let bytes = stored_size(&record);
                if bytes > max_item_bytes {
                    let error = ItemError {
                        item: Some(outcome.item),
                        ..ItemError::whole(ItemErrorKind::TooLarge {
                            bytes,
                            limit: max_item_bytes,
                        })
                    };
                    out.rejects
                        .push(reject(outcome.item, &error, &outcome.raw, upload_id, now));
                    continue;
                }
                if let Some(n) = item.sequence_number() {
                    out.sequences
                        .entry(item.serial().clone())
                        .or_default()
                        .push(n);
                }
                seen.insert(seen_key, out.writes.len());
                out.writes.push(Write {
                    item: outcome.item,
                    record,
                });
            }
        }
    }
    out
}

fn reject(
    item: ItemRef,
    error: &ItemError,
    raw: &str,
    upload_id: &str,
    now: OffsetDateTime,
) -> Reject {
    let reason = error.to_string();
    Reject {
        item,
        record: RejectRecord::new(
            upload_id,
            item_ref(item),
            error.code(),
            reason.clone(),
            raw,
            now,
        ),
        reason,
    }
}

/// The stored form of a valid item, received `now`.
pub fn record(
    item: &UploadItem,
    upload_id: &str,
    now: OffsetDateTime,
    policy: &QualityPolicy,
) -> StoredTransaction {
    let hold_reasons: Vec<HoldNote> = quality::check(item, now, policy)
        .iter()
        .map(HoldNote::from)
        .collect();
    let key = item.storage_key();
    StoredTransaction {
        serial_number: key.partition,
        sort_key: key.sort,
        dedup_key: item.dedup_key().to_string(),
        record_type: item.record_type(),
        status: if hold_reasons.is_empty() {
            DeliveryStatus::Deliverable
        } else {
            DeliveryStatus::Held
        },
        hold_reasons,
        payload: item.to_json(),
        sequence_number: item.sequence_number(),
        upload_id: upload_id.to_owned(),
        received_at: now,
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
    fn each_safes_writes_go_in_its_time_order() {
        let at = |safe: &str, time: &str, amount: u32| {
            GOOD.replace("ut07761", safe)
                .replace("2019-09-12T08:00:00", time)
                .replace("40.00", &format!("{amount}.00"))
                .replace("\"Count\": 2", &format!("\"Count\": {amount}"))
                .replace("20.0000", "1.0000")
        };
        let items = [
            at("ut1", "2019-09-12T09:00:00", 3),
            at("ut2", "2019-09-12T07:00:00", 4),
            at("ut1", "2019-09-12T08:00:00", 5),
            at("ut1", "2019-09-12T08:30:00-06:00", 6),
            at("ut2", "2019-09-11T23:00:00", 7),
        ];
        let body = format!(r#"{{"Transactions": [{}]}}"#, items.join(","));
        let parsed = parse_upload(body.as_bytes()).unwrap();
        let plan = plan(&parsed, "u1", now(), &QualityPolicy::default());
        assert_eq!(plan.writes.len(), 5, "{:?}", plan.rejects);
        let order: Vec<Vec<(String, String)>> = plan
            .writes_by_safe()
            .iter()
            .map(|steps| {
                assert!(steps.iter().all(|s| s.len() == 1), "one write a step");
                steps
                    .iter()
                    .flatten()
                    .map(|&i| {
                        let r = &plan.writes[i].record;
                        (r.serial_number.to_string(), r.sort_key[..19].to_owned())
                    })
                    .collect()
            })
            .collect();
        let e = |s: &str, t: &str| (s.to_owned(), t.to_owned());
        assert_eq!(
            order,
            vec![
                vec![
                    e("UT1", "2019-09-12T08:00:00"),
                    e("UT1", "2019-09-12T08:30:00"),
                    e("UT1", "2019-09-12T09:00:00"),
                ],
                vec![
                    e("UT2", "2019-09-11T23:00:00"),
                    e("UT2", "2019-09-12T07:00:00"),
                ],
            ]
        );
    }

    #[test]
    fn a_backfill_of_one_safe_keeps_its_chain_short_and_in_time_order() {
        let n = 4 * MAX_STEPS_PER_SAFE + 100;
        let items: Vec<String> = (0..n)
            .rev()
            .map(|i| {
                GOOD.replace(
                    "2019-09-12T08:00:00",
                    &format!(
                        "2019-09-12T{:02}:{:02}:{:02}",
                        i / 3600,
                        i / 60 % 60,
                        i % 60
                    ),
                )
            })
            .collect();
        let body = format!(r#"{{"Transactions": [{}]}}"#, items.join(","));
        let parsed = parse_upload(body.as_bytes()).unwrap();
        let plan = plan(&parsed, "u1", now(), &QualityPolicy::default());
        assert_eq!(plan.writes.len(), n, "{:?}", plan.rejects.first());
        let safes = plan.writes_by_safe();
        assert_eq!(safes.len(), 1);
        let steps = &safes[0];
        assert!(steps.len() <= MAX_STEPS_PER_SAFE, "{} steps", steps.len());
        assert!(steps.iter().all(|s| s.len() <= 5), "a few writes a step");
        let keys: Vec<&str> = steps
            .iter()
            .flatten()
            .map(|&i| plan.writes[i].record.sort_key.as_str())
            .collect();
        assert_eq!(keys.len(), n, "every write once");
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "in time order");
    }

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
        assert_eq!(first.serial_number.as_str(), "UT07761");
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
    fn an_item_too_large_to_store_is_rejected_with_its_reason() {
        let body = format!(
            r#"{{"Transactions": [{GOOD}, {}]}}"#,
            GOOD.replace("08:00:00", "09:00:00")
        );
        let parsed = parse_upload(body.as_bytes()).unwrap();
        let size =
            stored_size(&plan(&parsed, "u", now(), &QualityPolicy::default()).writes[0].record);
        assert!(size < 2_000, "{size}");
        let plan = plan_with_limit(&parsed, "u", now(), &QualityPolicy::default(), size - 1);
        assert!(plan.writes.is_empty());
        assert_eq!(plan.rejects.len(), 2);
        let r = &plan.rejects[1];
        assert_eq!(r.record.code, "item_too_large");
        assert_eq!(
            r.reason,
            format!(
                "Transactions[1]: the stored record would be {size} bytes; at most {} are accepted",
                size - 1
            )
        );
        assert_eq!(r.record.raw, GOOD.replace("08:00:00", "09:00:00"));
    }

    /// The estimate is an upper bound of DynamoDB's count for the largest
    /// record the parser accepts, and that record is far below the limit.
    #[test]
    fn the_largest_valid_record_fits() {
        use platformsync_domain::upload::MAX_DENOMINATIONS;
        let denomination = r#"{"UnitValue": -7922816251426433759354395033.5, "Count": -9223372036854775808, "Currency": "USD"}"#;
        let big = GOOD
            .replace(
                r#"[{"UnitValue": 20.0000, "Count": 2, "Currency": "USD"}]"#,
                &format!("[{}]", vec![denomination; MAX_DENOMINATIONS].join(",")),
            )
            .replace("\"JOSE\"", &format!("\"{}\"", "\u{10FFFF}".repeat(128)))
            .replace("\"PickupGroupId\": 1,", "\"PickupGroupId\": -9223372036854775808, \"Register\": \"ABCDEFGH\", \"SequenceNumber\": 18446744073709551615,");
        let body = format!(r#"{{"Transactions": [{big}]}}"#);
        let parsed = parse_upload(body.as_bytes()).unwrap();
        assert!(
            parsed.items[0].result.is_ok(),
            "{:?}",
            parsed.items[0].result
        );
        let plan = plan(&parsed, "u", now(), &QualityPolicy::default());
        let size = stored_size(&plan.writes[0].record);
        assert!(
            size > 10_000 && size < MAX_STORED_ITEM_BYTES * 3 / 4,
            "{size}"
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
        let serial = SerialNumber::parse("UT07761").unwrap();
        assert_eq!(plan.sequences.get(&serial), Some(&vec![7, 9]));
    }
}
