//! What the walk asks of storage and queues, as small typed traits: the
//! shared/aws adapters implement them here (one line each, by delegation),
//! and the unit tests of the walk implement them in memory.

use crate::config_cache::{ConfigCache, Reads, Routing};
use platformsync_aws::StoreError;
use platformsync_aws::delivery_queue::{
    DeliveryQueue, OutgoingBatch, SendMessageBatch, SendReport,
};
use platformsync_aws::fanout_plans::{Created, Found, Parked, Plan, PlanStore};
use platformsync_aws::transactions::TransactionStore;
use platformsync_domain::dedup::StorageKey;
use platformsync_domain::record::StoredTransaction;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Instant;

/// Safe owners and their endpoints.
pub trait RoutingPort: Sync {
    fn routing(
        &self,
        serials: &BTreeSet<&str>,
    ) -> impl Future<Output = Result<(Routing, Reads), StoreError>> + Send;
}

/// The durable plans: what a stream batch sends, written before sending.
pub trait PlansPort: Sync {
    /// The plan covering `key`, directly or through a pointer.
    fn lookup(
        &self,
        key: &str,
        now_unix: i64,
    ) -> impl Future<Output = Result<Option<Found>, StoreError>> + Send;
    /// Writes `plan` unless one exists under its key (then returns that one).
    fn create(
        &self,
        plan: &Plan,
        now_unix: i64,
    ) -> impl Future<Output = Result<Created, StoreError>> + Send;
    /// Makes a replay that starts at `at` find `plan_key`.
    fn point(
        &self,
        at: &str,
        plan_key: &str,
        now_unix: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Which of the plan's messages were sent.
    fn save_sent(
        &self,
        plan_key: &str,
        sent: &[bool],
        now_unix: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Where what can never be pushed is kept, with its data, for operations.
pub trait ParkingPort: Sync {
    fn park(
        &self,
        parked: &[Parked],
        now_unix: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The FIFO delivery queue: an endpoint's messages enter in input order,
/// one outcome per message.
pub trait QueuePort: Sync {
    fn send_before(
        &self,
        batches: &[OutgoingBatch],
        deadline: Instant,
    ) -> impl Future<Output = SendReport> + Send;
}

/// The transactions table, for bodies a replayed event does not hold.
pub trait TransactionsPort: Sync {
    /// The items stored under `keys`; absent keys are absent from the map.
    fn get_many(
        &self,
        keys: &[StorageKey],
    ) -> impl Future<Output = Result<HashMap<StorageKey, StoredTransaction>, StoreError>> + Send;
}

impl RoutingPort for ConfigCache {
    fn routing(
        &self,
        serials: &BTreeSet<&str>,
    ) -> impl Future<Output = Result<(Routing, Reads), StoreError>> + Send {
        self.lookup(serials)
    }
}

impl PlansPort for PlanStore {
    fn lookup(
        &self,
        key: &str,
        now_unix: i64,
    ) -> impl Future<Output = Result<Option<Found>, StoreError>> + Send {
        PlanStore::lookup(self, key, now_unix)
    }

    fn create(
        &self,
        plan: &Plan,
        now_unix: i64,
    ) -> impl Future<Output = Result<Created, StoreError>> + Send {
        PlanStore::create(self, plan, now_unix)
    }

    fn point(
        &self,
        at: &str,
        plan_key: &str,
        now_unix: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        PlanStore::point(self, at, plan_key, now_unix)
    }

    fn save_sent(
        &self,
        plan_key: &str,
        sent: &[bool],
        now_unix: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        PlanStore::save_sent(self, plan_key, sent, now_unix)
    }
}

impl ParkingPort for PlanStore {
    fn park(
        &self,
        parked: &[Parked],
        now_unix: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        PlanStore::park(self, parked, now_unix)
    }
}

impl<T: SendMessageBatch> QueuePort for DeliveryQueue<T> {
    fn send_before(
        &self,
        batches: &[OutgoingBatch],
        deadline: Instant,
    ) -> impl Future<Output = SendReport> + Send {
        self.send_until(batches, Some(deadline))
    }
}

/// Without `TRANSACTIONS_TABLE`, a replay that needs bodies fails
/// (transient: the configuration is ours to fix).
impl TransactionsPort for Option<TransactionStore> {
    async fn get_many(
        &self,
        keys: &[StorageKey],
    ) -> Result<HashMap<StorageKey, StoredTransaction>, StoreError> {
        match self {
            Some(store) => store.get_many(keys).await,
            None => Err(StoreError::Malformed {
                resource: "TRANSACTIONS_TABLE".into(),
                key: keys.first().map(StorageKey::to_string).unwrap_or_default(),
                message: "not configured".into(),
            }),
        }
    }
}
