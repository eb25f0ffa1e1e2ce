//! Routing records to endpoints and cutting them into queue messages. Pure:
//! the handler does the I/O around it.

use crate::config_cache::{Owner, Routing};
use crate::handler::FanoutError;
use crate::records::{Pushable, Record};
use platformsync_aws::delivery_queue::OutgoingBatch;
use platformsync_aws::fanout_progress::SentPair;
use platformsync_delivery::batching::{self, BatchItem, OversizedItem, SQS_MAX_MESSAGE_BYTES};
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchMessage};
use platformsync_domain::endpoint::{CustomerId, EndpointId, EndpointSettings, MAX_BATCH_SIZE};
use platformsync_domain::types::MessageKind;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The records one endpoint receives in one message kind (a batch holds one
/// kind), in event order.
#[derive(Debug, Clone)]
pub struct Group {
    pub endpoint: EndpointSettings,
    pub kind: MessageKind,
    pub records: Vec<usize>,
}

/// Where each pushable record goes.
#[derive(Debug, Default)]
pub struct Routed {
    /// Keyed by (endpoint, kind): the order batches are sent in.
    pub groups: BTreeMap<(EndpointId, MessageKind), Group>,
    /// Records of safes no customer owns.
    pub unowned: Vec<usize>,
    /// Records whose safe's registry entry names an invalid customer id.
    pub invalid_owner: Vec<(usize, String)>,
    /// Records whose owner's endpoints could not be read: not handled.
    pub unrouted: Vec<(usize, FanoutError)>,
    /// (record, endpoint) pairs an earlier attempt already sent.
    pub already_sent: usize,
    /// Owned records that no endpoint of the owner wants.
    pub unwanted: usize,
}

/// Assigns every pushable record to the endpoints of its owner that want it,
/// leaving out the pairs in `already_sent`.
pub fn route(records: &[Record], routing: &Routing, already_sent: &BTreeSet<SentPair>) -> Routed {
    let mut routed = Routed::default();
    let none: Arc<[EndpointSettings]> = Arc::from(Vec::new());
    for (index, record) in records.iter().enumerate() {
        let Some(p) = record.pushable() else { continue };
        let customer = match routing.owner(&p.serial) {
            Owner::Customer(id) => id,
            Owner::None => {
                routed.unowned.push(index);
                continue;
            }
            Owner::Invalid(id) => {
                routed.invalid_owner.push((index, id.clone()));
                continue;
            }
        };
        let endpoints = match routing.endpoints.get(customer) {
            Some(Ok(endpoints)) => endpoints,
            Some(Err(e)) => {
                routed.unrouted.push((
                    index,
                    FanoutError::Endpoints {
                        customer: customer.clone(),
                        source: Arc::clone(e),
                    },
                ));
                continue;
            }
            // Every owner's endpoints are looked up; a customer with none
            // configured has an empty list, not a missing entry.
            None => &none,
        };
        let mut wanted = false;
        for endpoint in endpoints.iter() {
            if !endpoint.wants(p.kind, &p.transaction_type) {
                continue;
            }
            wanted = true;
            let pair = (record.id.clone(), endpoint.endpoint_id.to_string());
            if already_sent.contains(&pair) {
                routed.already_sent += 1;
                continue;
            }
            routed
                .groups
                .entry((endpoint.endpoint_id.clone(), p.kind))
                .or_insert_with(|| Group {
                    endpoint: endpoint.clone(),
                    kind: p.kind,
                    records: Vec::new(),
                })
                .records
                .push(index);
        }
        if !wanted {
            routed.unwanted += 1;
        }
    }
    routed
}

/// One queue message: what it holds, and what is sent.
#[derive(Debug, Clone)]
pub struct Message {
    pub info: BatchInfo,
    pub batch: OutgoingBatch,
}

/// What a queue message holds.
#[derive(Debug, Clone)]
pub struct BatchInfo {
    pub endpoint_id: EndpointId,
    pub customer_id: CustomerId,
    pub message_id: uuid::Uuid,
    /// Indices of the records in the message (several if they share a key).
    pub records: Vec<usize>,
    pub items: usize,
}

/// A group cut into messages.
#[derive(Debug, Default)]
pub struct PlannedGroup {
    pub messages: Vec<Message>,
    /// Items too large even alone, with their records. Unreachable while
    /// DynamoDB items are at most 400 KB; reported, never sent.
    pub oversized: Vec<(OversizedItem, Vec<usize>)>,
}

/// Plans and encodes the messages of one group: ordered by safe time, at
/// most the endpoint's max batch size, within the SQS message limit.
pub fn plan_group(
    group: &Group,
    records: &[Record],
    created_at: &str,
) -> Result<PlannedGroup, FanoutError> {
    let endpoint_id = &group.endpoint.endpoint_id;
    let mut by_key: HashMap<&str, (Vec<usize>, &Pushable)> = HashMap::new();
    let mut items = Vec::with_capacity(group.records.len());
    for &index in &group.records {
        let Some(p) = records.get(index).and_then(Record::pushable) else {
            continue;
        };
        let entry = by_key
            .entry(p.entry.key.as_str())
            .or_insert_with(|| (Vec::new(), p));
        entry.0.push(index);
        items.push(BatchItem {
            key: p.entry.key.clone(),
            safe_time: p.safe_time.clone(),
            serial: p.serial.clone(),
            bytes: p.entry_bytes,
        });
    }
    // Stored settings are validated, but a bad value must not stop the
    // shard: clamp to what the contract allows.
    let max_items = usize::from(group.endpoint.max_batch_size.clamp(1, MAX_BATCH_SIZE));
    let plan = batching::plan(
        endpoint_id.as_str(),
        items,
        max_items,
        SQS_MAX_MESSAGE_BYTES,
    )
    .map_err(|source| FanoutError::Plan {
        endpoint: endpoint_id.clone(),
        source,
    })?;

    let mut planned = PlannedGroup::default();
    for batch in plan.batches {
        let mut message_records = Vec::new();
        let mut entries = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            if let Some((indices, p)) = by_key.get(item.key.as_str()) {
                message_records.extend(indices.iter().copied());
                entries.push(p.entry.clone());
            }
        }
        let message = BatchMessage {
            version: BATCH_MESSAGE_VERSION,
            message_id: batch.message_id,
            endpoint_id: endpoint_id.clone(),
            customer_id: group.endpoint.customer_id.clone(),
            kind: group.kind,
            created_at: created_at.to_owned(),
            items: entries,
        };
        let body = serde_json::to_string(&message).map_err(|source| FanoutError::Encode {
            endpoint: endpoint_id.clone(),
            source,
        })?;
        planned.messages.push(Message {
            info: BatchInfo {
                endpoint_id: endpoint_id.clone(),
                customer_id: group.endpoint.customer_id.clone(),
                message_id: batch.message_id,
                records: message_records,
                items: message.items.len(),
            },
            batch: OutgoingBatch {
                group_id: endpoint_id.to_string(),
                dedup_id: batch.dedup_id,
                body,
            },
        });
    }
    for item in plan.oversized {
        let indices = by_key
            .get(item.item.key.as_str())
            .map(|(i, _)| i.clone())
            .unwrap_or_default();
        planned.oversized.push((item, indices));
    }
    Ok(planned)
}

