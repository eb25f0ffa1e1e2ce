//! Stream records as the fan-out sees them: pushed, skipped, or unreadable.

use aws_lambda_events::dynamodb::EventRecord;
use platformsync_aws::transactions::{DeliveryStatus, StoredTransaction};
use platformsync_domain::batch::BatchEntry;
use platformsync_domain::types::MessageKind;
use serde_json::value::RawValue;

/// One record of the event, in event order.
#[derive(Debug)]
pub struct Record {
    /// The identifier Lambda expects in a partial batch response: the
    /// record's sequence number (its event id if it has none, which Lambda
    /// never sends).
    pub id: String,
    pub disposition: Disposition,
}

#[derive(Debug)]
pub enum Disposition {
    Push(Box<Pushable>),
    Skip(SkipReason),
    /// The record cannot be read as a stored transaction: a bug, not a
    /// transient state. The text says why (never the payload).
    Unreadable(String),
}

/// Why a record is not pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Failed a data-quality check; pushed if staff release it.
    Held,
    Discarded,
    Removed,
    /// A change that is not a new delivery (for example an item rewritten
    /// in the state it already had). Logged.
    NotNew,
}

/// A transaction to push.
#[derive(Debug)]
pub struct Pushable {
    pub serial: String,
    pub kind: MessageKind,
    pub transaction_type: String,
    /// Safe-local time: the sort key's part before `#`, which sorts
    /// chronologically as text.
    pub safe_time: String,
    /// Key and payload as the batch message carries them.
    pub entry: BatchEntry,
    /// Size of `entry` serialised in the message body.
    pub entry_bytes: usize,
}

impl Record {
    pub fn pushable(&self) -> Option<&Pushable> {
        match &self.disposition {
            Disposition::Push(p) => Some(p),
            _ => None,
        }
    }
}

/// Decodes one record; takes its image to avoid copying payloads.
pub fn decode(mut record: EventRecord) -> Record {
    let id = record
        .change
        .sequence_number
        .take()
        .unwrap_or_else(|| record.event_id.clone());
    let disposition = match record.event_name.as_str() {
        "REMOVE" => Disposition::Skip(SkipReason::Removed),
        event @ ("INSERT" | "MODIFY") => {
            let image = std::mem::take(&mut record.change.new_image);
            match serde_dynamo::from_item::<_, StoredTransaction>(image) {
                Ok(stored) => classify(event, stored),
                Err(e) => {
                    Disposition::Unreadable(format!("new image is not a stored transaction: {e}"))
                }
            }
        }
        other => Disposition::Unreadable(format!("unknown event name {other:?}")),
    };
    Record { id, disposition }
}

fn classify(event: &str, stored: StoredTransaction) -> Disposition {
    match (event, stored.status) {
        ("INSERT", DeliveryStatus::Deliverable) | ("MODIFY", DeliveryStatus::Released) => {
            match pushable(stored) {
                Ok(p) => Disposition::Push(Box::new(p)),
                Err(reason) => Disposition::Unreadable(reason),
            }
        }
        (_, DeliveryStatus::Held) => Disposition::Skip(SkipReason::Held),
        (_, DeliveryStatus::Discarded) => Disposition::Skip(SkipReason::Discarded),
        _ => Disposition::Skip(SkipReason::NotNew),
    }
}

fn pushable(stored: StoredTransaction) -> Result<Pushable, String> {
    let kind = MessageKind::from_wire_name(&stored.kind)
        .ok_or_else(|| format!("unknown message kind {:?}", stored.kind))?;
    let payload = RawValue::from_string(stored.payload)
        .map_err(|e| format!("stored payload is not JSON: {e}"))?;
    let entry = BatchEntry {
        key: BatchEntry::key_of(&stored.serial_number, &stored.sort_key),
        payload,
    };
    let entry_bytes = serde_json::to_string(&entry)
        .map_err(|e| format!("cannot serialise the batch entry: {e}"))?
        .len();
    let safe_time = stored
        .sort_key
        .split_once('#')
        .map_or(stored.sort_key.as_str(), |(time, _)| time)
        .to_owned();
    Ok(Pushable {
        serial: stored.serial_number,
        kind,
        transaction_type: stored.transaction_type,
        safe_time,
        entry,
        entry_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::dynamodb::Event;
    use serde_json::json;

    fn stored(status: &str) -> serde_json::Value {
        json!({
            "SerialNumber": {"S": "UT07761"},
            "SortKey": {"S": "2019-09-26T00:01:00.0000000#sha:ab"},
            "DedupKey": {"S": "sha:ab"},
            "Kind": {"S": "Transactions"},
            "TransactionType": {"S": "CashIn"},
            "Status": {"S": status},
            "Payload": {"S": r#"{"Amount":5560.0,"SerialNumber":"UT07761"}"#},
            "UploadId": {"S": "u-1"},
            "ReceivedAt": {"S": "2026-01-01T00:00:00Z"}
        })
    }

    fn record(event: &str, image: serde_json::Value) -> EventRecord {
        let event: Event = serde_json::from_value(json!({"Records": [{
            "awsRegion": "us-east-1",
            "eventID": "e-1",
            "eventName": event,
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "ApproximateCreationDateTime": 1.7e9,
                "Keys": {"SerialNumber": {"S": "UT07761"}},
                "NewImage": image,
                "SequenceNumber": "111",
                "SizeBytes": 10,
                "StreamViewType": "NEW_IMAGE"
            }
        }]}))
        .unwrap();
        event.records.into_iter().next().unwrap()
    }

    #[test]
    fn new_deliverable_and_released_items_are_pushed_verbatim() {
        for (event, status) in [("INSERT", "Deliverable"), ("MODIFY", "Released")] {
            let r = decode(record(event, stored(status)));
            assert_eq!(r.id, "111");
            let p = r.pushable().expect("pushed");
            assert_eq!(p.entry.key, "UT07761|2019-09-26T00:01:00.0000000#sha:ab");
            assert_eq!(p.safe_time, "2019-09-26T00:01:00.0000000");
            assert_eq!(
                p.entry.payload.get(),
                r#"{"Amount":5560.0,"SerialNumber":"UT07761"}"#
            );
            assert_eq!(
                p.entry_bytes,
                serde_json::to_string(&p.entry).unwrap().len()
            );
        }
    }

    #[test]
    fn held_discarded_removed_and_repeated_states_are_skipped() {
        let cases = [
            ("INSERT", "Held", SkipReason::Held),
            ("MODIFY", "Discarded", SkipReason::Discarded),
            ("MODIFY", "Deliverable", SkipReason::NotNew),
            ("INSERT", "Released", SkipReason::NotNew),
            ("REMOVE", "Deliverable", SkipReason::Removed),
        ];
        for (event, status, reason) in cases {
            match decode(record(event, stored(status))).disposition {
                Disposition::Skip(r) => assert_eq!(r, reason, "{event} {status}"),
                other => panic!("{event} {status}: {other:?}"),
            }
        }
    }

    #[test]
    fn unreadable_images_are_reported_without_their_payload() {
        let mut image = stored("Deliverable");
        image["Payload"] = json!({"S": "{not json SECRET"});
        match decode(record("INSERT", image)).disposition {
            Disposition::Unreadable(why) => {
                assert!(why.contains("not JSON"), "{why}");
                assert!(!why.contains("SECRET"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        match decode(record("INSERT", json!({"Oops": {"S": "x"}}))).disposition {
            Disposition::Unreadable(why) => assert!(why.contains("stored transaction"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
