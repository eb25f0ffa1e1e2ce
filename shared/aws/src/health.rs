//! Endpoint health: the endpoint's incident state
//! ([`EndpointState`](platformsync_delivery::incident::EndpointState)), one
//! item per endpoint in the configuration table (`PK = ENDPOINT#<id>`,
//! `SK = HEALTH`).
//!
//! | attribute | meaning |
//! |---|---|
//! | `Incident` | the whole state, JSON (what push reads back) |
//! | `Version` | bumped by every write; writes are conditional on it |
//! | `State` | `healthy`, `failing` or `expired`, for people and the ops CLI |
//! | `IncidentId`, `FailingSince` | the current incident, when there is one |
//! | `FailingNotified`, `ExpiredNotified` | which notices of the incident went out |
//! | `LastError`, `LastFailureAt`, `LastDeliveredAt` | latest failure (redacted, never a token) and delivery |
//! | `Resuming` | `endpoint enable` is replaying the parked backlog: new batches park behind it |
//! | `ParkedSeq` | bumped by every batch parked while resuming, in the same transaction as the parked item |
//!
//! **Resuming.** Enabling an endpoint with a parked backlog sets `Resuming`
//! ([`HealthStore::start_resuming`]). While it is set, push parks every new
//! batch behind the backlog ([`HealthStore::count_park`], conditional on
//! `Resuming`, so a park never lands after the flip) and delivers the
//! replayed ones. The replay loop clears it ([`HealthStore::finish_resuming`])
//! only if `ParkedSeq` is still what it read before it found the backlog
//! empty: a batch parked meanwhile makes the flip fail and the loop go on.
//! Push's own writes ([`HealthStore::save`]) never touch the two attributes.
//!
//! **One writer at a time.** The push function changes the state once per
//! attempt, and batches of one endpoint are attempted one at a time (the
//! delivery queue's FIFO group is the endpoint). Should two invocations ever
//! overlap (a message whose visibility ran out while its invocation was still
//! running), the conditional write on `Version` makes the later one re-read
//! and re-apply instead of overwriting: a notice claimed in the state is
//! claimed once.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use platformsync_delivery::incident::{EndpointState, Phase, rfc3339};
use platformsync_domain::endpoint::{CustomerId, EndpointId};
use time::OffsetDateTime;

use crate::StoreError;
use crate::dynamo::{is_conditional_failure, n, s, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthState {
    #[default]
    Healthy,
    Failing,
    Expired,
}

/// An endpoint's health as people read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointHealth {
    pub state: HealthState,
    pub incident_id: Option<String>,
    pub failing_since: Option<String>,
    pub failing_notified: bool,
    pub expired_notified: bool,
    pub last_error: Option<String>,
    pub last_delivered_at: Option<String>,
    /// `endpoint enable` is replaying its parked backlog.
    pub resuming: bool,
}

/// A state and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Versioned {
    pub state: EndpointState,
    /// 0: no item yet.
    pub version: u64,
    /// `endpoint enable` is replaying the parked backlog.
    pub resuming: bool,
    /// Batches parked while resuming (see the module's documentation).
    pub parked_seq: u64,
}

/// Whether a conditional write went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Written {
        version: u64,
    },
    /// Someone else wrote since it was read: read again.
    Conflict,
}

#[derive(Debug, Clone)]
pub struct HealthStore {
    client: Client,
    table: String,
}

fn state_name(state: &EndpointState) -> &'static str {
    match state.phase() {
        Phase::Healthy => "healthy",
        Phase::Failing | Phase::FailingNotified => "failing",
        Phase::Expired => "expired",
    }
}

impl HealthStore {
    pub fn new(client: Client, config_table: impl Into<String>) -> Self {
        Self {
            client,
            table: config_table.into(),
        }
    }

    fn key(endpoint_id: &EndpointId) -> HashMap<String, AttributeValue> {
        crate::dynamo::pk_sk((format!("ENDPOINT#{endpoint_id}"), "HEALTH".into()))
    }

    async fn item(
        &self,
        endpoint_id: &EndpointId,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        crate::dynamo::get_item(&self.client, &self.table, Self::key(endpoint_id), true).await
    }

    /// The endpoint's state and its version (an endpoint never seen is
    /// healthy, version 0). Strongly consistent: the previous invocation's
    /// write must be seen.
    pub async fn load(&self, endpoint_id: &EndpointId) -> Result<Versioned, StoreError> {
        match self.item(endpoint_id).await? {
            Some(item) => self.versioned(endpoint_id, &item),
            None => Ok(Versioned::default()),
        }
    }

