//! The stores and the queue push uses, as small typed traits, so the flow
//! ([`crate::flow`]) is tested with in-memory implementations
//! ([`memory`]) and runs on AWS with [`AwsPorts`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platformsync_aws::StoreError;
use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::health::{HealthStore, Saved, Versioned};
use platformsync_aws::ledger::{
    AttemptRecord, DeliveredAttempt, Delivery, Ledger, Lookup, Recorded,
};
use platformsync_aws::notifier::{Notification, NotificationKind, Notifier};
use platformsync_aws::parked::{ParkBatch, ParkedStore};
use platformsync_aws::redelivery::{DeadLetter, Redelivery};
use platformsync_delivery::incident::EndpointState;
use platformsync_delivery::ssrf::check_url;
use platformsync_domain::batch::PlanRef;
use platformsync_domain::endpoint::{CustomerId, EndpointId, EndpointSettings};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::attempt::{Attempt, Posted};

/// A batch (or a part of one) on its way to the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub message_id: Uuid,
    pub kind: platformsync_domain::types::MessageKind,
    pub payloads: &'a [Box<RawValue>],
}

/// What a notice says, before the customer's details are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeInput {
    pub kind: NotificationKind,
    pub customer_id: CustomerId,
    pub endpoint_id: EndpointId,
    pub incident_id: String,
    pub failing_since: String,
    pub message_id: String,
    pub last_error: Option<String>,
    pub attempts: u32,
    pub refused: Option<usize>,
}

/// `(endpoint, MessageId)` of a batch.
pub type BatchKey = (EndpointId, Uuid);

