//! Safe owners and customers' endpoints, cached per container for a bounded
//! time and read at most once per invocation.
//!
//! [`ConfigCache::lookup`] is called once per invocation with every safe of
//! the event. What the cache holds and is younger than the TTL is used as is;
//! the rest is read in one go: one `Query` per missing safe (its dated
//! assignment history and its `OWNER` item, a few safes at a time), then
//! one `Query` per customer whose endpoints are missing (a few at a time).
//! A change in the config table is therefore seen by every invocation that
//! starts more than one TTL after it (plus DynamoDB's eventual consistency).
//!
//! A transaction goes to the customer who owned its safe at its
//! `TransactionDateTime` ([`Routing::owner_at`]): the history says who, and
//! the `OWNER` item only for a safe that has no history.

use futures_util::{StreamExt, TryStreamExt, stream};
use platformsync_aws::StoreError;
use platformsync_aws::assignments::AssignmentStore;
use platformsync_aws::config_table::ConfigStore;
use platformsync_domain::endpoint::{CustomerId, EndpointSettings};
use platformsync_domain::ownership::Ownership;
use platformsync_domain::serial::SerialNumber;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Endpoint queries in flight at once.
const ENDPOINT_READ_CONCURRENCY: usize = 8;

/// Safe ownership queries in flight at once.
const SAFE_READ_CONCURRENCY: usize = 8;

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
#[derive(Debug, Default, Clone)]
pub struct Routing {
    /// Owners regardless of time: safes without a dated history.
    pub owners: HashMap<String, Owner>,
    /// Safes with a dated history: the owner depends on the transaction's time.
    pub histories: HashMap<String, Arc<Ownership>>,
    pub endpoints: HashMap<CustomerId, Endpoints>,
}

impl Routing {
    /// Who owned `serial` at safe-local time `at` (a transaction's sort key
    /// or its time part).
    pub fn owner_at(&self, serial: &str, at: &str) -> Owner {
        match self.histories.get(serial) {
            Some(ownership) => ownership
                .owner_at(at)
                .map_or(Owner::None, |c| Owner::Customer(c.clone())),
            None => self.owners.get(serial).cloned().unwrap_or(Owner::None),
        }
    }

    fn insert(&mut self, serial: &str, ownership: &Arc<Ownership>) {
        if ownership.history.is_empty() {
            let owner = ownership
                .current
                .clone()
                .map_or(Owner::None, Owner::Customer);
            self.owners.insert(serial.to_owned(), owner);
        } else {
            self.histories
                .insert(serial.to_owned(), Arc::clone(ownership));
        }
    }
}

#[derive(Debug, Default)]
struct State {
    owners: HashMap<String, (Arc<Ownership>, Instant)>,
    endpoints: HashMap<CustomerId, (Arc<[EndpointSettings]>, Instant)>,
}

/// The cache; shared by every invocation of a container.
#[derive(Debug)]
pub struct ConfigCache {
    store: ConfigStore,
    assignments: AssignmentStore,
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
            assignments: store.assignments(),
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
                    Some((ownership, read_at)) if fresh(read_at) => {
                        routing.insert(serial, ownership);
                        false
                    }
                    _ => true,
                })
                .collect()
        };
        if !missing.is_empty() {
            // Owned serials, collected first: the stream's future must be
            // `Send` for any lifetime (no borrowing closures inside it).
            let owned: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
            let found: Vec<(String, Result<Ownership, String>)> = stream::iter(owned)
                .map(|serial| async move {
                    // Not a serial number: no safe, no owner (its records
                    // are counted unowned), and nothing to read.
                    let Ok(safe) = SerialNumber::parse(&serial) else {
                        return Ok((serial, Ok(Ownership::default())));
                    };
                    match self.assignments.ownership(&safe).await {
                        Ok(o) => Ok((serial, Ok(o))),
                        // A registry item of another shape (an owner id that
                        // is not one): the safe's records are set aside as
                        // a configuration error; the stream goes on.
                        Err(StoreError::Malformed { message, .. }) => Ok((serial, Err(message))),
                        Err(e) => Err(e),
                    }
                })
                .buffer_unordered(SAFE_READ_CONCURRENCY)
                .try_collect()
                .await?;
            reads.safes_read = missing.len();
            let read_at = Instant::now();
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for (serial, read) in found {
                match read {
                    Ok(ownership) => {
                        let ownership = Arc::new(ownership);
                        routing.insert(&serial, &ownership);
                        state.owners.insert(serial, (ownership, read_at));
                    }
                    Err(why) => {
                        routing.owners.insert(serial, Owner::Invalid(why));
                    }
                }
            }
        }

        // Every customer that owned a looked-up safe at any time: which one a
        // record goes to depends on its time (over-reading a former owner's
        // endpoints costs one cached query).
        let customers: BTreeSet<CustomerId> = routing
            .owners
            .values()
            .filter_map(|o| match o {
                Owner::Customer(id) => Some(id.clone()),
                _ => None,
            })
            .chain(
                routing
                    .histories
                    .values()
                    .flat_map(|o| o.owners_ever())
                    .cloned(),
            )
            .collect();
        let missing: Vec<CustomerId> = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            customers
                .into_iter()
                .filter(|id| match state.endpoints.get(id) {
                    Some((endpoints, read_at)) if fresh(read_at) => {
                        routing.endpoints.insert(id.clone(), Ok(endpoints.clone()));
                        false
                    }
                    _ => true,
                })
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
