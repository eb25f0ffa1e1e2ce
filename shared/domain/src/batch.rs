//! The delivery queue's message: one batch for one endpoint.
//!
//! The fan-out writes it, the push function reads it. It carries the
//! transactions' stored payloads verbatim (`RawValue`: exact decimals, no
//! re-serialisation) so the push needs no read per transaction, and never a
//! token. Its `MessageId` is derived from the endpoint and the transactions'
//! keys, so a replayed stream batch makes the same message, and it stays the
//! same on every retry.

use crate::dedup::KEY_SEPARATOR;
use crate::endpoint::{CustomerId, EndpointId};
use crate::types::MessageKind;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Version of this message's shape; a reader refuses versions it does not know.
pub const BATCH_MESSAGE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchMessage {
    pub version: u32,
    pub message_id: Uuid,
    pub endpoint_id: EndpointId,
    pub customer_id: CustomerId,
    pub kind: MessageKind,
    /// When the fan-out made the batch (RFC 3339, UTC).
    pub created_at: String,
    pub items: Vec<BatchEntry>,
    /// Where the fan-out's durable plan describes this message (absent in
    /// messages made before plans existed): lets push record the plan
    /// instead of the keys. Not part of the message's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_ref: Option<PlanRef>,
}

/// A message's place in the fan-out plan that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlanRef {
    /// The plan's key: the storage key (`SERIAL|SORTKEY`) of the first
    /// transaction it covers.
    pub plan: String,
    /// The message's index in the plan.
    pub index: u32,
}

/// One transaction of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchEntry {
    /// `SERIAL|SORTKEY`: the transaction's key in the transactions table.
    pub key: String,
    /// The transaction as pushed (payload v1 fields), verbatim.
    pub payload: Box<RawValue>,
}

impl BatchEntry {
    /// The key of the transaction stored under `serial` and `sort_key`
    /// (a [`StorageKey`](crate::dedup::StorageKey)'s text, from its parts).
    pub fn key_of(serial: &str, sort_key: &str) -> String {
        format!("{serial}{KEY_SEPARATOR}{sort_key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_pass_through_verbatim() {
        let msg = BatchMessage {
            version: BATCH_MESSAGE_VERSION,
            message_id: Uuid::nil(),
            endpoint_id: EndpointId::parse("ep-1").unwrap(),
            customer_id: CustomerId::parse("acme").unwrap(),
            kind: MessageKind::Transactions,
            created_at: "2026-01-01T00:00:00Z".into(),
            items: vec![BatchEntry {
                key: BatchEntry::key_of("UT07761", "2018-12-07T11:54:27.0000000#sha:ab"),
                payload: RawValue::from_string(r#"{"Amount":5560.0,"UnitValue":20.0000}"#.into())
                    .unwrap(),
            }],
            plan_ref: None,
        };
        let text = serde_json::to_string(&msg).unwrap();
        assert!(
            text.contains(r#""Payload":{"Amount":5560.0,"UnitValue":20.0000}"#),
            "{text}"
        );
        assert!(text.contains(r#""Kind":"Transactions""#), "{text}");
        let back: BatchMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back.items[0].payload.get(),
            r#"{"Amount":5560.0,"UnitValue":20.0000}"#
        );
        assert_eq!(back.endpoint_id.as_str(), "ep-1");
        assert!(!text.contains("PlanRef"), "absent when unset: {text}");

        let with_ref = BatchMessage {
            plan_ref: Some(PlanRef {
                plan: "UT1|k".into(),
                index: 3,
            }),
            ..back
        };
        let text = serde_json::to_string(&with_ref).unwrap();
        assert!(
            text.contains(r#""PlanRef":{"Plan":"UT1|k","Index":3}"#),
            "{text}"
        );
        let back: BatchMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(back.plan_ref.unwrap().index, 3);
    }
}