    /// [`HealthStore::load`] for many endpoints in one strongly consistent
    /// `BatchGetItem` per 100: push loads an event's endpoints at once.
    pub async fn load_many(
        &self,
        endpoint_ids: &[EndpointId],
    ) -> Result<HashMap<EndpointId, Versioned>, StoreError> {
        let mut ids: Vec<&EndpointId> = endpoint_ids.iter().collect();
        ids.sort();
        ids.dedup();
        let mut found: HashMap<EndpointId, Versioned> = ids
            .iter()
            .map(|id| ((*id).clone(), Versioned::default()))
            .collect();
        for chunk in ids.chunks(100) {
            let mut keys =
                aws_sdk_dynamodb::types::KeysAndAttributes::builder().consistent_read(true);
            for id in chunk {
                keys = keys.keys(Self::key(id));
            }
            let keys = keys.build().map_err(|e| StoreError::Malformed {
                resource: self.table.clone(),
                key: "(health look-up)".into(),
                message: e.to_string(),
            })?;
            for item in crate::dynamo::batch_get(&self.client, &self.table, keys).await? {
                let Some(id) = text(&item, "PK").and_then(|pk| {
                    pk.strip_prefix("ENDPOINT#")
                        .and_then(|id| EndpointId::parse(id).ok())
                }) else {
                    continue;
                };
                let versioned = self.versioned(&id, &item)?;
                found.insert(id, versioned);
            }
        }
        Ok(found)
    }

    fn versioned(
        &self,
        endpoint_id: &EndpointId,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Versioned, StoreError> {
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            _ => 0,
        };
        let version = number("Version");
        let parked_seq = number("ParkedSeq");
        let resuming = matches!(item.get("Resuming"), Some(AttributeValue::Bool(true)));
        let state = match text(item, "Incident") {
            Some(json) => serde_json::from_str(&json).map_err(|e| StoreError::Malformed {
                resource: self.table.clone(),
                key: format!("ENDPOINT#{endpoint_id}/HEALTH"),
                message: e.to_string(),
            })?,
            // An item of the previous shape: start afresh.
            None => EndpointState::default(),
        };
        Ok(Versioned {
            state,
            version,
            resuming,
            parked_seq,
        })
    }

    /// Writes `state` if the item is still at `version`. An update, not a
    /// put: `Resuming` and `ParkedSeq` belong to the enable's replay loop.
    pub async fn save(
        &self,
        endpoint_id: &EndpointId,
        customer_id: &CustomerId,
        state: &EndpointState,
        version: u64,
    ) -> Result<Saved, StoreError> {
        self.save_with(endpoint_id, customer_id, state, version, None)
            .await
    }

