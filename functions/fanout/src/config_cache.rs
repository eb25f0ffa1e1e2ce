//! Safe owners and customers' endpoints, cached per container for a bounded
//! time and read at most once per invocation.
//!
//! [`ConfigCache::lookup`] is called once per invocation with every safe of
//! the event. What the cache holds and is younger than the TTL is used as is;
//! the rest is read in one go: one `BatchGetItem` per 100 missing safes, then
//! one `Query` per customer whose endpoints are missing (a few at a time).
//! A change in the config table is therefore seen by every invocation that
//! starts more than one TTL after it (plus DynamoDB's eventual consistency).

use futures_util::{StreamExt, stream};
use platformsync_aws::StoreError;
use platformsync_aws::config_table::ConfigStore;
use platformsync_domain::endpoint::{CustomerId, EndpointSettings};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Endpoint queries in flight at once.
const ENDPOINT_READ_CONCURRENCY: usize = 8;

/// Who owns a safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Customer(CustomerId),
    /// No customer owns the safe: its transactions are kept, never pushed.
    None,
    /// The registry names a customer id that is not valid: a configuration
    /// error, reported; the transactions are not pushed.
    Invalid(String),
}

/// A customer's endpoints, or why they could not be read.
pub type Endpoints = Result<Arc<[EndpointSettings]>, Arc<StoreError>>;

/// What one invocation routes by.
#[derive(Debug, Default)]
pub struct Routing {
    pub owners: HashMap<String, Owner>,
    pub endpoints: HashMap<CustomerId, Endpoints>,
}

impl Routing {
    pub fn owner(&self, serial: &str) -> &Owner {
        self.owners.get(serial).unwrap_or(&Owner::None)
    }
}

#[derive(Debug, Default)]
struct State {
    owners: HashMap<String, (Owner, Instant)>,
    endpoints: HashMap<CustomerId, (Arc<[EndpointSettings]>, Instant)>,
}

/// The cache; shared by every invocation of a container.
#[derive(Debug)]
pub struct ConfigCache {
    store: ConfigStore,
    ttl: Duration,
    state: Mutex<State>,
}

/// What a lookup read from the table (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    pub safes_read: usize,
    pub customers_read: usize,
}

impl ConfigCache {
    pub fn new(store: ConfigStore, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            state: Mutex::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Owners of `serials` and the endpoints of those owners. Fails only if
    /// the safe registry cannot be read; a customer whose endpoints cannot
    /// be read gets an `Err` entry, so only its transactions wait.
    pub async fn lookup(&self, serials: &BTreeSet<&str>) -> Result<(Routing, Reads), StoreError> {
        let now = Instant::now();
        let fresh = |read_at: &Instant| now.duration_since(*read_at) < self.ttl;
        let mut routing = Routing::default();
        let mut reads = Reads::default();

        let missing: Vec<&str> = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            serials
                .iter()
                .copied()
                .filter(|serial| match state.owners.get(*serial) {
                    Some((owner, read_at)) if fresh(read_at) => {
                        routing.owners.insert((*serial).to_owned(), owner.clone());
                        false
                    }
                    _ => true,
                })
                .collect()
        };
        if !missing.is_empty() {
            let found = self.store.safe_owners(&missing).await?;
            reads.safes_read = missing.len();
            let read_at = Instant::now();
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for serial in missing {
                let owner = match found.get(serial) {
                    Some(id) => CustomerId::parse(id)
                        .map(Owner::Customer)
                        .unwrap_or_else(|_| Owner::Invalid(id.clone())),
                    None => Owner::None,
                };
                state
                    .owners
                    .insert(serial.to_owned(), (owner.clone(), read_at));
                routing.owners.insert(serial.to_owned(), owner);
            }
        }

        let customers: BTreeSet<&CustomerId> = routing
            .owners
            .values()
            .filter_map(|o| match o {
                Owner::Customer(id) => Some(id),
                _ => None,
            })
            .collect();
        let missing: Vec<CustomerId> = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            customers
                .into_iter()
                .filter(|id| match state.endpoints.get(*id) {
                    Some((endpoints, read_at)) if fresh(read_at) => {
                        routing
                            .endpoints
                            .insert((*id).clone(), Ok(endpoints.clone()));
                        false
                    }
                    _ => true,
                })
                .cloned()
                .collect()
        };
        reads.customers_read = missing.len();
        let results: Vec<(CustomerId, Result<Vec<EndpointSettings>, StoreError>)> =
            stream::iter(missing)
                .map(|id| async move {
                    let endpoints = self.store.endpoints_of(&id).await;
                    (id, endpoints)
                })
                .buffer_unordered(ENDPOINT_READ_CONCURRENCY)
                .collect()
                .await;
        let read_at = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, result) in results {
            let entry = match result {
                Ok(endpoints) => {
                    let endpoints: Arc<[EndpointSettings]> = endpoints.into();
                    state
                        .endpoints
                        .insert(id.clone(), (endpoints.clone(), read_at));
                    Ok(endpoints)
                }
                // Not cached: the next invocation tries again.
                Err(e) => Err(Arc::new(e)),
            };
            routing.endpoints.insert(id, entry);
        }
        Ok((routing, reads))
    }
}
