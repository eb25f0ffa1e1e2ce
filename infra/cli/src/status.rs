//! `status`: queue depths, dead letters, the alarms in ALARM state with the
//! command to run for each, and per endpoint its incident state, last
//! delivery, parked batches and its oldest undelivered batch's age.
//!
//! Health items (config table, `ENDPOINT#<id>` / `HEALTH`) and ledger items
//! (`EndpointId` / `BatchId`; parked batches under `PARKED#`; retry states
//! under `ATTEMPT#`, which push no longer writes, are ignored) are
//! read generically, attribute by attribute, so this command keeps working
//! whatever the push function adds to them, and an absent item just reads
//! "no data". Only an unreadable configuration table is an error; any other
//! part that cannot be read is reported in place.

use std::collections::HashMap;

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use platformsync_domain::endpoint::EndpointId;
use serde::Serialize;
use serde_json::{Value, json};

use crate::ops::{Ops, sdk_error};
use crate::table::{self, or_dash};
use crate::{Cmd, Io};

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct QueueStatus {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// ApproximateNumberOfMessages.
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting: Option<u64>,
    /// ApproximateNumberOfMessagesNotVisible (in flight, or waiting for a retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<u64>,
    /// ApproximateNumberOfMessagesDelayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    delayed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct EndpointStatus {
    customer_id: String,
    endpoint_id: String,
    enabled: bool,
    /// The health item's attributes, as stored (`State`, `FailingSince`, ...); null if none.
    health: Option<Value>,
    delivered_batches: u64,
    delivered_transactions: u64,
    /// The delivered batch with the latest `DeliveredAt`.
    last_delivery: Option<Value>,
    /// The incident (health item): `State`, `IncidentId`, `FailingSince`,
    /// which notices went out; null when healthy with no incident.
    incident: Option<Value>,
    /// Batches parked (expired, disabled, refused): `platformsync expired list`.
    parked_batches: u64,
    /// The oldest parked batch: `Id`, `MessageId`, `Reason`, `ParkedAt`, `AgeSeconds`.
    oldest_parked: Option<Value>,
    /// Since when the endpoint's oldest undelivered batch has waited: the
    /// oldest parked batch's creation, or the incident's first failure
    /// (the head of its queue group has failed since then).
    oldest_undelivered_since: Option<String>,
    oldest_undelivered_age_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Status {
    stage: String,
    delivery_queue: QueueStatus,
    dead_letter_queue: QueueStatus,
    /// Alarms in ALARM state, each with the command to run and its runbook section.
    alarms: Vec<crate::alarms::Firing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alarms_error: Option<String>,
    endpoints: Vec<EndpointStatus>,
}

/// A DynamoDB attribute as JSON (numbers stay exact when they fit).
pub(crate) fn attribute_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| n.parse::<serde_json::Number>().map(Value::Number))
            .unwrap_or_else(|_| Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(l) => Value::Array(l.iter().map(attribute_json).collect()),
        AttributeValue::M(m) => item_json(m),
        AttributeValue::Ss(s) => json!(s),
        AttributeValue::Ns(n) => json!(n),
        AttributeValue::B(b) => json!(format!("<{} bytes>", b.as_ref().len())),
        AttributeValue::Bs(b) => json!(format!("<{} binary values>", b.len())),
        _ => Value::Null,
    }
}

pub(crate) fn item_json(item: &HashMap<String, AttributeValue>) -> Value {
    let mut keys: Vec<&String> = item.keys().collect();
    keys.sort();
    Value::Object(
        keys.into_iter()
            .map(|k| (k.clone(), attribute_json(&item[k])))
            .collect(),
    )
}