pub trait LedgerPort: Sync {
    fn lookup(
        &self,
        endpoint_id: &EndpointId,
        message_id: Uuid,
    ) -> impl Future<Output = Result<Lookup, StoreError>> + Send;
    /// A whole event's look-ups at once.
    fn lookup_many(
        &self,
        batches: &[BatchKey],
    ) -> impl Future<Output = Result<HashMap<BatchKey, Lookup>, StoreError>> + Send;
    /// With `plan_ref`, the ledger stores the plan reference, not the keys;
    /// with `attempt`, the POST that delivered it (no `TRY#` record of its
    /// own, unless [`Recorded::AlreadyThere`]).
    fn record_delivery(
        &self,
        delivery: &Delivery<'_>,
        plan_ref: Option<&PlanRef>,
        attempt: Option<&DeliveredAttempt>,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;
    fn record_refused(
        &self,
        endpoint_id: &EndpointId,
        message_id: Uuid,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One failed or refused POST, for `platformsync attempts` (kept 30 days).
    fn record_attempt(
        &self,
        record: &AttemptRecord,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

pub trait HealthPort: Sync {
    fn load(
        &self,
        endpoint_id: &EndpointId,
    ) -> impl Future<Output = Result<Versioned, StoreError>> + Send;
    /// A whole event's endpoints at once.
    fn load_many(
        &self,
        endpoint_ids: &[EndpointId],
    ) -> impl Future<Output = Result<HashMap<EndpointId, Versioned>, StoreError>> + Send;
    fn save(
        &self,
        endpoint_id: &EndpointId,
        customer_id: &CustomerId,
        state: &EndpointState,
        version: u64,
    ) -> impl Future<Output = Result<Saved, StoreError>> + Send;
}

pub trait ParkPort: Sync {
    fn park(
        &self,
        batch: &ParkBatch<'_>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;
    /// Parks while the endpoint is resuming, counted on its health item in
    /// the same write; `None`: it is no longer resuming, nothing parked.
    fn park_counted(
        &self,
        batch: &ParkBatch<'_>,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

pub trait QueuePort: Sync {
    fn retry_in(
        &self,
        receipt: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn release(&self, receipts: &[&str]) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn delete(&self, receipts: &[&str]) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn dead_letter(
        &self,
        letter: &DeadLetter<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

pub trait NoticePort: Sync {
    fn notify(&self, notice: &NoticeInput) -> impl Future<Output = Result<(), StoreError>> + Send;
}

pub trait EndpointPort: Sync {
    fn endpoint(
        &self,
        customer: &CustomerId,
        endpoint: &EndpointId,
    ) -> impl Future<Output = Result<Option<Arc<EndpointSettings>>, StoreError>> + Send;
}

pub trait PostPort: Sync {
    /// One attempt (a 401/403 refetches the key and posts once more inside
    /// it). A failure of our own AWS calls is [`Posted::Ours`].
    fn post(
        &self,
        endpoint: &EndpointSettings,
        outgoing: &Outgoing<'_>,
        deadline: Instant,
    ) -> impl Future<Output = Posted> + Send;
}

/// Everything the flow needs.
pub trait Ports:
    LedgerPort + HealthPort + ParkPort + QueuePort + NoticePort + EndpointPort + PostPort
{
}

impl<T> Ports for T where
    T: LedgerPort + HealthPort + ParkPort + QueuePort + NoticePort + EndpointPort + PostPort
{
}

type EndpointKey = (CustomerId, EndpointId);

/// The ports on AWS.
pub struct AwsPorts {
    pub(crate) attempt: Attempt,
    pub(crate) config: ConfigStore,
    pub(crate) ledger: Ledger,
    pub(crate) health: HealthStore,
    pub(crate) parked: ParkedStore,
    pub(crate) notifier: Notifier,
    pub(crate) queue: Redelivery,
    pub(crate) config_cache: Duration,
    pub(crate) window: String,
    pub(crate) endpoints: Mutex<HashMap<EndpointKey, (Arc<EndpointSettings>, Instant)>>,
}

impl LedgerPort for AwsPorts {
    async fn lookup(
        &self,
        endpoint_id: &EndpointId,
        message_id: Uuid,
    ) -> Result<Lookup, StoreError> {
        self.ledger.lookup(endpoint_id, message_id).await
    }
    async fn lookup_many(
        &self,
        batches: &[BatchKey],
    ) -> Result<HashMap<BatchKey, Lookup>, StoreError> {
        self.ledger.lookup_many(batches).await
    }
    async fn record_delivery(
        &self,
        delivery: &Delivery<'_>,
        plan_ref: Option<&PlanRef>,
        attempt: Option<&DeliveredAttempt>,
    ) -> Result<Recorded, StoreError> {
        self.ledger
            .record_delivered(delivery, plan_ref, attempt)
            .await
    }
    async fn record_attempt(
        &self,
        record: &AttemptRecord,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.ledger.record_attempt(record, at).await
    }
    async fn record_refused(
        &self,
        endpoint_id: &EndpointId,
        message_id: Uuid,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.ledger
            .record_refused(endpoint_id, message_id, at)
            .await
    }
}

impl HealthPort for AwsPorts {
    async fn load(&self, endpoint_id: &EndpointId) -> Result<Versioned, StoreError> {
        self.health.load(endpoint_id).await
    }
    async fn load_many(
        &self,
        endpoint_ids: &[EndpointId],
    ) -> Result<HashMap<EndpointId, Versioned>, StoreError> {
        self.health.load_many(endpoint_ids).await
    }
    async fn save(
        &self,
        endpoint_id: &EndpointId,
        customer_id: &CustomerId,
        state: &EndpointState,
        version: u64,
    ) -> Result<Saved, StoreError> {
        self.health
            .save(endpoint_id, customer_id, state, version)
            .await
    }
}

impl ParkPort for AwsPorts {
    async fn park(&self, batch: &ParkBatch<'_>) -> Result<String, StoreError> {
        self.parked.park(batch).await
    }
    async fn park_counted(&self, batch: &ParkBatch<'_>) -> Result<Option<String>, StoreError> {
        let count = self.health.count_park(batch.endpoint_id)?;
        self.parked.park_counted(batch, count).await
    }
}

impl QueuePort for AwsPorts {
    async fn retry_in(&self, receipt: &str, delay: Duration) -> Result<(), StoreError> {
        let seconds = i32::try_from(delay.as_secs()).unwrap_or(i32::MAX);
        self.queue.retry_in(receipt, seconds).await
    }
    async fn release(&self, receipts: &[&str]) -> Result<(), StoreError> {
        self.queue.release(receipts).await
    }
    async fn delete(&self, receipts: &[&str]) -> Result<(), StoreError> {
        self.queue.delete(receipts).await
    }
    async fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), StoreError> {
        self.queue.dead_letter(letter).await
    }
}

impl NoticePort for AwsPorts {
    async fn notify(&self, notice: &NoticeInput) -> Result<(), StoreError> {
        let customer = self
            .config
            .customer(&notice.customer_id)
            .await
            .unwrap_or_else(|e| {
                // Support still hears about it; the recipients list is missing.
                tracing::warn!(error = %e, "could not read the customer for the notification");
                None
            });
        let endpoint = self
            .endpoint(&notice.customer_id, &notice.endpoint_id)
            .await
            .ok()
            .flatten()
            .and_then(|e| check_url(&e.url).ok())
            .map(|u| u.redacted())
            .unwrap_or_else(|| "(settings unavailable)".to_owned());
        let notification = Notification {
            kind: notice.kind,
            customer_id: notice.customer_id.to_string(),
            customer_name: customer.as_ref().map(|c| c.name.clone()),
            endpoint_id: notice.endpoint_id.to_string(),
            endpoint,
            recipients: customer
                .map(|c| c.notification_recipients)
                .unwrap_or_default(),
            incident_id: notice.incident_id.clone(),
            failing_since: notice.failing_since.clone(),
            message_id: notice.message_id.clone(),
            last_error: notice.last_error.clone(),
            attempts: notice.attempts,
            window: self.window.clone(),
            kept_in: Some("parked batches of the delivery ledger".to_owned()),
            refused: notice.refused,
        };
        self.notifier.publish(&notification).await
    }
}

impl EndpointPort for AwsPorts {
    async fn endpoint(
        &self,
        customer: &CustomerId,
        endpoint: &EndpointId,
    ) -> Result<Option<Arc<EndpointSettings>>, StoreError> {
        let key = (customer.clone(), endpoint.clone());
        if let Ok(cache) = self.endpoints.lock()
            && let Some((settings, at)) = cache.get(&key)
            && at.elapsed() < self.config_cache
        {
            return Ok(Some(settings.clone()));
        }
        let Some(settings) = self.config.endpoint(customer, endpoint).await? else {
            return Ok(None);
        };
        let settings = Arc::new(settings);
        if let Ok(mut cache) = self.endpoints.lock() {
            cache.insert(key, (settings.clone(), Instant::now()));
        }
        Ok(Some(settings))
    }
}

impl PostPort for AwsPorts {
    async fn post(
        &self,
        endpoint: &EndpointSettings,
        outgoing: &Outgoing<'_>,
        deadline: Instant,
    ) -> Posted {
        self.attempt.post(endpoint, outgoing, deadline).await
    }
}

/// In-memory ports for the flow's unit tests: scripted endpoint answers,
/// stores as maps, and a record of every call.
#[cfg(test)]
pub mod memory {
    use super::*;
    use crate::policy::AttemptResult;
    use std::collections::VecDeque;

    #[derive(Default)]
    pub struct Memory {
        pub delivered: Mutex<Vec<String>>,
        pub refused_marks: Mutex<Vec<String>>,
        pub health: Mutex<HashMap<EndpointId, Versioned>>,
        pub parked: Mutex<Vec<(String, String, String)>>,
        pub retries: Mutex<Vec<(String, Duration)>>,
        /// Every attempt on record, in the order recorded: `TRY#` records
        /// and the POSTs folded into ledger writes.
        pub attempt_log: Mutex<Vec<AttemptRecord>>,
        /// `TRY#` writes alone (a delivered POST rides on its ledger write).
        pub try_writes: Mutex<usize>,
        pub released: Mutex<Vec<String>>,
        pub deleted: Mutex<Vec<String>>,
        pub dead: Mutex<Vec<String>>,
        pub notices: Mutex<Vec<NoticeInput>>,
        pub endpoints: Mutex<HashMap<String, Arc<EndpointSettings>>>,
        /// Answers in order; then 200.
        pub answers: Mutex<VecDeque<Posted>>,
        /// Every POST: (MessageId, transactions).
        pub posts: Mutex<Vec<(String, usize)>>,
        /// Fail every ledger lookup (our outage).
        pub ledger_down: Mutex<bool>,
        /// Fail every delivery record (a ledger write that timed out).
        pub ledger_writes_down: Mutex<bool>,
        /// Calls of `lookup_many` and of the single `load`.
        pub batch_lookups: Mutex<usize>,
        pub single_loads: Mutex<usize>,
        /// Health writes.
        pub saves: Mutex<usize>,
        /// Answer a refusal for payloads containing this text.
        pub refuse_containing: Mutex<Option<String>>,
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn throttled() -> StoreError {
        StoreError::Service {
            operation: "GetItem",
            resource: "ledger".into(),
            message: "ThrottlingException".into(),
            retryable: true,
        }
    }

    impl Memory {
        pub fn answer(&self, posted: Posted) {
            lock(&self.answers).push_back(posted);
        }
        pub fn state(&self, endpoint: &str) -> EndpointState {
            lock(&self.health)
                .get(endpoint)
                .map(|v| v.state.clone())
                .unwrap_or_default()
        }
        pub fn set_state(&self, endpoint: &str, state: EndpointState) {
            lock(&self.health).insert(
                EndpointId::parse(endpoint).expect("an endpoint id"),
                Versioned {
                    state,
                    version: 7,
                    ..Default::default()
                },
            );
        }
        /// `endpoint enable` starts (or ends) the endpoint's resuming.
        pub fn set_resuming(&self, endpoint: &str, resuming: bool) {
            let mut map = lock(&self.health);
            let v = map
                .entry(EndpointId::parse(endpoint).expect("an endpoint id"))
                .or_default();
            v.resuming = resuming;
            v.version += 1;
        }
        pub fn notice_kinds(&self) -> Vec<&'static str> {
            lock(&self.notices)
                .iter()
                .map(|n| n.kind.as_str())
                .collect()
        }
        pub fn posts(&self) -> Vec<(String, usize)> {
            lock(&self.posts).clone()
        }
        pub fn parked(&self) -> Vec<(String, String, String)> {
            lock(&self.parked).clone()
        }
        pub fn deleted(&self) -> Vec<String> {
            lock(&self.deleted).clone()
        }
        pub fn retries(&self) -> Vec<(String, Duration)> {
            lock(&self.retries).clone()
        }
    }

    impl LedgerPort for Memory {
        async fn lookup(&self, _e: &EndpointId, message_id: Uuid) -> Result<Lookup, StoreError> {
            if *lock(&self.ledger_down) {
                return Err(throttled());
            }
            let id = message_id.to_string();
            Ok(Lookup {
                delivered: lock(&self.delivered).contains(&id),
                refused: lock(&self.refused_marks).contains(&id),
                attempts: None,
            })
        }
        async fn lookup_many(
            &self,
            batches: &[BatchKey],
        ) -> Result<HashMap<BatchKey, Lookup>, StoreError> {
            *lock(&self.batch_lookups) += 1;
            let mut found = HashMap::new();
            for (e, m) in batches {
                found.insert((e.clone(), *m), self.lookup(e, *m).await?);
            }
            Ok(found)
        }
        async fn record_attempt(
            &self,
            record: &AttemptRecord,
            _at: OffsetDateTime,
        ) -> Result<(), StoreError> {
            *lock(&self.try_writes) += 1;
            lock(&self.attempt_log).push(record.clone());
            Ok(())
        }
        async fn record_delivery(
            &self,
            d: &Delivery<'_>,
            _plan_ref: Option<&PlanRef>,
            attempt: Option<&DeliveredAttempt>,
        ) -> Result<Recorded, StoreError> {
            if *lock(&self.ledger_writes_down) {
                return Err(throttled());
            }
            let id = d.message_id.to_string();
            let mut delivered = lock(&self.delivered);
            if delivered.contains(&id) {
                return Ok(Recorded::AlreadyThere);
            }
            delivered.push(id);
            if let Some(a) = attempt {
                lock(&self.attempt_log).push(AttemptRecord {
                    endpoint_id: d.endpoint_id.clone(),
                    message_id: d.message_id,
                    attempt: a.attempt,
                    at: platformsync_delivery::incident::rfc3339(a.at),
                    outcome: "delivered".into(),
                    latency_ms: a.latency_ms,
                    error: None,
                    transactions: u32::try_from(d.transaction_keys.len()).unwrap_or(u32::MAX),
                    parent_message_id: a.parent_message_id,
                });
            }
            Ok(Recorded::New)
        }
        async fn record_refused(
            &self,
            _e: &EndpointId,
            message_id: Uuid,
            _at: OffsetDateTime,
        ) -> Result<(), StoreError> {
            lock(&self.refused_marks).push(message_id.to_string());
            Ok(())
        }
    }

    impl HealthPort for Memory {
        async fn load(&self, endpoint_id: &EndpointId) -> Result<Versioned, StoreError> {
            *lock(&self.single_loads) += 1;
            Ok(lock(&self.health)
                .get(endpoint_id)
                .cloned()
                .unwrap_or_default())
        }
        async fn load_many(
            &self,
            endpoint_ids: &[EndpointId],
        ) -> Result<HashMap<EndpointId, Versioned>, StoreError> {
            let map = lock(&self.health);
            Ok(endpoint_ids
                .iter()
                .map(|e| (e.clone(), map.get(e).cloned().unwrap_or_default()))
                .collect())
        }
        async fn save(
            &self,
            endpoint_id: &EndpointId,
            _c: &CustomerId,
            state: &EndpointState,
            version: u64,
        ) -> Result<Saved, StoreError> {
            *lock(&self.saves) += 1;
            let mut map = lock(&self.health);
            let current = map.get(endpoint_id).map_or(0, |v| v.version);
            if current != version {
                return Ok(Saved::Conflict);
            }
            let kept = map.get(endpoint_id).cloned().unwrap_or_default();
            map.insert(
                endpoint_id.to_owned(),
                Versioned {
                    state: state.clone(),
                    version: version + 1,
                    ..kept
                },
            );
            Ok(Saved::Written {
                version: version + 1,
            })
        }
    }

    impl ParkPort for Memory {
        async fn park(&self, b: &ParkBatch<'_>) -> Result<String, StoreError> {
            lock(&self.parked).push((
                b.message_id.to_owned(),
                b.reason.to_owned(),
                b.last_error.unwrap_or_default().to_owned(),
            ));
            Ok(b.message_id.to_owned())
        }
        async fn park_counted(&self, b: &ParkBatch<'_>) -> Result<Option<String>, StoreError> {
            {
                let mut map = lock(&self.health);
                match map.get_mut(b.endpoint_id) {
                    Some(v) if v.resuming => v.parked_seq += 1,
                    _ => return Ok(None),
                }
            }
            self.park(b).await.map(Some)
        }
    }

    impl QueuePort for Memory {
        async fn retry_in(&self, receipt: &str, delay: Duration) -> Result<(), StoreError> {
            lock(&self.retries).push((receipt.to_owned(), delay));
            Ok(())
        }
        async fn release(&self, receipts: &[&str]) -> Result<(), StoreError> {
            lock(&self.released).extend(receipts.iter().map(|r| r.to_string()));
            Ok(())
        }
        async fn delete(&self, receipts: &[&str]) -> Result<(), StoreError> {
            lock(&self.deleted).extend(receipts.iter().map(|r| r.to_string()));
            Ok(())
        }
        async fn dead_letter(&self, l: &DeadLetter<'_>) -> Result<(), StoreError> {
            lock(&self.dead).push(l.reason.to_owned());
            Ok(())
        }
    }

    impl NoticePort for Memory {
        async fn notify(&self, notice: &NoticeInput) -> Result<(), StoreError> {
            lock(&self.notices).push(notice.clone());
            Ok(())
        }
    }

    impl EndpointPort for Memory {
        async fn endpoint(
            &self,
            _c: &CustomerId,
            endpoint: &EndpointId,
        ) -> Result<Option<Arc<EndpointSettings>>, StoreError> {
            Ok(lock(&self.endpoints).get(endpoint.as_str()).cloned())
        }
    }

    impl PostPort for Memory {
        async fn post(&self, _e: &EndpointSettings, o: &Outgoing<'_>, _d: Instant) -> Posted {
            lock(&self.posts).push((o.message_id.to_string(), o.payloads.len()));
            if let Some(bad) = lock(&self.refuse_containing).clone()
                && o.payloads.iter().any(|p| p.get().contains(&bad))
            {
                return Posted::Answer(AttemptResult::Refused {
                    error: "HTTP 422: invalid".into(),
                });
            }
            lock(&self.answers)
                .pop_front()
                .unwrap_or(Posted::Answer(AttemptResult::Delivered))
        }
    }
}
