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
use time::OffsetDateTime;

use crate::StoreError;
use crate::dynamo::{is_conditional_failure, s, text};

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
}

/// A state and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Versioned {
    pub state: EndpointState,
    /// 0: no item yet.
    pub version: u64,
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

    fn key(endpoint_id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("PK".to_owned(), s(format!("ENDPOINT#{endpoint_id}"))),
            ("SK".to_owned(), s("HEALTH")),
        ])
    }

    async fn item(
        &self,
        endpoint_id: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(endpoint_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::sdk("GetItem", &self.table, e))?;
        Ok(out.item)
    }

    /// The endpoint's state and its version (an endpoint never seen is
    /// healthy, version 0). Strongly consistent: the previous invocation's
    /// write must be seen.
    pub async fn load(&self, endpoint_id: &str) -> Result<Versioned, StoreError> {
        let Some(item) = self.item(endpoint_id).await? else {
            return Ok(Versioned::default());
        };
        let version = match item.get("Version") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            _ => 0,
        };
        let state = match text(&item, "Incident") {
            Some(json) => serde_json::from_str(&json).map_err(|e| StoreError::Malformed {
                resource: self.table.clone(),
                key: format!("ENDPOINT#{endpoint_id}/HEALTH"),
                message: e.to_string(),
            })?,
            // An item of the previous shape: start afresh.
            None => EndpointState::default(),
        };
        Ok(Versioned { state, version })
    }

    /// Writes `state` if the item is still at `version`.
    pub async fn save(
        &self,
        endpoint_id: &str,
        customer_id: &str,
        state: &EndpointState,
        version: u64,
    ) -> Result<Saved, StoreError> {
        let json = serde_json::to_string(state).map_err(|e| StoreError::Malformed {
            resource: self.table.clone(),
            key: format!("ENDPOINT#{endpoint_id}/HEALTH"),
            message: e.to_string(),
        })?;
        let next = version + 1;
        let mut item = Self::key(endpoint_id);
        item.insert("Incident".into(), s(json));
        item.insert("Version".into(), AttributeValue::N(next.to_string()));
        item.insert("State".into(), s(state_name(state)));
        item.insert("CustomerId".into(), s(customer_id));
        if let Some(incident) = &state.incident {
            item.insert("IncidentId".into(), s(incident.id()));
            item.insert(
                "FailingNotified".into(),
                AttributeValue::Bool(incident.failing_notified),
            );
            item.insert(
                "ExpiredNotified".into(),
                AttributeValue::Bool(incident.expired_notified),
            );
        }
        let times = [
            ("FailingSince", state.failing_since),
            ("LastFailureAt", state.last_failure_at),
            ("LastDeliveredAt", state.last_delivered_at),
        ];
        for (name, at) in times {
            if let Some(at) = at {
                item.insert(name.into(), s(rfc3339(at)));
            }
        }
        if let Some(error) = state.last_error.as_deref().filter(|e| !e.is_empty()) {
            item.insert("LastError".into(), s(error));
        }
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let request = if version == 0 {
            request.condition_expression("attribute_not_exists(Version)")
        } else {
            request
                .condition_expression("Version = :v")
                .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
        };
        match request.send().await {
            Ok(_) => Ok(Saved::Written { version: next }),
            Err(e) if is_conditional_failure(&e) => Ok(Saved::Conflict),
            Err(e) => Err(StoreError::sdk("PutItem", &self.table, e)),
        }
    }

    /// An operator enables an expired endpoint again: delivery resumes at
    /// once (its window starts afresh), and the next 200 sends "recovered".
    /// Returns whether it was expired.
    pub async fn resume(&self, endpoint_id: &str, customer_id: &str) -> Result<bool, StoreError> {
        for _ in 0..5 {
            let Versioned { mut state, version } = self.load(endpoint_id).await?;
            let was_expired = state.is_expired();
            state.resume();
            match self.save(endpoint_id, customer_id, &state, version).await? {
                Saved::Written { .. } => return Ok(was_expired),
                Saved::Conflict => continue,
            }
        }
        Err(StoreError::Service {
            operation: "PutItem",
            resource: self.table.clone(),
            message: "the endpoint's health kept changing; try again".into(),
            retryable: true,
        })
    }

    /// The endpoint's health as people read it; an endpoint never seen is
    /// healthy.
    pub async fn get(&self, endpoint_id: &str) -> Result<EndpointHealth, StoreError> {
        let Versioned { state, .. } = self.load(endpoint_id).await?;
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
        })
    }
}