async fn queue(ops: &Ops, name: String, url: Option<String>) -> QueueStatus {
    let mut status = QueueStatus {
        name: name.clone(),
        url: url.clone(),
        waiting: None,
        in_flight: None,
        delayed: None,
        error: None,
    };
    let url = match url {
        Some(url) => url,
        None => match ops.sqs.get_queue_url().queue_name(&name).send().await {
            Ok(out) => out.queue_url.unwrap_or_default(),
            Err(e) => {
                status.error = Some(format!("{:#}", sdk_error(e, "GetQueueUrl")));
                return status;
            }
        },
    };
    status.url = Some(url.clone());
    let attrs = ops
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await;
    match attrs {
        Ok(out) => {
            let get = |name: QueueAttributeName| {
                out.attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse().ok())
            };
            status.waiting = get(QueueAttributeName::ApproximateNumberOfMessages);
            status.in_flight = get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
            status.delayed = get(QueueAttributeName::ApproximateNumberOfMessagesDelayed);
        }
        Err(e) => status.error = Some(format!("{:#}", sdk_error(e, "GetQueueAttributes"))),
    }
    status
}

async fn health(ops: &Ops, endpoint_id: &EndpointId) -> Result<Option<Value>> {
    let out = ops
        .dynamodb
        .get_item()
        .table_name(&ops.names.config_table)
        .key("PK", AttributeValue::S(format!("ENDPOINT#{endpoint_id}")))
        .key("SK", AttributeValue::S("HEALTH".into()))
        .send()
        .await
        .map_err(|e| sdk_error(e, "GetItem (health)"))?;
    Ok(out.item.map(|mut item| {
        item.remove("PK");
        item.remove("SK");
        item_json(&item)
    }))
}

/// Delivered batches, transactions, the latest delivery, and retry states.
async fn ledger(ops: &Ops, endpoint_id: &EndpointId, status: &mut EndpointStatus) -> Result<()> {
    // The transaction keys of each batch can be large: leave them out.
    let items: Vec<HashMap<String, AttributeValue>> = ops
        .dynamodb
        .query()
        .table_name(&ops.names.ledger_table)
        .key_condition_expression("EndpointId = :e")
        .expression_attribute_values(":e", AttributeValue::S(endpoint_id.to_string()))
        .projection_expression(
            "BatchId, CustomerId, Kind, DeliveredAt, FirstAttemptAt, Attempts, TransactionCount, Outcome",
        )
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| sdk_error(e, "Query (delivery ledger)"))?;
    let text = |item: &HashMap<String, AttributeValue>, name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) | Some(AttributeValue::N(v)) => v.clone(),
        _ => String::new(),
    };
    let mut last: Option<&HashMap<String, AttributeValue>> = None;
    for item in &items {
        let id = text(item, "BatchId");
        // Parked batches (and their body parts) and refused split parts are
        // not deliveries; `ATTEMPT#` retry states are left by older
        // versions of push only.
        if id.starts_with("ATTEMPT#")
            || id.starts_with(platformsync_aws::ledger::TRY_PREFIX)
            || id.starts_with(platformsync_aws::parked::PARKED_PREFIX)
            || text(item, "Outcome") == "refused"
        {
            continue;
        }
        status.delivered_batches += 1;
        status.delivered_transactions += text(item, "TransactionCount").parse::<u64>().unwrap_or(0);
        if last.is_none_or(|l| text(item, "DeliveredAt") > text(l, "DeliveredAt")) {
            last = Some(item);
        }
    }
    status.last_delivery = last.map(item_json);
    Ok(())
}

