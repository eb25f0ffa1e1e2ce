//! What every Lambda function answers the same way: how long it may run
//! (the invocation's deadline on the monotonic clock) and which items of a
//! batch Lambda must retry (the partial batch response).
//!
//! One place, so an SQS consumer and a stream consumer cannot drift: both
//! compute the deadline from the context the same way, and both report
//! failures only through [`sqs_response`] / [`stream_response`].

use aws_lambda_events::sqs::SqsBatchResponse;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use std::time::{Duration, Instant, SystemTime};

/// The invocation's deadline (wall clock, as `Context::deadline()` gives
/// it) on the monotonic clock every wait and request is timed on. A
/// deadline already past is now.
pub fn deadline(at: SystemTime) -> Instant {
    Instant::now()
        + at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
}

/// The answer to an SQS event: the messages not fully handled (Lambda
/// makes them visible again; the others are deleted). Requires
/// `ReportBatchItemFailures` on the event source mapping.
pub fn sqs_response<I, S>(failed: I) -> SqsBatchResponse
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut response = SqsBatchResponse::default();
    response.set_failures(failed);
    response
}

/// The answer to a stream batch: the first record not fully handled, if
/// any. Lambda checkpoints every record before it and retries from it, so
/// reporting more than the first would mean nothing; later records are
/// retried with it and must not have overtaken it.
pub fn stream_response(first_failed: Option<String>) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    if let Some(id) = first_failed {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(id);
        response.batch_item_failures.push(failure);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_the_time_left_from_now() {
        let in_a_minute = SystemTime::now() + Duration::from_secs(60);
        let left = deadline(in_a_minute).saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60));
        let past = deadline(SystemTime::now() - Duration::from_secs(5));
        assert!(past <= Instant::now());
    }

    #[test]
    fn responses_report_exactly_the_failed_items() {
        let sqs = sqs_response(["m-2", "m-5"]);
        let ids: Vec<&str> = sqs
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["m-2", "m-5"]);
        assert!(
            sqs_response(Vec::<String>::new())
                .batch_item_failures
                .is_empty()
        );

        let stream = stream_response(Some("300".into()));
        assert_eq!(stream.batch_item_failures.len(), 1);
        assert_eq!(
            stream.batch_item_failures[0].item_identifier.as_deref(),
            Some("300")
        );
        assert!(stream_response(None).batch_item_failures.is_empty());
        // The wire shape Lambda reads.
        assert_eq!(
            serde_json::to_value(&stream).unwrap_or_default(),
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "300"}]})
        );
    }
}