/// What to remember for the replay that starts at `first_failed`: the pairs
/// an earlier attempt sent plus those sent now, for records from
/// `first_failed` on (the records before it are done and not replayed).
pub fn progress_after(
    records: &[Record],
    first_failed: usize,
    already_sent: &BTreeSet<SentPair>,
    sent_now: &BTreeSet<(usize, EndpointId)>,
) -> BTreeSet<SentPair> {
    let done: BTreeSet<&str> = records
        .iter()
        .take(first_failed)
        .map(|r| r.id.as_str())
        .collect();
    let earlier = already_sent
        .iter()
        .filter(|(seq, _)| !done.contains(seq.as_str()))
        .cloned();
    let now = sent_now
        .iter()
        .filter(|(index, _)| *index >= first_failed)
        .filter_map(|(index, endpoint)| {
            records
                .get(*index)
                .map(|r| (r.id.clone(), endpoint.to_string()))
        });
    earlier.chain(now).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_cache::Endpoints;
    use crate::records::{Disposition, SkipReason};
    use platformsync_domain::batch::BatchEntry;
    use serde_json::value::RawValue;

    fn push(seq: &str, serial: &str, time: &str, kind: MessageKind, ty: &str) -> Record {
        let entry = BatchEntry {
            key: BatchEntry::key_of(serial, &format!("{time}#k{seq}")),
            payload: RawValue::from_string(format!(r#"{{"N":{seq}}}"#)).unwrap(),
        };
        Record {
            id: seq.into(),
            disposition: Disposition::Push(Box::new(Pushable {
                serial: serial.into(),
                kind,
                transaction_type: ty.into(),
                safe_time: time.into(),
                entry_bytes: serde_json::to_string(&entry).unwrap().len(),
                entry,
            })),
        }
    }

    fn endpoint(id: &str, customer: &str, json: serde_json::Value) -> EndpointSettings {
        let mut base = serde_json::json!({
            "EndpointId": id,
            "CustomerId": customer,
            "Url": "https://example.com/hook",
            "ApiKeySecret": "s",
        });
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn routing(endpoints: Vec<EndpointSettings>) -> Routing {
        let acme = CustomerId::parse("acme").unwrap();
        let mut r = Routing::default();
        r.owners.insert("UT1".into(), Owner::Customer(acme.clone()));
        r.owners.insert("UT2".into(), Owner::Customer(acme.clone()));
        let list: Endpoints = Ok(endpoints.into());
        r.endpoints.insert(acme, list);
        r
    }

    #[test]
    fn routes_by_owner_message_type_and_whitelist() {
        use MessageKind::*;
        let records = vec![
            push("1", "UT1", "2023-01-01T10:00:00", Transactions, "CashIn"),
            push("2", "UT2", "2023-01-01T09:00:00", Transactions, "Servicing"),
            push(
                "3",
                "UT1",
                "2023-01-01T11:00:00",
                AuditTransactions,
                "DoorOpened",
            ),
            push("4", "NOBODY", "2023-01-01T11:00:00", Transactions, "CashIn"),
            Record {
                id: "5".into(),
                disposition: Disposition::Skip(SkipReason::Held),
            },
        ];
        let routing = routing(vec![
            endpoint("all", "acme", serde_json::json!({})),
            endpoint(
                "cash",
                "acme",
                serde_json::json!({"Whitelist": ["ValidatedCashIn", "DoorOpened"],
                                   "MessageTypes": ["Transactions", "AuditTransactions"]}),
            ),
            endpoint("off", "acme", serde_json::json!({"Enabled": false})),
        ]);
        let already = BTreeSet::from([("2".to_owned(), "all".to_owned())]);
        let routed = route(&records, &routing, &already);
        let groups: Vec<(String, MessageKind, Vec<usize>)> = routed
            .groups
            .values()
            .map(|g| {
                (
                    g.endpoint.endpoint_id.to_string(),
                    g.kind,
                    g.records.clone(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                ("all".into(), Transactions, vec![0]),
                ("cash".into(), Transactions, vec![0]),
                ("cash".into(), AuditTransactions, vec![2]),
            ]
        );
        assert_eq!(routed.unowned, vec![3]);
        assert_eq!(routed.already_sent, 1);
    }

    #[test]
    fn plans_ordered_size_limited_messages_with_their_records() {
        let records: Vec<Record> = (0..5)
            .map(|i| {
                push(
                    &i.to_string(),
                    "UT1",
                    &format!("2023-01-01T10:00:0{}", 4 - i),
                    MessageKind::Transactions,
                    "CashIn",
                )
            })
            .collect();
        let group = Group {
            endpoint: endpoint("ep", "acme", serde_json::json!({"MaxBatchSize": 2})),
            kind: MessageKind::Transactions,
            records: (0..5).collect(),
        };
        let planned = plan_group(&group, &records, "2026-01-01T00:00:00Z").unwrap();
        let per_message: Vec<Vec<usize>> = planned
            .messages
            .iter()
            .map(|m| m.info.records.clone())
            .collect();
        assert_eq!(per_message, vec![vec![4, 3], vec![2, 1], vec![0]]);
        let first: BatchMessage = serde_json::from_str(&planned.messages[0].batch.body).unwrap();
        assert_eq!(first.message_id, planned.messages[0].info.message_id);
        assert_eq!(first.items[0].payload.get(), r#"{"N":4}"#);
        assert_eq!(planned.messages[0].batch.group_id, "ep");
        assert_eq!(planned.messages[0].batch.dedup_id.len(), 64);

        // The same records planned again make the same messages.
        let again = plan_group(&group, &records, "2026-02-02T00:00:00Z").unwrap();
        let ids = |p: &PlannedGroup| {
            p.messages
                .iter()
                .map(|m| (m.batch.dedup_id.clone(), m.info.message_id))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&planned), ids(&again));
    }

    #[test]
    fn progress_keeps_pairs_from_the_first_failed_record_on() {
        let records: Vec<Record> = ["10", "11", "12", "13"]
            .iter()
            .map(|s| push(s, "UT1", "t", MessageKind::Transactions, "CashIn"))
            .collect();
        let ep = |s: &str| EndpointId::parse(s).unwrap();
        let already = BTreeSet::from([
            ("10".to_owned(), "a".to_owned()),
            ("12".to_owned(), "a".to_owned()),
            ("99".to_owned(), "a".to_owned()),
        ]);
        let sent = BTreeSet::from([(0, ep("b")), (1, ep("b")), (3, ep("b"))]);
        let pairs = progress_after(&records, 1, &already, &sent);
        let expected: BTreeSet<SentPair> = [("11", "b"), ("12", "a"), ("13", "b"), ("99", "a")]
            .iter()
            .map(|(s, e)| ((*s).to_owned(), (*e).to_owned()))
            .collect();
        assert_eq!(pairs, expected);
    }
}