/// The incident, the parked batches and the oldest undelivered batch.
async fn backlog(
    ops: &Ops,
    endpoint_id: &EndpointId,
    status: &mut EndpointStatus,
    now: time::OffsetDateTime,
) -> Result<()> {
    let field = |name: &str| {
        status
            .health
            .as_ref()
            .and_then(|h| h.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let failing_since = field("FailingSince");
    if field("IncidentId").is_some() || failing_since.is_some() {
        let mut incident = serde_json::Map::new();
        for name in [
            "State",
            "IncidentId",
            "FailingSince",
            "FailingNotified",
            "ExpiredNotified",
            "LastError",
        ] {
            if let Some(v) = status.health.as_ref().and_then(|h| h.get(name)) {
                incident.insert(name.to_owned(), v.clone());
            }
        }
        status.incident = Some(Value::Object(incident));
    }
    let parked = platformsync_aws::parked::ParkedStore::new(
        ops.dynamodb.clone(),
        ops.names.ledger_table.clone(),
    )
    .list(endpoint_id)
    .await?;
    status.parked_batches = parked.len() as u64;
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    let age = |t: time::OffsetDateTime| (now - t).whole_seconds().max(0);
    if let Some(p) = parked.first() {
        status.oldest_parked = Some(json!({
            "Id": p.id,
            "MessageId": p.message_id,
            "Reason": p.reason,
            "ParkedAt": p.parked_at,
            "AgeSeconds": parse(&p.parked_at).map(age),
        }));
    }
    // The oldest of: the first parked batch's creation, the incident's start.
    let candidates = parked
        .first()
        .map(|p| p.created_at.clone())
        .into_iter()
        .chain(failing_since)
        .filter_map(|t| parse(&t).map(|at| (at, t)));
    if let Some((at, text)) = candidates.min_by_key(|(at, _)| *at) {
        status.oldest_undelivered_since = Some(text);
        status.oldest_undelivered_age_seconds = Some(age(at));
    }
    Ok(())
}

pub(crate) async fn run(cmd: Cmd<'_, '_>) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let ops = Ops::connect(target).await;
    let mut customers = ops.config.customers().await?;
    customers.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    let mut endpoints = Vec::new();
    for c in &customers {
        endpoints.extend(ops.config.endpoints_of(&c.customer_id).await?);
    }
    let delivery_queue = queue(
        &ops,
        ops.names.delivery_queue_name(),
        ops.names.delivery_queue_url.clone(),
    )
    .await;
    let dead_letter_queue = queue(
        &ops,
        ops.names.dead_letter_queue_name(),
        ops.names.dead_letter_queue_url.clone(),
    )
    .await;
    let now = time::OffsetDateTime::now_utc();
    let mut rows = Vec::new();
    for e in &endpoints {
        let mut s = EndpointStatus {
            customer_id: e.customer_id.to_string(),
            endpoint_id: e.endpoint_id.to_string(),
            enabled: e.enabled,
            ..Default::default()
        };
        match health(&ops, &e.endpoint_id).await {
            Ok(h) => s.health = h,
            Err(err) => s.errors.push(format!("{err:#}")),
        }
        if let Err(err) = ledger(&ops, &e.endpoint_id, &mut s).await {
            s.errors.push(format!("{err:#}"));
        }
        if let Err(err) = backlog(&ops, &e.endpoint_id, &mut s, now).await {
            s.errors.push(format!("{err:#}"));
        }
        rows.push(s);
    }
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&platformsync_aws::sdk_config().await);
    let (alarms, alarms_error) = match crate::alarms::firing(&cloudwatch, &ops.names.stage).await {
        Ok(a) => (a, None),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    let status = Status {
        stage: ops.names.stage.clone(),
        delivery_queue,
        dead_letter_queue,
        alarms,
        alarms_error,
        endpoints: rows,
    };
    if json {
        return table::json(io.out, &status);
    }
    print_text(&status, io)
}

fn queue_line(q: &QueueStatus) -> String {
    if let Some(e) = &q.error {
        return format!("{}: unavailable ({e})", q.name);
    }
    let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    format!(
        "{}: {} waiting, {} in flight or awaiting retry, {} delayed",
        q.name,
        n(q.waiting),
        n(q.in_flight),
        n(q.delayed)
    )
}

fn print_text(status: &Status, io: &mut Io<'_>) -> Result<()> {
    writeln!(io.out, "Stage {}", status.stage)?;
    writeln!(
        io.out,
        "Delivery queue     {}",
        queue_line(&status.delivery_queue)
    )?;
    let dlq = &status.dead_letter_queue;
    match (&dlq.error, dlq.waiting, dlq.in_flight) {
        (None, Some(w), in_flight) => writeln!(
            io.out,
            "Dead-letter queue  {}: {} dead letter(s){}",
            dlq.name,
            w + in_flight.unwrap_or(0),
            if w + in_flight.unwrap_or(0) > 0 {
                "  <- expired batches: inspect and replay"
            } else {
                ""
            }
        )?,
        _ => writeln!(io.out, "Dead-letter queue  {}", queue_line(dlq))?,
    }
    if let Some(e) = &status.alarms_error {
        writeln!(io.out, "Alarms             unavailable ({e})")?;
    } else if status.alarms.is_empty() {
        writeln!(io.out, "Alarms             none in ALARM state")?;
    } else {
        writeln!(io.out, "Alarms in ALARM state:")?;
        for a in &status.alarms {
            writeln!(io.out, "  {}  (see {})", a.name, a.runbook)?;
            writeln!(io.out, "      run: {}", a.command)?;
        }
    }
    writeln!(io.out)?;
    if status.endpoints.is_empty() {
        writeln!(io.out, "No endpoints registered.")?;
        return Ok(());
    }
    let field = |v: &Option<Value>, name: &str| {
        v.as_ref()
            .and_then(|v| v.get(name))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = status
        .endpoints
        .iter()
        .map(|e| {
            let state = match &e.health {
                None => "healthy (no data)".to_owned(),
                Some(_) => {
                    let state = or_dash(field(&e.health, "State"));
                    let since = field(&e.health, "FailingSince");
                    if since.is_empty() {
                        state
                    } else {
                        format!("{state} since {since}")
                    }
                }
            };
            let last = match &e.last_delivery {
                None => "never".to_owned(),
                Some(_) => format!(
                    "{} ({} tx, {} attempt(s))",
                    or_dash(field(&e.last_delivery, "DeliveredAt")),
                    or_dash(field(&e.last_delivery, "TransactionCount")),
                    or_dash(field(&e.last_delivery, "Attempts"))
                ),
            };
            let mut health = state;
            // `endpoint enable` is replaying the parked backlog (or stopped
            // before it finished: run it again).
            if e.health
                .as_ref()
                .and_then(|h| h.get("Resuming"))
                .and_then(Value::as_bool)
                == Some(true)
            {
                health.push_str(" (resuming: new batches wait behind the parked backlog)");
            }
            let last_error = field(&e.health, "LastError");
            if !last_error.is_empty() && field(&e.health, "State") != "healthy" {
                health.push_str(&format!(" - {last_error}"));
            }
            if !e.errors.is_empty() {
                health.push_str(&format!(" [unreadable: {}]", e.errors.join("; ")));
            }
            vec![
                e.endpoint_id.clone(),
                e.customer_id.clone(),
                if e.enabled { "yes" } else { "no" }.into(),
                e.delivered_batches.to_string(),
                e.delivered_transactions.to_string(),
                last,
                match &e.oldest_parked {
                    None => "0".to_owned(),
                    Some(p) => format!(
                        "{} (oldest {})",
                        e.parked_batches,
                        crate::parked_cmd::human_age(p["AgeSeconds"].as_i64().unwrap_or(0))
                    ),
                },
                e.oldest_undelivered_age_seconds
                    .map(crate::parked_cmd::human_age)
                    .unwrap_or_else(|| "-".into()),
                health,
            ]
        })
        .collect();
    table::print(
        io.out,
        &[
            "ENDPOINT",
            "CUSTOMER",
            "ENABLED",
            "BATCHES",
            "TRANSACTIONS",
            "LAST DELIVERY",
            "PARKED",
            "OLDEST UNDELIVERED",
            "HEALTH",
        ],
        &rows,
    )
}
