//! The stream-recovery function: the consumer of `StreamFailureQueue`.
//!
//! When a stream batch keeps failing until its records are older than
//! `MaximumRecordAgeInSeconds` (12 h: an outage of ours, never poison,
//! which the fan-out parks), Lambda skips it and sends its description to
//! `StreamFailureQueue`: shard id, first and last sequence numbers, stream
//! ARN (`DDBStreamBatchInfo`), not the records. This function re-reads that
//! range from the stream (records are kept 24 h, so it has at least 12 h)
//! and hands it, in stream batches of at most 1,000 records, to the same
//! [`fanout::Fanout`]: the same plans, so what the fan-out already sent is
//! re-sent under the same `MessageId`s, never re-planned.
//!
//! A range is done when every one of its records is fully handled; then the
//! message is acknowledged. Otherwise it is reported failed and comes back
//! after the queue's visibility timeout (12 min) — plans make every retry
//! idempotent. A range that can no longer be read (trimmed, stream gone) or
//! a message that is not an on-failure record is counted (`RangeUnreadable`,
//! alarmed) and stays queued for operations (docs/runbook.md).
//!
//! Why a crate of its own rather than a second entry point of `fanout`: it
//! links the DynamoDB Streams SDK, which the fan-out's Lambda binary never
//! needs (the stream is read by Lambda's event source mapping there), and it
//! has its own event source and IAM policy in template.yaml. The fan-out
//! logic is not duplicated: this crate is a thin handler over it.

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use fanout::stream_reader::{self, StreamReadError};
use fanout::{Fanout, InitError};
use platformsync_aws::SdkConfig;
use platformsync_aws::config::{Function, Reader};
use platformsync_aws::lambda;
use platformsync_aws::metrics::Metrics;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Records per fan-out call: the fan-out's stream batch size.
pub const RECORDS_PER_BATCH: usize = 1000;

/// Where the failed records are (Lambda's on-failure record for a DynamoDB
/// stream source).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamBatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub stream_arn: String,
}

#[derive(Debug, Deserialize)]
struct OnFailureRecord {
    #[serde(rename = "DDBStreamBatchInfo")]
    batch: StreamBatchInfo,
}

/// Reads the range out of an on-failure record.
pub fn parse(body: &str) -> Result<StreamBatchInfo, serde_json::Error> {
    serde_json::from_str::<OnFailureRecord>(body).map(|r| r.batch)
}

/// Why a range was not (fully) recovered.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("not an on-failure record of a DynamoDB stream: {0}")]
    Malformed(serde_json::Error),
    #[error("the range can no longer be read: {0}")]
    Gone(StreamReadError),
    #[error("reading the range: {0}")]
    Read(StreamReadError),
    #[error("{records} records fanned out, record {first_failed} not yet: retried later")]
    NotDone {
        records: usize,
        first_failed: String,
    },
}

impl RecoveryError {
    /// Nothing but operations can resolve it (alarmed).
    pub fn is_unreadable(&self) -> bool {
        matches!(self, RecoveryError::Malformed(_) | RecoveryError::Gone(_))
    }
}

/// What recovering one range did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub records: usize,
    pub messages_sent: usize,
    pub plans_found: usize,
    pub plans_created: usize,
}

pub struct StreamRecovery {
    fanout: Fanout,
    streams: aws_sdk_dynamodbstreams::Client,
    time_budget: Duration,
}

impl StreamRecovery {
    pub fn new(sdk: &SdkConfig, settings: fanout::Settings) -> Self {
        let time_budget = settings.time_budget;
        Self {
            streams: aws_sdk_dynamodbstreams::Client::from_conf(
                aws_sdk_dynamodbstreams::config::Builder::from(sdk)
                    .timeout_config(settings.timeouts())
                    .build(),
            ),
            fanout: Fanout::new(sdk, settings),
            time_budget,
        }
    }