    async fn save_with(
        &self,
        endpoint_id: &EndpointId,
        customer_id: &CustomerId,
        state: &EndpointState,
        version: u64,
        resuming: Option<bool>,
    ) -> Result<Saved, StoreError> {
        let json = serde_json::to_string(state).map_err(|e| StoreError::Malformed {
            resource: self.table.clone(),
            key: format!("ENDPOINT#{endpoint_id}/HEALTH"),
            message: e.to_string(),
        })?;
        let next = version + 1;
        let mut set: Vec<(&str, Option<AttributeValue>)> = vec![
            ("Incident", Some(s(json))),
            ("Version", Some(AttributeValue::N(next.to_string()))),
            ("State", Some(s(state_name(state)))),
            ("CustomerId", Some(s(customer_id.as_str()))),
        ];
        let incident = state.incident.as_ref();
        set.push(("IncidentId", incident.map(|i| s(i.id()))));
        set.push((
            "FailingNotified",
            incident.map(|i| AttributeValue::Bool(i.failing_notified)),
        ));
        set.push((
            "ExpiredNotified",
            incident.map(|i| AttributeValue::Bool(i.expired_notified)),
        ));
        for (name, at) in [
            ("FailingSince", state.failing_since),
            ("LastFailureAt", state.last_failure_at),
            ("LastDeliveredAt", state.last_delivered_at),
        ] {
            set.push((name, at.map(|at| s(rfc3339(at)))));
        }
        set.push((
            "LastError",
            state.last_error.as_deref().filter(|e| !e.is_empty()).map(s),
        ));
        if let Some(resuming) = resuming {
            set.push(("Resuming", Some(AttributeValue::Bool(resuming))));
        }
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let (mut sets, mut removes) = (Vec::new(), Vec::new());
        for (i, (name, value)) in set.into_iter().enumerate() {
            names.insert(format!("#a{i}"), name.to_owned());
            match value {
                Some(v) => {
                    values.insert(format!(":a{i}"), v);
                    sets.push(format!("#a{i} = :a{i}"));
                }
                None => removes.push(format!("#a{i}")),
            }
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        names.insert("#v".into(), "Version".into());
        let condition = if version == 0 {
            "attribute_not_exists(#v)"
        } else {
            values.insert(":v".into(), AttributeValue::N(version.to_string()));
            "#v = :v"
        };
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(endpoint_id)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values));
        match request.send().await {
            Ok(_) => Ok(Saved::Written { version: next }),
            Err(e) if is_conditional_failure(&e) => Ok(Saved::Conflict),
            Err(e) => Err(StoreError::sdk("UpdateItem", &self.table, e)),
        }
    }

    /// `endpoint enable`, before it replays the parked backlog: the endpoint
    /// is resuming (push parks new batches behind the backlog) and its
    /// incident resumed (an expired window starts afresh; the next 200 sends
    /// "recovered"), in one write. Returns whether it was expired.
    pub async fn start_resuming(
        &self,
        endpoint_id: &EndpointId,
        customer_id: &CustomerId,
    ) -> Result<bool, StoreError> {
        self.resume_marked(endpoint_id, customer_id, Some(true))
            .await
    }

    /// Resumes the endpoint's incident (retried on a version conflict),
    /// setting `Resuming` to `resuming` when given; whether it was expired.
    async fn resume_marked(
        &self,
        endpoint_id: &EndpointId,
        customer_id: &CustomerId,
        resuming: Option<bool>,
    ) -> Result<bool, StoreError> {
        for _ in 0..5 {
            let Versioned {
                mut state, version, ..
            } = self.load(endpoint_id).await?;
            let was_expired = state.is_expired();
            state.resume();
            match self
                .save_with(endpoint_id, customer_id, &state, version, resuming)
                .await?
            {
                Saved::Written { .. } => return Ok(was_expired),
                Saved::Conflict => continue,
            }
        }
        Err(self.kept_changing())
    }

    /// The replay loop found the backlog empty and drained: the endpoint is
    /// enabled again, unless a batch was parked since it read `seen_seq`
    /// (then `false`: replay again). Also `true` when it was not resuming.
    pub async fn finish_resuming(
        &self,
        endpoint_id: &EndpointId,
        seen_seq: u64,
    ) -> Result<bool, StoreError> {
        let condition = if seen_seq == 0 {
            "Resuming = :t AND attribute_not_exists(ParkedSeq)"
        } else {
            "Resuming = :t AND ParkedSeq = :s"
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(endpoint_id)))
            .update_expression("SET Resuming = :f")
            .condition_expression(condition)
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":f", AttributeValue::Bool(false));
        if seen_seq != 0 {
            request = request.expression_attribute_values(":s", n(seen_seq));
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => {
                // Not resuming at all (someone else finished): done too.
                Ok(!self.load(endpoint_id).await?.resuming)
            }
            Err(e) => Err(StoreError::sdk("UpdateItem", &self.table, e)),
        }
    }

    /// The health item's half of parking a batch while the endpoint is
    /// resuming: `ParkedSeq` bumped, on condition that it still is. Written
    /// in one transaction with the parked item
    /// ([`crate::parked::ParkedStore::park_counted`]).
    pub fn count_park(
        &self,
        endpoint_id: &EndpointId,
    ) -> Result<aws_sdk_dynamodb::types::Update, StoreError> {
        aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(endpoint_id)))
            .update_expression("ADD ParkedSeq :one")
            .condition_expression("Resuming = :t")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .build()
            .map_err(|e| StoreError::Malformed {
                resource: self.table.clone(),
                key: format!("ENDPOINT#{endpoint_id}/HEALTH"),
                message: e.to_string(),
            })
    }

    fn kept_changing(&self) -> StoreError {
        StoreError::Service {
            operation: "UpdateItem",
            resource: self.table.clone(),
            message: "the endpoint's health kept changing; try again".into(),
            retryable: true,
        }
    }

    /// An operator enables an expired endpoint again: delivery resumes at
    /// once (its window starts afresh), and the next 200 sends "recovered".
    /// Returns whether it was expired.
    pub async fn resume(
        &self,
        endpoint_id: &EndpointId,
        customer_id: &CustomerId,
    ) -> Result<bool, StoreError> {
        self.resume_marked(endpoint_id, customer_id, None).await
    }

    /// The endpoint's health as people read it; an endpoint never seen is
    /// healthy.
    pub async fn get(&self, endpoint_id: &EndpointId) -> Result<EndpointHealth, StoreError> {
        let Versioned {
            state, resuming, ..
        } = self.load(endpoint_id).await?;
        let fmt = |t: Option<OffsetDateTime>| t.map(rfc3339);
        Ok(EndpointHealth {
            state: match state.phase() {
                Phase::Healthy => HealthState::Healthy,
                Phase::Failing | Phase::FailingNotified => HealthState::Failing,
                Phase::Expired => HealthState::Expired,
            },
            incident_id: state.incident.as_ref().map(|i| i.id()),
            failing_since: fmt(state.failing_since),
            failing_notified: state.incident.as_ref().is_some_and(|i| i.failing_notified),
            expired_notified: state.incident.as_ref().is_some_and(|i| i.expired_notified),
            last_error: state.last_error.clone(),
            last_delivered_at: fmt(state.last_delivered_at),
            resuming,
        })
    }
}
