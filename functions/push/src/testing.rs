//! The flow's unit tests' fixtures: one endpoint `ep` of customer `acme`
//! over the in-memory ports, and its batches.

pub(crate) use crate::attempt::Posted;
pub(crate) use crate::flow::{Envelope, Flow, Timing, now};
pub(crate) use crate::outcome::Outcome;
pub(crate) use crate::policy::{AttemptResult, Rules};
pub(crate) use crate::ports::HealthPort;
pub(crate) use crate::ports::memory::{Memory, throttled};
pub(crate) use platformsync_delivery::incident::EndpointState;
pub(crate) use platformsync_domain::endpoint::EndpointSettings;
pub(crate) use std::sync::Arc;
pub(crate) use std::time::{Duration, Instant};

/// Not used by the flow itself: the state a probe leaves, for tests.
pub(crate) fn expired_state() -> EndpointState {
    let mut incident = platformsync_delivery::incident::Incident::opened(now());
    incident.failing_notified = true;
    incident.expired_notified = true;
    incident.expired_at = Some(now());
    EndpointState {
        incident: Some(incident),
        failing_since: Some(now()),
        next_probe_at: Some(now() + time::Duration::hours(1)),
        ..Default::default()
    }
}

pub(crate) fn flow(memory: Memory) -> Flow<Memory> {
    let settings: EndpointSettings = serde_json::from_value(serde_json::json!({
        "EndpointId": "ep", "CustomerId": "acme",
        "Url": "https://hooks.example/x", "ApiKeySecret": "s",
    }))
    .unwrap();
    memory
        .endpoints
        .lock()
        .unwrap()
        .insert("ep".into(), Arc::new(settings));
    Flow {
        ports: memory,
        rules: Rules {
            window: Duration::from_secs(3600),
            ..Rules::default()
        },
        timing: Timing {
            attempt_timeout: Duration::from_secs(1),
            after_attempt: Duration::from_secs(1),
            our_backoff_base: Duration::from_secs(5),
            our_backoff_cap: Duration::from_secs(1800),
        },
    }
}

pub(crate) fn envelope(i: usize, items: usize) -> Envelope {
    let items: Vec<serde_json::Value> = (0..items)
        .map(|t| serde_json::json!({"Key": format!("UT1|k{i}-{t}"), "Payload": {"N": format!("t{i}-{t}")}}))
        .collect();
    let body = serde_json::json!({
        "Version": 1, "MessageId": uuid::Uuid::from_u128(i as u128 + 1), "EndpointId": "ep",
        "CustomerId": "acme", "Kind": "Transactions", "CreatedAt": "2026-01-10T09:00:00Z",
        "Items": items,
    });
    Envelope {
        id: format!("sqs-{i}"),
        receipt: Some(format!("r-{i}")),
        group: Some("ep".into()),
        body: body.to_string(),
        receive_count: 1,
        sent_at: Some(now()),
        replayed: false,
    }
}

pub(crate) fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

pub(crate) fn failed() -> Posted {
    Posted::Answer(AttemptResult::Failed {
        error: "HTTP 503".into(),
        retry_after: None,
    })
}

pub(crate) fn replayed(i: usize) -> Envelope {
    Envelope {
        replayed: true,
        ..envelope(i, 1)
    }
}