    /// Configured like the fan-out (the same variables, template.yaml).
    pub async fn from_env() -> Result<Self, InitError> {
        let reader = Reader::from_env(Function::StreamRecovery);
        let settings = fanout::Settings::load(&reader)?;
        // Every client bounded, the Streams client too.
        let sdk = platformsync_aws::sdk_config_for(&settings.calls).await;
        Ok(Self::new(&sdk, settings))
    }

    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    /// Handles a batch of StreamFailureQueue messages with the configured
    /// time budget (local runner, tests).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_before(event, Instant::now() + self.time_budget)
            .await
    }

    /// Handles the messages in order; a message not fully recovered is
    /// reported failed (it stays queued), the others are acknowledged.
    pub async fn handle_before(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let mut failed = Vec::new();
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let body = message.body.as_deref().unwrap_or_default();
            let started = Instant::now();
            let result = self.recover(body, deadline).await;
            let mut m = Metrics::for_function("stream-recovery");
            match &result {
                Ok(done) => {
                    info!(message = %id, records = done.records, sent = done.messages_sent, "stream range recovered");
                    m.count("RangesRecovered", 1)
                        .count("RecordsRecovered", done.records);
                }
                Err(e) if e.is_unreadable() => {
                    error!(message = %id, error = %e, "stream range cannot be recovered: left on the queue for operations");
                    m.count("RangeUnreadable", 1);
                }
                Err(e) => {
                    warn!(message = %id, error = %e, "stream range not recovered yet: retried after the visibility timeout");
                    m.count("RangeRetried", 1);
                }
            }
            m.millis("Duration", started.elapsed().as_millis());
            m.flush();
            if result.is_err() {
                failed.push(id);
            }
        }
        lambda::sqs_response(failed)
    }

    /// Re-reads the range one on-failure record describes and fans it out.
    pub async fn recover(&self, body: &str, deadline: Instant) -> Result<Recovered, RecoveryError> {
        let info = parse(body).map_err(RecoveryError::Malformed)?;
        let records = stream_reader::read_range(
            &self.streams,
            &info.stream_arn,
            &info.shard_id,
            &info.start_sequence_number,
            &info.end_sequence_number,
        )
        .await
        .map_err(|e| {
            if e.gone {
                RecoveryError::Gone(e)
            } else {
                RecoveryError::Read(e)
            }
        })?;
        let mut done = Recovered {
            records: records.len(),
            ..Recovered::default()
        };
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let mut event = Event::default();
            event.records = records.by_ref().take(RECORDS_PER_BATCH).collect();
            let count = event.records.len();
            let tally = self.fanout.process(event, deadline).await;
            done.messages_sent += tally.messages_sent;
            done.plans_found += tally.plans_found;
            done.plans_created += tally.plans_created;
            if let Some(first_failed) = tally.first_failed {
                // Later records must not overtake this one: stop here; the
                // whole range comes back, and the plans make it idempotent.
                return Err(RecoveryError::NotDone {
                    records: count,
                    first_failed,
                });
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lambdas_on_failure_record() {
        let body = r#"{
            "requestContext": {"requestId": "r", "functionArn": "arn:f", "condition": "RecordAgeExceeded", "approximateInvokeCount": 3},
            "version": "1.0",
            "timestamp": "2026-11-29T00:00:00.000Z",
            "DDBStreamBatchInfo": {
                "shardId": "shardId-1",
                "startSequenceNumber": "100",
                "endSequenceNumber": "250",
                "approximateArrivalOfFirstRecord": "2026-11-28T12:00:00Z",
                "approximateArrivalOfLastRecord": "2026-11-28T12:00:01Z",
                "batchSize": 3,
                "streamArn": "arn:aws:dynamodb:eu-west-1:1:table/t/stream/x"
            }
        }"#;
        let info = parse(body).unwrap();
        assert_eq!(info.shard_id, "shardId-1");
        assert_eq!(info.start_sequence_number, "100");
        assert_eq!(info.end_sequence_number, "250");
        assert!(info.stream_arn.ends_with("stream/x"));
        assert!(parse(r#"{"Records": []}"#).is_err());
    }
}
