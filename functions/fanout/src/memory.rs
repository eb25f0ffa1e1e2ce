//! In-memory implementations of the fan-out's ports (unit tests only), a
//! journal of every write and send in the order they happened, and record
//! and routing builders.

use crate::config_cache::{Endpoints, Owner, Reads, Routing};
use crate::decoding::{Disposition, Pushable, Record};
use crate::ports::{ParkingPort, PlansPort, RoutingPort, TransactionsPort};
use platformsync_aws::StoreError;
use platformsync_aws::delivery_queue::{
    BatchReply, DeliveryQueue, EntryError, RequestEntry, RequestError, RetryPolicy,
    SendMessageBatch,
};
use platformsync_aws::fanout_plans::{Created, Found, Parked, Plan};
use platformsync_domain::batch::{BatchEntry, BatchMessage};
use platformsync_domain::dedup::StorageKey;
use platformsync_domain::endpoint::{CustomerId, EndpointSettings};
use platformsync_domain::record::StoredTransaction;
use platformsync_domain::types::MessageKind;
use serde_json::value::RawValue;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What the ports saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    PlanWritten(String),
    Pointed {
        at: String,
        plan: String,
    },
    ProgressSaved(String),
    Parked(String),
    /// A message SQS accepted: its group (endpoint), dedup id, `MessageId`
    /// and the storage keys it carries.
    Sent {
        group: String,
        dedup_id: String,
        message_id: String,
        keys: Vec<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Journal(Arc<Mutex<Vec<Step>>>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Journal {
    fn push(&self, step: Step) {
        lock(&self.0).push(step);
    }

    pub fn steps(&self) -> Vec<Step> {
        lock(&self.0).clone()
    }

    /// The accepted messages: (group, dedup id, MessageId, keys).
    pub fn sent(&self) -> Vec<(String, String, String, Vec<String>)> {
        self.steps()
            .into_iter()
            .filter_map(|s| match s {
                Step::Sent {
                    group,
                    dedup_id,
                    message_id,
                    keys,
                } => Some((group, dedup_id, message_id, keys)),
                _ => None,
            })
            .collect()
    }
}

enum Slot {
    Plan(Plan),
    Pointer(String),
}

/// Plans, pointers, progress and parked records, as the config table holds them.
#[derive(Default)]
pub(crate) struct MemoryPlans {
    journal: Journal,
    slots: Mutex<HashMap<String, Slot>>,
    sent: Mutex<HashMap<String, Vec<bool>>>,
    pub parked: Mutex<Vec<Parked>>,
}

impl MemoryPlans {
    pub fn new(journal: &Journal) -> Self {
        Self {
            journal: journal.clone(),
            ..Self::default()
        }
    }

    fn found(&self, key: &str) -> Option<Found> {
        let slots = lock(&self.slots);
        let (plan, via_pointer) = match slots.get(key)? {
            Slot::Plan(plan) => (plan, false),
            Slot::Pointer(to) => match slots.get(to)? {
                Slot::Plan(plan) => (plan, true),
                Slot::Pointer(_) => return None,
            },
        };
        let sent = lock(&self.sent).get(&plan.key).cloned().unwrap_or_default();
        Some(Found {
            plan: plan.clone(),
            sent,
            via_pointer,
        })
    }
}

impl PlansPort for MemoryPlans {
    async fn lookup(&self, key: &str, _now: i64) -> Result<Option<Found>, StoreError> {
        Ok(self.found(key))
    }

    async fn create(&self, plan: &Plan, _now: i64) -> Result<Created, StoreError> {
        let exists = matches!(lock(&self.slots).get(&plan.key), Some(Slot::Plan(_)));
        if exists && let Some(found) = self.found(&plan.key) {
            return Ok(Created::Existing(Box::new(found)));
        }
        lock(&self.slots).insert(plan.key.clone(), Slot::Plan(plan.clone()));
        self.journal.push(Step::PlanWritten(plan.key.clone()));
        Ok(Created::Written)
    }

    async fn point(&self, at: &str, plan_key: &str, _now: i64) -> Result<(), StoreError> {
        let mut slots = lock(&self.slots);
        // Never replaces a plan (as the conditional put).
        if at != plan_key && !matches!(slots.get(at), Some(Slot::Plan(_))) {
            slots.insert(at.to_owned(), Slot::Pointer(plan_key.to_owned()));
            self.journal.push(Step::Pointed {
                at: at.to_owned(),
                plan: plan_key.to_owned(),
            });
        }
        Ok(())
    }

    async fn save_sent(&self, plan_key: &str, sent: &[bool], _now: i64) -> Result<(), StoreError> {
        lock(&self.sent).insert(plan_key.to_owned(), sent.to_vec());
        self.journal.push(Step::ProgressSaved(plan_key.to_owned()));
        Ok(())
    }
}

impl ParkingPort for MemoryPlans {
    async fn park(&self, parked: &[Parked], _now: i64) -> Result<(), StoreError> {
        for p in parked {
            self.journal.push(Step::Parked(p.id.clone()));
        }
        lock(&self.parked).extend_from_slice(parked);
        Ok(())
    }
}

/// A fixed routing (every safe's owner and its endpoints).
pub(crate) struct MemoryRouting(pub Routing);

impl RoutingPort for MemoryRouting {
    async fn routing(&self, _serials: &BTreeSet<&str>) -> Result<(Routing, Reads), StoreError> {
        Ok((self.0.clone(), Reads::default()))
    }
}

/// The transactions table.
#[derive(Default)]
pub(crate) struct MemoryTransactions(pub HashMap<StorageKey, StoredTransaction>);

impl TransactionsPort for MemoryTransactions {
    async fn get_many(
        &self,
        keys: &[StorageKey],
    ) -> Result<HashMap<StorageKey, StoredTransaction>, StoreError> {
        Ok(keys
            .iter()
            .filter_map(|k| self.0.get(k).map(|t| (k.clone(), t.clone())))
            .collect())
    }
}

/// How SQS answers one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Throttled or a 5xx: worth retrying.
    Transient,
    /// `SenderFault`: the entry itself is wrong.
    Refused,
}

/// The SQS boundary in memory: accepts every entry but the scripted ones.
#[derive(Default)]
pub(crate) struct MemoryQueue {
    journal: Journal,
    /// (group, n): the n-th entry (0-based) offered for that group fails.
    faults: Mutex<HashMap<(String, usize), Fault>>,
    offered: Mutex<HashMap<String, usize>>,
}

impl MemoryQueue {
    /// The delivery queue over memory: one attempt per entry, so a scripted
    /// transient fault reaches the walk.
    pub fn delivery(journal: &Journal) -> DeliveryQueue<MemoryQueue> {
        let queue = MemoryQueue {
            journal: journal.clone(),
            ..MemoryQueue::default()
        };
        let policy = RetryPolicy {
            max_attempts: 1,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            deadline_margin: Duration::ZERO,
        };
        DeliveryQueue::with_transport(queue, policy)
    }

    pub fn fail(&self, group: &str, nth: usize, fault: Fault) {
        lock(&self.faults).insert((group.to_owned(), nth), fault);
    }
}

impl SendMessageBatch for MemoryQueue {
    async fn send_message_batch(
        &self,
        entries: &[RequestEntry<'_>],
    ) -> Result<BatchReply, RequestError> {
        let mut reply = BatchReply::default();
        for entry in entries {
            let batch = entry.batch;
            let nth = {
                let mut offered = lock(&self.offered);
                let n = offered.entry(batch.group_id.to_string()).or_default();
                *n += 1;
                *n - 1
            };
            match lock(&self.faults).remove(&(batch.group_id.to_string(), nth)) {
                Some(fault) => reply.failed.push(EntryError {
                    id: entry.id.to_owned(),
                    sender_fault: fault == Fault::Refused,
                    code: format!("{fault:?}"),
                    message: "scripted".into(),
                }),
                None => {
                    let body: Option<BatchMessage> = serde_json::from_str(&batch.body).ok();
                    self.journal.push(Step::Sent {
                        group: batch.group_id.to_string(),
                        dedup_id: batch.dedup_id.clone(),
                        message_id: body
                            .as_ref()
                            .map(|b| b.message_id.to_string())
                            .unwrap_or_default(),
                        keys: body
                            .map(|b| b.items.into_iter().map(|i| i.key).collect())
                            .unwrap_or_default(),
                    });
                    reply.successful.push(entry.id.to_owned());
                }
            }
        }
        Ok(reply)
    }
}

pub(crate) fn push(seq: &str, serial: &str, time: &str, kind: MessageKind, ty: &str) -> Record {
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

pub(crate) fn endpoint(id: &str, customer: &str, json: serde_json::Value) -> EndpointSettings {
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

pub(crate) fn routing(endpoints: Vec<EndpointSettings>) -> Routing {
    let acme = CustomerId::parse("acme").unwrap();
    let mut r = Routing::default();
    r.owners.insert("UT1".into(), Owner::Customer(acme.clone()));
    r.owners.insert("UT2".into(), Owner::Customer(acme.clone()));
    let list: Endpoints = Ok(endpoints.into());
    r.endpoints.insert(acme, list);
    r
}

/// Transaction `i` of safe UT1 (safe time `10:00:<i>`) as the stream hands
/// it over (an INSERT of a deliverable item, sequence number `i`) and as
/// the transactions table holds it.
pub(crate) fn stored(i: usize) -> (Record, StoredTransaction) {
    let image = serde_json::json!({
        "SerialNumber": {"S": "UT1"},
        "SortKey": {"S": format!("2023-01-01T10:00:{i:02}#k{i}")},
        "DedupKey": {"S": format!("k{i}")},
        "Kind": {"S": "Transactions"},
        "TransactionType": {"S": "CashIn"},
        "Status": {"S": "Deliverable"},
        "Payload": {"S": format!(r#"{{"N":{i}}}"#)},
        "UploadId": {"S": "u-1"},
        "ReceivedAt": {"S": "2026-01-01T00:00:00Z"}
    });
    let item: serde_dynamo::Item = serde_json::from_value(image.clone()).unwrap();
    let stored: StoredTransaction = serde_dynamo::from_item(item).unwrap();
    let event: aws_lambda_events::dynamodb::Event = serde_json::from_value(serde_json::json!({
        "Records": [{
            "awsRegion": "us-east-1",
            "eventID": format!("e-{i}"),
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "ApproximateCreationDateTime": 1.7e9,
                "Keys": {"SerialNumber": {"S": "UT1"}},
                "NewImage": image,
                "SequenceNumber": i.to_string(),
                "SizeBytes": 10,
                "StreamViewType": "NEW_IMAGE"
            }
        }]
    }))
    .unwrap();
    let record = event
        .records
        .into_iter()
        .map(crate::decoding::decode)
        .next()
        .unwrap();
    (record, stored)
}
