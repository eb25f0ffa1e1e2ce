//! Endpoint health: is an endpoint failing, and which notifications of the
//! current incident have gone out.
//!
//! One item per endpoint in the configuration table (`PK = ENDPOINT#<id>`,
//! `SK = HEALTH`):
//!
//! | attribute | meaning |
//! |---|---|
//! | `State` | `healthy` or `failing` (absent item = healthy) |
//! | `IncidentId`, `FailingSince` | the current incident (failing only); the id is the time it opened |
//! | `FailingNotified`, `ExpiredNotified` | whether this incident's "failing" / "expired" notification was claimed |
//! | `LastError`, `LastFailureAt` | latest failure (redacted text, never a token) |
//! | `LastDeliveredAt`, `RecoveredAt` | latest delivery; when the last incident closed |
//!
//! **Once per incident, even with concurrent invocations.** Every transition
//! is a single conditional `UpdateItem`, and a notification is sent only by
//! the caller whose update flipped its flag:
//!
//! - failure on a healthy endpoint: open an incident with
//!   `FailingNotified = true` if `State` is still healthy (the winner notifies);
//!   on an already failing one, set `FailingNotified = true` and read the old
//!   value back (`ALL_OLD`): only the caller that saw `false` notifies;
//! - expiry: the same with `ExpiredNotified`;
//! - delivery: `State = healthy` if it was healthy (the common case, one write);
//!   else close the incident if it is still failing, and the closer sends
//!   "recovered" when the incident's "failing" notification went out.
//!
//! If publishing fails, [`HealthStore::release`] clears the flag so the next
//! failure of the same incident tries again.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::StoreError;

/// How many times a transition is re-tried when a concurrent one changed the
/// state between two conditional updates.
const MAX_RACES: usize = 3;

const HEALTHY: &str = "healthy";
const FAILING: &str = "failing";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthState {
    #[default]
    Healthy,
    Failing,
}

/// An endpoint's health as stored.
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

/// The incident a notification is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    pub failing_since: String,
}

/// Which notification flag [`HealthStore::release`] clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Failing,
    Expired,
}

impl Claim {
    fn attribute(self) -> &'static str {
        match self {
            Claim::Failing => "FailingNotified",
            Claim::Expired => "ExpiredNotified",
        }
    }
}

#[derive(Debug, Clone)]
pub struct HealthStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn flag(item: &HashMap<String, AttributeValue>, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}

fn incident_of(item: &HashMap<String, AttributeValue>) -> Option<Incident> {
    Some(Incident {
        id: text(item, "IncidentId")?,
        failing_since: text(item, "FailingSince").unwrap_or_default(),
    })
}

fn is_conditional_failure<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// The outcome of one conditional update.
enum Update {
    Done(HashMap<String, AttributeValue>),
    ConditionFailed,
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

