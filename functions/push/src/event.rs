//! Lambda's SQS event, and building one from messages received with the SDK.
//!
//! Lambda's event source mapping receives from the delivery queue and hands
//! the function an [`SqsEvent`]; tests and the local runner receive with
//! `ReceiveMessage` themselves and convert with [`sqs_event`], so the handler
//! runs exactly as on Lambda, then delete what Lambda would delete after the
//! answer ([`acknowledged`]).

use std::collections::HashMap;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};

/// Lambda's shape of `messages` received from the queue `queue_arn`.
///
/// Receive with `message_system_attribute_names(All)` (as Lambda does) so
/// `MessageGroupId` and `ApproximateReceiveCount` are present: the handler
/// keeps FIFO order per `MessageGroupId`.
pub fn sqs_event(queue_arn: &str, messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    // arn:aws:sqs:<region>:<account>:<name>
    let region = queue_arn.split(':').nth(3).map(str::to_owned);
    let records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id().map(str::to_owned);
            record.receipt_handle = m.receipt_handle().map(str::to_owned);
            record.body = m.body().map(str::to_owned);
            record.md5_of_body = m.md5_of_body().map(str::to_owned);
            record.md5_of_message_attributes = m.md5_of_message_attributes().map(str::to_owned);
            record.attributes = m
                .attributes()
                .map(|attributes| {
                    attributes
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            record.message_attributes = m
                .message_attributes()
                .map(|attributes| {
                    attributes
                        .iter()
                        .map(|(k, v)| {
                            let mut a = SqsMessageAttribute::default();
                            a.string_value = v.string_value().map(str::to_owned);
                            a.data_type = Some(v.data_type().to_owned());
                            (k.clone(), a)
                        })
                        .collect::<HashMap<_, _>>()
                })
                .unwrap_or_default();
            record.event_source = Some("aws:sqs".to_owned());
            record.event_source_arn = Some(queue_arn.to_owned());
            record.aws_region = region.clone();
            record
        })
        .collect();
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// What Lambda deletes after the function answered `response` for
/// `messages` (`ReportBatchItemFailures`): every message it did not name,
/// as `DeleteMessageBatch` entries (at most 10 messages, as received).
pub fn acknowledged(
    messages: &[Message],
    response: &SqsBatchResponse,
) -> Vec<DeleteMessageBatchRequestEntry> {
    let failed = |id: &str| {
        response
            .batch_item_failures
            .iter()
            .any(|f| f.item_identifier == id)
    };
    messages
        .iter()
        .filter(|m| m.message_id().is_some_and(|id| !failed(id)))
        .enumerate()
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                .build()
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::MessageSystemAttributeName;

    #[test]
    fn acknowledged_are_the_messages_the_answer_does_not_name() {
        let m = |id: &str| {
            Message::builder()
                .message_id(id)
                .receipt_handle(format!("r-{id}"))
                .build()
        };
        let messages = [m("a"), m("b"), m("c")];
        let response = platformsync_aws::lambda::sqs_response(["b"]);
        let entries = acknowledged(&messages, &response);
        let deleted: Vec<&str> = entries.iter().map(|e| e.receipt_handle()).collect();
        assert_eq!(deleted, ["r-a", "r-c"]);
        let none = platformsync_aws::lambda::sqs_response(["a", "b", "c"]);
        assert!(acknowledged(&messages, &none).is_empty());
    }

    #[test]
    fn keeps_ids_body_and_group() {
        let m = Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body("{}")
            .attributes(MessageSystemAttributeName::MessageGroupId, "ep-1")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .build();
        let event = sqs_event("arn:aws:sqs:eu-west-1:123456789012:q.fifo", &[m]);
        let r = &event.records[0];
        assert_eq!(r.message_id.as_deref(), Some("m-1"));
        assert_eq!(r.receipt_handle.as_deref(), Some("r-1"));
        assert_eq!(r.body.as_deref(), Some("{}"));
        assert_eq!(r.attributes["MessageGroupId"], "ep-1");
        assert_eq!(r.attributes["ApproximateReceiveCount"], "2");
        assert_eq!(r.aws_region.as_deref(), Some("eu-west-1"));
    }
}
