//! Stream records as the fan-out sees them: pushed, skipped, or unreadable.

use aws_lambda_events::dynamodb::EventRecord;
use platformsync_domain::batch::BatchEntry;
use platformsync_domain::record::{DeliveryStatus, StoredTransaction};
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
    /// The record cannot be read as a stored transaction, or holds what no
    /// message can carry: poison, not a transient state. Parked with its
    /// data; never retried.
    Unreadable(Poison),
}

/// Why a record is poison, and its raw image (for the parked item only:
/// never logged).
#[derive(Debug, Clone)]
pub struct Poison {
    /// Says why, never the payload.
    pub reason: String,
    /// The stream record's new image as DynamoDB JSON.
    pub image: String,
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
    let image = std::mem::take(&mut record.change.new_image);
    let raw = |image: &serde_dynamo::Item| serde_json::to_string(image).unwrap_or_default();
    let disposition = match record.event_name.as_str() {
        "REMOVE" => Disposition::Skip(SkipReason::Removed),
        event @ ("INSERT" | "MODIFY") => {
            // Kept only in case the image turns out to be poison.
            let kept = image.clone();
            match serde_dynamo::from_item::<_, StoredTransaction>(image) {
                Ok(stored) => match classify(event, stored) {
                    Ok(d) => d,
                    Err(reason) => Disposition::Unreadable(Poison {
                        reason,
                        image: raw(&kept),
                    }),
                },
                Err(e) => Disposition::Unreadable(Poison {
                    reason: format!("new image is not a stored transaction: {e}"),
                    image: raw(&kept),
                }),
            }
        }
        other => Disposition::Unreadable(Poison {
            reason: format!("unknown event name {other:?}"),
            image: raw(&image),
        }),
    };
    Record { id, disposition }
}

fn classify(event: &str, stored: StoredTransaction) -> Result<Disposition, String> {
    Ok(match (event, stored.status) {
        ("INSERT", DeliveryStatus::Deliverable) | ("MODIFY", DeliveryStatus::Released) => {
            Disposition::Push(Box::new(pushable(stored)?))
        }
        (_, DeliveryStatus::Held) => Disposition::Skip(SkipReason::Held),
        (_, DeliveryStatus::Discarded) => Disposition::Skip(SkipReason::Discarded),
        _ => Disposition::Skip(SkipReason::NotNew),
    })
}

/// Characters valid in JSON text that SQS refuses in a message body (it
/// allows #x9, #xA, #xD, #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF;
/// serde_json escapes the control characters, Rust strings hold no
/// surrogates). A message holding one would be refused on every replay.
fn sqs_refuses(text: &str) -> bool {
    text.chars().any(|c| matches!(c, '\u{FFFE}' | '\u{FFFF}'))
}

/// A stored transaction as the batch message carries it (also used to
/// rebuild bodies of records absent from a replayed event).
pub fn pushable(stored: StoredTransaction) -> Result<Pushable, String> {
    let kind = stored.kind();
    let transaction_type = stored.type_name().to_owned();
    let payload = RawValue::from_string(stored.payload)
        .map_err(|e| format!("stored payload is not JSON: {e}"))?;
    let entry = BatchEntry {
        key: BatchEntry::key_of(stored.serial_number.as_str(), &stored.sort_key),
        payload,
    };
    let text = serde_json::to_string(&entry)
        .map_err(|e| format!("cannot serialise the batch entry: {e}"))?;
    if sqs_refuses(&text) {
        return Err("payload holds characters SQS refuses in a message (U+FFFE/U+FFFF)".into());
    }
    let entry_bytes = text.len();
    let safe_time = stored
        .sort_key
        .split_once('#')
        .map_or(stored.sort_key.as_str(), |(time, _)| time)
        .to_owned();
    Ok(Pushable {
        serial: stored.serial_number.to_string(),
        kind,
        transaction_type,
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
            Disposition::Unreadable(p) => {
                assert!(p.reason.contains("not JSON"), "{p:?}");
                assert!(!p.reason.contains("SECRET"), "{p:?}");
                assert!(
                    p.image.contains("SECRET"),
                    "the raw image is kept for parking"
                );
            }
            other => panic!("{other:?}"),
        }
        match decode(record("INSERT", json!({"Oops": {"S": "x"}}))).disposition {
            Disposition::Unreadable(p) => {
                assert!(p.reason.contains("stored transaction"), "{p:?}");
                assert!(p.image.contains("Oops"), "{p:?}");
            }
            other => panic!("{other:?}"),
        }
        let mut image = stored("Deliverable");
        image["Payload"] = json!({"S": "{\"Note\":\"\u{FFFF}\"}"});
        match decode(record("INSERT", image)).disposition {
            Disposition::Unreadable(p) => assert!(p.reason.contains("SQS refuses"), "{p:?}"),
            other => panic!("{other:?}"),
        }
    }
}