    fn update(&self, endpoint_id: &str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(endpoint_id)))
            .expression_attribute_names("#st", "State")
            .return_values(ReturnValue::AllOld)
    }

    async fn send(&self, request: UpdateItemFluentBuilder) -> Result<Update, StoreError> {
        match request.send().await {
            Ok(out) => Ok(Update::Done(out.attributes.unwrap_or_default())),
            Err(e) if is_conditional_failure(&e) => Ok(Update::ConditionFailed),
            Err(e) => Err(StoreError::sdk("UpdateItem", &self.table, e)),
        }
    }

    /// The endpoint's health; an endpoint never seen is healthy.
    pub async fn get(&self, endpoint_id: &str) -> Result<EndpointHealth, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(endpoint_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::sdk("GetItem", &self.table, e))?;
        let Some(item) = out.item else {
            return Ok(EndpointHealth::default());
        };
        Ok(EndpointHealth {
            state: if text(&item, "State").as_deref() == Some(FAILING) {
                HealthState::Failing
            } else {
                HealthState::Healthy
            },
            incident_id: text(&item, "IncidentId"),
            failing_since: text(&item, "FailingSince"),
            failing_notified: flag(&item, "FailingNotified"),
            expired_notified: flag(&item, "ExpiredNotified"),
            last_error: text(&item, "LastError"),
            last_delivered_at: text(&item, "LastDeliveredAt"),
        })
    }

    /// Opens an incident if the endpoint is healthy. `Some` if this call
    /// opened it; `claim` is the notification flag set at once.
    async fn open(
        &self,
        endpoint_id: &str,
        customer_id: &str,
        now: OffsetDateTime,
        error: &str,
        claim: Claim,
    ) -> Result<Option<Incident>, StoreError> {
        let id = rfc3339(now);
        let request = self
            .update(endpoint_id)
            .update_expression(
                "SET #st = :failing, IncidentId = :id, FailingSince = :now, \
                 FailingNotified = :fn, ExpiredNotified = :en, LastError = :err, \
                 LastFailureAt = :now, CustomerId = :c",
            )
            .condition_expression("attribute_not_exists(#st) OR #st = :healthy")
            .expression_attribute_values(":failing", s(FAILING))
            .expression_attribute_values(":healthy", s(HEALTHY))
            .expression_attribute_values(":id", s(id.clone()))
            .expression_attribute_values(":now", s(id.clone()))
            .expression_attribute_values(":fn", AttributeValue::Bool(claim == Claim::Failing))
            .expression_attribute_values(":en", AttributeValue::Bool(claim == Claim::Expired))
            .expression_attribute_values(":err", s(error))
            .expression_attribute_values(":c", s(customer_id));
        Ok(match self.send(request).await? {
            Update::Done(_) => Some(Incident {
                id: id.clone(),
                failing_since: id,
            }),
            Update::ConditionFailed => None,
        })
    }

    /// Sets `claim`'s flag on a failing endpoint. `Ok(Ok(Some))`: this call
    /// flipped it; `Ok(Ok(None))`: already set; `Ok(Err(()))`: not failing.
    #[allow(clippy::type_complexity)]
    async fn claim(
        &self,
        endpoint_id: &str,
        now: OffsetDateTime,
        error: &str,
        claim: Claim,
    ) -> Result<Result<Option<Incident>, ()>, StoreError> {
        let request = self
            .update(endpoint_id)
            .update_expression(format!(
                "SET {} = :t, LastError = :err, LastFailureAt = :now",
                claim.attribute()
            ))
            .condition_expression("#st = :failing")
            .expression_attribute_values(":failing", s(FAILING))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":err", s(error))
            .expression_attribute_values(":now", s(rfc3339(now)));
        Ok(match self.send(request).await? {
            Update::Done(old) if !flag(&old, claim.attribute()) => Ok(incident_of(&old)),
            Update::Done(_) => Ok(None),
            Update::ConditionFailed => Err(()),
        })
    }

    async fn transition(
        &self,
        endpoint_id: &str,
        customer_id: &str,
        now: OffsetDateTime,
        error: &str,
        claim: Claim,
    ) -> Result<Option<Incident>, StoreError> {
        for _ in 0..MAX_RACES {
            if let Some(incident) = self
                .open(endpoint_id, customer_id, now, error, claim)
                .await?
            {
                return Ok(Some(incident));
            }
            match self.claim(endpoint_id, now, error, claim).await? {
                Ok(claimed) => return Ok(claimed),
                // Recovered between the two updates: open a new incident.
                Err(()) => continue,
            }
        }
        Ok(None)
    }

    /// After a failed attempt. `Some(incident)`: this caller must send the
    /// incident's "failing" notification (it is the only one told so).
    pub async fn failed(
        &self,
        endpoint_id: &str,
        customer_id: &str,
        now: OffsetDateTime,
        error: &str,
    ) -> Result<Option<Incident>, StoreError> {
        self.transition(endpoint_id, customer_id, now, error, Claim::Failing)
            .await
    }

    /// After a batch expired. `Some(incident)`: this caller must send the
    /// incident's "expired" notification.
    pub async fn expired(
        &self,
        endpoint_id: &str,
        customer_id: &str,
        now: OffsetDateTime,
        error: &str,
    ) -> Result<Option<Incident>, StoreError> {
        self.transition(endpoint_id, customer_id, now, error, Claim::Expired)
            .await
    }

    /// After a delivery. `Some(incident)`: this caller closed an incident
    /// whose "failing" notification went out, and must send "recovered".
    pub async fn delivered(
        &self,
        endpoint_id: &str,
        customer_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Incident>, StoreError> {
        let at = s(rfc3339(now));
        // Common case, one write: it was healthy and stays so.
        let healthy = self
            .update(endpoint_id)
            .update_expression("SET #st = :healthy, LastDeliveredAt = :now, CustomerId = :c")
            .condition_expression("attribute_not_exists(#st) OR #st = :healthy")
            .expression_attribute_values(":healthy", s(HEALTHY))
            .expression_attribute_values(":now", at.clone())
            .expression_attribute_values(":c", s(customer_id))
            .return_values(ReturnValue::None);
        if let Update::Done(_) = self.send(healthy).await? {
            return Ok(None);
        }
        let close = self
            .update(endpoint_id)
            .update_expression(
                "SET #st = :healthy, LastDeliveredAt = :now, RecoveredAt = :now \
                 REMOVE IncidentId, FailingSince, FailingNotified, ExpiredNotified",
            )
            .condition_expression("#st = :failing")
            .expression_attribute_values(":healthy", s(HEALTHY))
            .expression_attribute_values(":failing", s(FAILING))
            .expression_attribute_values(":now", at);
        Ok(match self.send(close).await? {
            Update::Done(old) if flag(&old, "FailingNotified") => incident_of(&old),
            // Closed, but nobody was told it failed: nothing to recover from.
            Update::Done(_) => None,
            // Someone else closed it (and notifies).
            Update::ConditionFailed => None,
        })
    }

    /// Publishing the notification failed: clear its flag (if the incident is
    /// still the same) so the next failure tries again.
    pub async fn release(
        &self,
        endpoint_id: &str,
        incident: &Incident,
        claim: Claim,
    ) -> Result<(), StoreError> {
        // Not `self.update()`: this expression does not name `State`, and
        // DynamoDB refuses unused attribute names.
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(endpoint_id)))
            .update_expression(format!("SET {} = :f", claim.attribute()))
            .condition_expression("IncidentId = :id")
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":id", s(incident.id.clone()))
            .return_values(ReturnValue::None);
        self.send(request).await.map(|_| ())
    }
}
