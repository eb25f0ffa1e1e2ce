//! What is parked, and under which id: what can never be pushed is kept
//! with its data in the config table (`PARKED#<id>`), counted and alarmed,
//! so the walk goes on past it instead of stalling the shard. Pure.

use crate::decoding::{Poison, Record};
use crate::planning::{self, LeftOut};
use platformsync_aws::fanout_plans::{Parked, Plan};

/// A record that cannot be read as a stored transaction: its raw image,
/// under its sequence number (it may have no readable key).
pub fn poison(record: &Record, poison: &Poison) -> Parked {
    Parked {
        id: format!("SEQ#{}", record.id),
        record: record.id.clone(),
        reason: poison.reason.clone(),
        data: poison.image.clone(),
    }
}

/// A pushable record the plan leaves out for good (invalid owner, too large
/// for any message): its entry, under its storage key.
pub fn left_out(records: &[Record], left: &LeftOut) -> Parked {
    let r = &records[left.record];
    let data = r
        .pushable()
        .and_then(|p| serde_json::to_string(&p.entry).ok())
        .unwrap_or_default();
    Parked {
        id: planning::key_of(r).unwrap_or(&r.id).to_owned(),
        record: r.id.clone(),
        reason: left.reason.clone(),
        data,
    }
}

/// A planned message SQS refuses for good (or whose transactions are gone):
/// its endpoint, `MessageId` and keys, under its `MessageId`.
pub fn refused(plan: &Plan, message: usize, reason: &str) -> Parked {
    let m = &plan.messages[message];
    let keys: Vec<&str> = m
        .items
        .iter()
        .filter_map(|&i| plan.keys.get(i as usize).map(String::as_str))
        .collect();
    Parked {
        id: format!("MSG#{}", m.message_id),
        record: format!("{}#{}", plan.key, message),
        reason: reason.to_owned(),
        data: serde_json::json!({
            "Endpoint": plan.endpoints.get(m.endpoint).map(|(e, _)| e.as_str()),
            "MessageId": m.message_id,
            "Keys": keys,
        })
        .to_string(),
    }
}
