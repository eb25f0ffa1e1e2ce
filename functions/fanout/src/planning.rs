//! Planning: routing records to endpoints, cutting them into a plan's
//! messages, rendering a plan's message. Pure: the walk ([`crate::walk`])
//! does the I/O around it.

use crate::config_cache::{Owner, Routing};
use crate::decoding::{Pushable, Record};
use crate::failure::FanoutError;
use platformsync_aws::delivery_queue::OutgoingBatch;
use platformsync_aws::fanout_plans::{Plan, PlannedMessage};
use platformsync_delivery::batching::{self, BatchItem, SQS_MAX_MESSAGE_BYTES};
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchEntry, BatchMessage, PlanRef};
use platformsync_domain::endpoint::{CustomerId, EndpointId, EndpointSettings, MAX_BATCH_SIZE};
use platformsync_domain::types::MessageKind;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The records one endpoint receives in one message kind (a batch holds one
/// kind), in event order.
#[derive(Debug, Clone)]
pub struct EndpointRecords {
    pub endpoint: EndpointSettings,
    pub kind: MessageKind,
    pub records: Vec<usize>,
}

/// Where each pushable record goes.
#[derive(Debug, Default)]
pub struct Routed {
    /// Keyed by (endpoint, kind): the order batches are sent in.
    pub groups: BTreeMap<(EndpointId, MessageKind), EndpointRecords>,
    /// Records of safes no customer owns.
    pub unowned: Vec<usize>,
    /// Records whose safe's registry entry names an invalid customer id.
    pub invalid_owner: Vec<(usize, String)>,
    /// Records whose owner's endpoints could not be read: not handled.
    pub unrouted: Vec<(usize, FanoutError)>,
    /// Owned records that no endpoint of the owner wants.
    pub unwanted: usize,
}

/// Assigns every pushable record of `indices` to the endpoints of its owner
/// that want it.
pub fn route(records: &[Record], indices: &[usize], routing: &Routing) -> Routed {
    let mut routed = Routed::default();
    let none: Arc<[EndpointSettings]> = Arc::from(Vec::new());
    for &index in indices {
        let Some(p) = records.get(index).and_then(Record::pushable) else {
            continue;
        };
        // The owner when the transaction happened, not now (a safe moved
        // since keeps its earlier transactions with the earlier owner).
        let owner = routing.owner_at(&p.serial, &p.safe_time);
        let customer = match &owner {
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
            routed
                .groups
                .entry((endpoint.endpoint_id.clone(), p.kind))
                .or_insert_with(|| EndpointRecords {
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

/// A record the plan leaves out for good, and why (parked with its data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub record: usize,
    pub reason: String,
}

/// A new plan for some records, and what it leaves out.
#[derive(Debug, Default)]
pub struct NewPlan {
    pub plan: Option<Plan>,
    /// Poison: parked before the plan is written.
    pub parked: Vec<LeftOut>,
    pub oversized: usize,
    pub invalid_owner: usize,
    /// Kept, counted and alarmed, not parked (a safe not yet assigned).
    pub unowned: Vec<usize>,
    pub unwanted: usize,
    pub transactions_batched: usize,
}

/// Plans the pushable records `indices` (in stream order): routing decided
/// now, batches per (endpoint, kind) ordered by safe time, at most the
/// endpoint's max batch size, within the SQS message limit, with dedup ids
/// and `MessageId`s derived from the endpoint and the keys. Fails only when
/// some owner's endpoints could not be read (transient: plan again later).
pub fn make_plan(
    records: &[Record],
    indices: &[usize],
    routing: &Routing,
    created_at: &str,
) -> Result<NewPlan, FanoutError> {
    let mut out = NewPlan::default();
    let Some(first) = indices.first().and_then(|&i| records.get(i)?.pushable()) else {
        return Ok(out);
    };
    let mut routed = route(records, indices, routing);
    if !routed.unrouted.is_empty() {
        return Err(routed.unrouted.swap_remove(0).1);
    }
    let mut keys: Vec<String> = Vec::with_capacity(indices.len());
    let mut position: HashMap<&str, u32> = HashMap::with_capacity(indices.len());
    for &i in indices {
        if let Some(p) = records[i].pushable() {
            position
                .entry(p.entry.key.as_str())
                .or_insert(keys.len() as u32);
            keys.push(p.entry.key.clone());
        }
    }
    out.unowned = routed.unowned;
    out.unwanted = routed.unwanted;
    out.invalid_owner = routed.invalid_owner.len();
    for (record, customer) in routed.invalid_owner {
        out.parked.push(LeftOut {
            record,
            reason: format!("the safe registry names an invalid customer id {customer:?}"),
        });
    }
    let mut endpoints: Vec<(EndpointId, CustomerId)> = Vec::new();
    let mut messages: Vec<PlannedMessage> = Vec::new();
    for group in routed.groups.values() {
        let endpoint_id = &group.endpoint.endpoint_id;
        let mut items = Vec::with_capacity(group.records.len());
        let mut by_key: HashMap<&str, usize> = HashMap::new();
        for &index in &group.records {
            let Some(p) = records[index].pushable() else {
                continue;
            };
            by_key.insert(p.entry.key.as_str(), index);
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
        let plan = match batching::plan(
            endpoint_id.as_str(),
            items,
            max_items,
            SQS_MAX_MESSAGE_BYTES,
        ) {
            Ok(plan) => plan,
            // Unreachable with the clamped size and the SQS limit; never a
            // reason to stall the shard.
            Err(e) => {
                out.parked
                    .extend(group.records.iter().map(|&record| LeftOut {
                        record,
                        reason: format!("cannot plan for endpoint {endpoint_id}: {e}"),
                    }));
                continue;
            }
        };
        for item in plan.oversized {
            out.oversized += 1;
            if let Some(&record) = by_key.get(item.item.key.as_str()) {
                out.parked.push(LeftOut {
                    record,
                    reason: format!("{item} (endpoint {endpoint_id})"),
                });
            }
        }
        if plan.batches.is_empty() {
            continue;
        }
        let endpoint = endpoints
            .iter()
            .position(|(e, _)| e == endpoint_id)
            .unwrap_or_else(|| {
                endpoints.push((endpoint_id.clone(), group.endpoint.customer_id.clone()));
                endpoints.len() - 1
            });
        for batch in plan.batches {
            out.transactions_batched += batch.items.len();
            messages.push(PlannedMessage {
                message_id: batch.message_id,
                dedup_id: batch.dedup_id,
                endpoint,
                kind: group.kind,
                items: batch
                    .items
                    .iter()
                    .filter_map(|i| position.get(i.key.as_str()).copied())
                    .collect(),
            });
        }
    }
    // Send order: per endpoint, its messages in plan order (kinds in a
    // fixed order); the queue keeps each endpoint's order.
    messages.sort_by_key(|m| m.endpoint);
    out.plan = Some(Plan {
        key: first.entry.key.clone(),
        created_at: created_at.to_owned(),
        keys,
        endpoints,
        messages,
    });
    Ok(out)
}

/// Message `index` of `plan` as sent: the same body on every attempt and
/// every replay (the plan's `CreatedAt`, entries in plan order, a
/// [`PlanRef`]). `entries` must hold every item's key.
pub fn render(
    plan: &Plan,
    index: usize,
    entries: &HashMap<&str, &BatchEntry>,
) -> Result<OutgoingBatch, String> {
    let m = plan
        .messages
        .get(index)
        .ok_or_else(|| format!("no message {index}"))?;
    let (endpoint_id, customer_id) = plan
        .endpoints
        .get(m.endpoint)
        .ok_or_else(|| format!("message {index} names no endpoint"))?;
    let mut items = Vec::with_capacity(m.items.len());
    for &i in &m.items {
        let key = plan
            .keys
            .get(i as usize)
            .ok_or_else(|| format!("message {index} names item {i} beyond the plan"))?;
        let entry = entries
            .get(key.as_str())
            .ok_or_else(|| format!("transaction {key} is not available"))?;
        items.push((*entry).clone());
    }
    let message = BatchMessage {
        version: BATCH_MESSAGE_VERSION,
        message_id: m.message_id,
        endpoint_id: endpoint_id.clone(),
        customer_id: customer_id.clone(),
        kind: m.kind,
        created_at: plan.created_at.clone(),
        items,
        plan_ref: Some(PlanRef {
            plan: plan.key.clone(),
            index: index as u32,
        }),
    };
    let body = serde_json::to_string(&message).map_err(|e| format!("encoding: {e}"))?;
    Ok(OutgoingBatch {
        group_id: endpoint_id.clone(),
        dedup_id: m.dedup_id.clone(),
        body,
    })
}

/// The storage key of a pushable record (`None` for others).
pub fn key_of(record: &Record) -> Option<&str> {
    record.pushable().map(|p: &Pushable| p.entry.key.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoding::{Disposition, SkipReason};
    use crate::memory::{endpoint, push, routing};

    fn all(records: &[Record]) -> Vec<usize> {
        (0..records.len()).collect()
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
        let routed = route(&records, &all(&records), &routing);
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
                ("all".into(), Transactions, vec![0, 1]),
                ("cash".into(), Transactions, vec![0]),
                ("cash".into(), AuditTransactions, vec![2]),
            ]
        );
        assert_eq!(routed.unowned, vec![3]);
    }

    #[test]
    fn plans_ordered_size_limited_messages_and_renders_them_the_same_every_time() {
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
        let routing = routing(vec![
            endpoint("ep", "acme", serde_json::json!({"MaxBatchSize": 2})),
            endpoint("other", "acme", serde_json::json!({})),
        ]);
        let planned =
            make_plan(&records, &all(&records), &routing, "2026-01-01T00:00:00Z").unwrap();
        let plan = planned.plan.unwrap();
        assert_eq!(plan.key, records[0].pushable().unwrap().entry.key);
        assert_eq!(plan.keys.len(), 5);
        let per_message: Vec<(usize, Vec<u32>)> = plan
            .messages
            .iter()
            .map(|m| (m.endpoint, m.items.clone()))
            .collect();
        assert_eq!(
            per_message,
            vec![
                (0, vec![4, 3]),
                (0, vec![2, 1]),
                (0, vec![0]),
                (1, vec![4, 3, 2, 1, 0])
            ]
        );
        assert_eq!(plan.endpoints[0].0.as_str(), "ep");

        let entries: HashMap<&str, &BatchEntry> = records
            .iter()
            .filter_map(|r| r.pushable().map(|p| (p.entry.key.as_str(), &p.entry)))
            .collect();
        let first = render(&plan, 0, &entries).unwrap();
        let body: BatchMessage = serde_json::from_str(&first.body).unwrap();
        assert_eq!(body.message_id, plan.messages[0].message_id);
        assert_eq!(body.items[0].payload.get(), r#"{"N":4}"#);
        assert_eq!(body.created_at, "2026-01-01T00:00:00Z");
        assert_eq!(body.plan_ref.as_ref().unwrap().index, 0);
        assert_eq!(first.group_id.as_str(), "ep");
        assert_eq!(first.dedup_id.len(), 64);
        assert_eq!(
            render(&plan, 0, &entries).unwrap(),
            first,
            "same bytes on a re-send"
        );

        // Planned again later: the same messages.
        let again = make_plan(&records, &all(&records), &routing, "2026-02-02T00:00:00Z").unwrap();
        assert_eq!(again.plan.unwrap().messages, plan.messages);

        // A missing body is an error, not a shorter message.
        let partial: HashMap<&str, &BatchEntry> =
            entries.iter().skip(1).map(|(k, v)| (*k, *v)).collect();
        assert!((0..plan.messages.len()).any(|i| render(&plan, i, &partial).is_err()));
    }

    /// A stream batch of 1,000 realistic keys (`sha:` digests).
    fn thousand() -> Vec<Record> {
        (0..1000)
            .map(|i| {
                let mut r = push(
                    &i.to_string(),
                    if i % 2 == 0 { "UT1" } else { "UT2" },
                    &format!("2023-01-01T10:{:02}:{:02}.0000000", i / 60, i % 60),
                    MessageKind::Transactions,
                    "CashIn",
                );
                if let Disposition::Push(p) = &mut r.disposition {
                    p.entry.key = format!("{}|{}#sha:{:032x}", p.serial, p.safe_time, i * 7919);
                }
                r
            })
            .collect()
    }

    #[test]
    fn a_plan_costs_about_36_bytes_a_transaction_and_many_small_batches_trigger_a_split() {
        use platformsync_aws::fanout_plans::MAX_PLAN_BYTES;
        let records = thousand();
        let one = routing(vec![endpoint("ep", "acme", serde_json::json!({}))]);
        let plan = make_plan(&records, &all(&records), &one, "2026-01-01T00:00:00Z")
            .unwrap()
            .plan
            .unwrap();
        let bytes = plan.encoded_bytes();
        assert!(bytes < 40 * 1024, "{bytes} bytes for 1,000 transactions");
        // Eight endpoints with batches of one: 8,000 messages do not fit one
        // item; the handler halves the records until the plan fits.
        let many = routing(
            (0..8)
                .map(|i| {
                    endpoint(
                        &format!("ep{i}"),
                        "acme",
                        serde_json::json!({"MaxBatchSize": 1}),
                    )
                })
                .collect(),
        );
        let big = make_plan(&records, &all(&records), &many, "t")
            .unwrap()
            .plan
            .unwrap();
        assert!(big.encoded_bytes() > MAX_PLAN_BYTES);
        let half = make_plan(&records, &all(&records)[..250], &many, "t")
            .unwrap()
            .plan
            .unwrap();
        assert!(half.encoded_bytes() < MAX_PLAN_BYTES);
    }

    #[test]
    fn invalid_owners_are_parked_and_unowned_counted() {
        let mut records = vec![
            push("1", "UT1", "t1", MessageKind::Transactions, "CashIn"),
            push("2", "BAD", "t2", MessageKind::Transactions, "CashIn"),
            push("3", "NOBODY", "t3", MessageKind::Transactions, "CashIn"),
        ];
        records.push(Record {
            id: "4".into(),
            disposition: Disposition::Skip(SkipReason::Held),
        });
        let mut routing = routing(vec![endpoint("ep", "acme", serde_json::json!({}))]);
        routing
            .owners
            .insert("BAD".into(), Owner::Invalid("not valid!".into()));
        let planned = make_plan(&records, &[0, 1, 2], &routing, "t").unwrap();
        assert_eq!(planned.parked.len(), 1);
        assert_eq!(planned.parked[0].record, 1);
        assert_eq!(planned.unowned, vec![2]);
        let plan = planned.plan.unwrap();
        assert_eq!(plan.keys.len(), 3, "the plan covers every pushable record");
        assert_eq!(plan.messages.len(), 1);
        assert_eq!(plan.messages[0].items, vec![0]);
    }
}
