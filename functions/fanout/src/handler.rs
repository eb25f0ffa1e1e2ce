use crate::batches::{self, BatchInfo, Message};
use crate::config_cache::ConfigCache;
use crate::records::{self, Disposition, Record};
use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::delivery_queue::{
    DeliveryQueue, OutgoingBatch, RetryPolicy, SendFailure, SendMessageBatch, SqsTransport,
};
use platformsync_aws::env::{self, EnvError};
use platformsync_aws::fanout_progress::{FanoutProgress, SentPair};
use platformsync_aws::metrics::Metrics;
use platformsync_aws::{SdkConfig, StoreError};
use platformsync_delivery::batching::PlanError;
use platformsync_domain::endpoint::{CustomerId, EndpointId};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{Instrument, error, info, info_span, warn};

/// How the function is configured (from `template.yaml`'s environment).
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_table: String,
    pub delivery_queue_url: String,
    /// How long safe owners and endpoints are reused (`CONFIG_CACHE_SECONDS`,
    /// default 60): the bound on how stale a routing decision can be.
    pub config_cache_ttl: Duration,
    /// Time allowed when no Lambda deadline is known (`TIME_BUDGET_SECONDS`,
    /// default 50; keep it below the function timeout).
    pub time_budget: Duration,
    /// No SQS request starts closer than this to the deadline
    /// (`DEADLINE_MARGIN_SECONDS`, default 10): one request's worst case
    /// (the SQS client's operation timeout, 8 s) plus the progress write.
    pub deadline_margin: Duration,
    /// Attempts per message, the first included (`SEND_ATTEMPTS`, default 5).
    pub send_attempts: u32,
    /// Wait before the first retry of a failed entry; doubles each time.
    pub send_backoff: Duration,
}

impl Settings {
    /// The defaults for a config table and a delivery queue.
    pub fn new(config_table: impl Into<String>, delivery_queue_url: impl Into<String>) -> Self {
        Self {
            config_table: config_table.into(),
            delivery_queue_url: delivery_queue_url.into(),
            config_cache_ttl: Duration::from_secs(60),
            time_budget: Duration::from_secs(50),
            deadline_margin: Duration::from_secs(10),
            send_attempts: 5,
            send_backoff: Duration::from_millis(100),
        }
    }

    pub fn from_env() -> Result<Self, EnvError> {
        let mut settings = Self::new(
            env::required("CONFIG_TABLE")?,
            env::required("DELIVERY_QUEUE_URL")?,
        );
        settings.config_cache_ttl =
            Duration::from_secs(env::parsed_or("CONFIG_CACHE_SECONDS", 60u64)?.min(3600));
        settings.time_budget =
            Duration::from_secs(env::parsed_or("TIME_BUDGET_SECONDS", 50u64)?.clamp(1, 900));
        settings.deadline_margin =
            Duration::from_secs(env::parsed_or("DEADLINE_MARGIN_SECONDS", 10u64)?.min(300));
        settings.send_attempts = env::parsed_or("SEND_ATTEMPTS", 5u32)?.clamp(1, 20);
        Ok(settings)
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.send_attempts,
            base_backoff: self.send_backoff,
            max_backoff: Duration::from_secs(2),
            deadline_margin: self.deadline_margin,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Env(#[from] EnvError),
}

/// Why (part of) a stream batch was not fanned out. Names the record,
/// customer or endpoint involved; never a payload.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    #[error("reading the fan-out progress for record {sequence}: {source}")]
    Progress {
        sequence: String,
        source: StoreError,
    },
    #[error("reading the owners of {safes} safes: {source}")]
    Owners { safes: usize, source: StoreError },
    #[error("reading the endpoints of customer {customer}: {source}")]
    Endpoints {
        customer: CustomerId,
        source: Arc<StoreError>,
    },
    #[error("planning the batches of endpoint {endpoint}: {source}")]
    Plan {
        endpoint: EndpointId,
        source: PlanError,
    },
    #[error("encoding a batch of endpoint {endpoint}: {source}")]
    Encode {
        endpoint: EndpointId,
        source: serde_json::Error,
    },
    #[error("sending batch {message_id} of endpoint {endpoint}: {source}")]
    Send {
        endpoint: EndpointId,
        message_id: uuid::Uuid,
        source: SendFailure,
    },
    #[error("saving the fan-out progress for record {sequence}: {source}")]
    SaveProgress {
        sequence: String,
        source: StoreError,
    },
}

/// What one invocation did (also its metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub records: usize,
    pub pushable: usize,
    pub skipped: usize,
    pub unreadable: usize,
    /// Pushable records of safes no customer owns (or with an invalid owner).
    pub unowned: usize,
    /// (record, endpoint) pairs skipped because an earlier attempt sent them.
    pub already_sent: usize,
    /// Messages planned.
    pub batches: usize,
    pub transactions_batched: usize,
    pub messages_sent: usize,
    pub sqs_requests: usize,
    pub retried_entries: usize,
    pub failed_batches: usize,
    /// Items too large for any message (unreachable with DynamoDB's 400 KB
    /// item limit); logged with their keys.
    pub oversized: usize,
    /// Safes and customers read from the config table (not from the cache).
    pub safes_read: usize,
    pub customers_read: usize,
    /// The identifier reported to Lambda: the first record not fully handled.
    pub first_failed: Option<String>,
    /// Pairs remembered for the replay, when there is a failure.
    pub progress_saved: usize,
    pub progress_write_failed: bool,
}

/// The fan-out function: its clients (built once per container), its config
/// cache and its settings. `T` is the SQS boundary (real SQS outside tests).
#[derive(Debug)]
pub struct Fanout<T = SqsTransport> {
    config: ConfigCache,
    progress: FanoutProgress,
    queue: DeliveryQueue<T>,
    settings: Settings,
}

/// One SQS request never runs longer than this, so the deadline margin
/// holds (the SDK's own retries included).
const SQS_OPERATION_TIMEOUT: Duration = Duration::from_secs(8);
const SQS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

impl Fanout<SqsTransport> {
    pub fn new(sdk: &SdkConfig, settings: Settings) -> Self {
        let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
            .operation_timeout(SQS_OPERATION_TIMEOUT)
            .operation_attempt_timeout(SQS_ATTEMPT_TIMEOUT)
            .build();
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .timeout_config(timeouts)
                .build(),
        );
        let transport = SqsTransport::new(sqs, &settings.delivery_queue_url);
        Self::with_transport(sdk, settings, transport)
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let settings = Settings::from_env()?;
        let sdk = platformsync_aws::sdk_config().await;
        Ok(Self::new(&sdk, settings))
    }
}

impl<T: SendMessageBatch> Fanout<T> {
    /// The function with `transport` in place of the SQS client: the one
    /// seam tests use to inject send failures.
    pub fn with_transport(sdk: &SdkConfig, settings: Settings, transport: T) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            config: ConfigCache::new(
                ConfigStore::new(dynamodb.clone(), &settings.config_table),
                settings.config_cache_ttl,
            ),
            progress: FanoutProgress::new(dynamodb, &settings.config_table),
            queue: DeliveryQueue::with_transport(transport, settings.retry_policy()),
            settings,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Handles one stream batch with the configured time budget (local
    /// runner, tests). Never fails: a failure is a partial batch response.
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        self.handle_until(event, Instant::now() + self.settings.time_budget)
            .await
    }

    /// Handles one stream batch, starting no send near `deadline` (Lambda's).
    pub async fn handle_until(&self, event: Event, deadline: Instant) -> DynamoDbEventResponse {
        let outcome = self.process(event, deadline).await;
        let mut response = DynamoDbEventResponse::default();
        if let Some(id) = outcome.first_failed {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(id);
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// Fans out one stream batch; what happened, for the response, metrics
    /// and benchmarks.
    pub async fn process(&self, event: Event, deadline: Instant) -> Outcome {
        let records: Vec<Record> = event.records.into_iter().map(records::decode).collect();
        let Some(first) = records.first() else {
            return Outcome::default();
        };
        // The first record's sequence number identifies the batch in logs:
        // a replay starts with the record the previous attempt reported.
        let span = info_span!("fanout", batch = %first.id, records = records.len());
        async {
            let started = Instant::now();
            let outcome = self.fan_out(&records, deadline).await;
            record_metrics(&outcome, started.elapsed());
            info!(
                pushable = outcome.pushable,
                skipped = outcome.skipped,
                unowned = outcome.unowned,
                already_sent = outcome.already_sent,
                batches = outcome.batches,
                sent = outcome.messages_sent,
                sqs_requests = outcome.sqs_requests,
                failed_batches = outcome.failed_batches,
                first_failed = outcome.first_failed.as_deref().unwrap_or(""),
                duration_ms = started.elapsed().as_millis() as u64,
                "stream batch fanned out"
            );
            outcome
        }
        .instrument(span)
        .await
    }

    async fn fan_out(&self, records: &[Record], deadline: Instant) -> Outcome {
        let mut outcome = Outcome {
            records: records.len(),
            ..Outcome::default()
        };
        for record in records {
            match &record.disposition {
                Disposition::Push(_) => outcome.pushable += 1,
                Disposition::Skip(_) => outcome.skipped += 1,
                Disposition::Unreadable(why) => {
                    outcome.unreadable += 1;
                    error!(record = %record.id, reason = %why, "unreadable stream record skipped");
                }
            }
        }
        if outcome.pushable == 0 {
            return outcome;
        }
        let first_id = &records[0].id;

        // What an earlier attempt at this batch already sent.
        let already_sent = match self.progress.load(first_id).await {
            Ok(pairs) => pairs,
            Err(source) => {
                let e = FanoutError::Progress {
                    sequence: first_id.clone(),
                    source,
                };
                error!(error = %e, "nothing sent; the whole batch will be retried");
                outcome.first_failed = Some(first_id.clone());
                return outcome;
            }
        };

        // Owners and their endpoints.
        let serials: BTreeSet<&str> = records
            .iter()
            .filter_map(|r| r.pushable().map(|p| p.serial.as_str()))
            .collect();
        let (routing, reads) = match self.config.lookup(&serials).await {
            Ok(found) => found,
            Err(source) => {
                let e = FanoutError::Owners {
                    safes: serials.len(),
                    source,
                };
                error!(error = %e, "nothing sent; the whole batch will be retried");
                outcome.first_failed = Some(first_id.clone());
                return outcome;
            }
        };
        outcome.safes_read = reads.safes_read;
        outcome.customers_read = reads.customers_read;

        let routed = batches::route(records, &routing, &already_sent);
        outcome.already_sent = routed.already_sent;
        outcome.unowned = routed.unowned.len() + routed.invalid_owner.len();
        if !routed.unowned.is_empty() {
            let safes: BTreeSet<&str> = routed
                .unowned
                .iter()
                .filter_map(|&i| records[i].pushable().map(|p| p.serial.as_str()))
                .collect();
            warn!(transactions = routed.unowned.len(), safes = ?safes, "transactions of safes no customer owns: kept, not pushed");
        }
        for (index, customer) in &routed.invalid_owner {
            error!(record = %records[*index].id, customer = %customer, "safe registry names an invalid customer id: not pushed");
        }
        let mut failed: BTreeSet<usize> = BTreeSet::new();
        for (index, e) in &routed.unrouted {
            warn!(record = %records[*index].id, error = %e, "endpoints unreadable; record will be retried");
            failed.insert(*index);
        }

        // Plan every (endpoint, kind) group.
        let created_at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let mut messages: Vec<Message> = Vec::new();
        for group in routed.groups.values() {
            match batches::plan_group(group, records, &created_at) {
                Ok(planned) => {
                    for (item, _) in &planned.oversized {
                        outcome.oversized += 1;
                        error!(error = %item, "transaction too large for any batch: not pushed");
                    }
                    messages.extend(planned.messages);
                }
                Err(e) => {
                    error!(error = %e, records = group.records.len(), "cannot plan; records will be retried");
                    failed.extend(group.records.iter().copied());
                }
            }
        }
        let (messages, outgoing): (Vec<BatchInfo>, Vec<OutgoingBatch>) =
            messages.into_iter().map(|m| (m.info, m.batch)).unzip();
        outcome.batches = messages.len();
        outcome.transactions_batched = messages.iter().map(|m| m.items).sum();

        // Send, and note which (record, endpoint) pairs went out.
        let report = self.queue.send_until(&outgoing, Some(deadline)).await;
        drop(outgoing);
        outcome.sqs_requests = report.requests;
        outcome.retried_entries = report.retried_entries;
        let mut sent_now: BTreeSet<(usize, EndpointId)> = BTreeSet::new();
        for (message, result) in messages.into_iter().zip(report.outcomes) {
            match result {
                Ok(()) => {
                    outcome.messages_sent += 1;
                    sent_now.extend(
                        message
                            .records
                            .iter()
                            .map(|&i| (i, message.endpoint_id.clone())),
                    );
                }
                Err(source) => {
                    outcome.failed_batches += 1;
                    let e = FanoutError::Send {
                        endpoint: message.endpoint_id.clone(),
                        message_id: message.message_id,
                        source,
                    };
                    warn!(error = %e, transactions = message.items, "batch not sent; its records will be retried");
                    failed.extend(message.records.iter().copied());
                }
            }
        }

        // Answer: the first record not fully handled, after remembering what
        // was sent from it on so the replay does not send it again.
        if let Some(&first_failed) = failed.first() {
            let id = records[first_failed].id.clone();
            let pairs = batches::progress_after(records, first_failed, &already_sent, &sent_now);
            let unchanged = first_failed == 0 && pairs == already_sent;
            if !unchanged {
                self.remember(&id, &pairs, &mut outcome).await;
            }
            outcome.first_failed = Some(id);
        }
        outcome
    }

    async fn remember(
        &self,
        first_failed: &str,
        pairs: &BTreeSet<SentPair>,
        outcome: &mut Outcome,
    ) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        match self.progress.save(first_failed, pairs, now).await {
            Ok(saved) => {
                outcome.progress_saved = saved.pairs;
                if saved.left_out > 0 {
                    warn!(
                        left_out = saved.left_out,
                        "fan-out progress too large; the replay may push some transactions twice"
                    );
                }
            }
            Err(source) => {
                outcome.progress_write_failed = true;
                let e = FanoutError::SaveProgress {
                    sequence: first_failed.to_owned(),
                    source,
                };
                error!(error = %e, pairs = pairs.len(), "the replay may push some transactions twice");
            }
        }
    }
}

fn record_metrics(outcome: &Outcome, duration: Duration) {
    let mut m = Metrics::for_function("fanout");
    m.count("Records", outcome.records)
        .count("Pushable", outcome.pushable)
        .count("Skipped", outcome.skipped)
        .count("Unreadable", outcome.unreadable)
        .count("Unowned", outcome.unowned)
        .count("AlreadySent", outcome.already_sent)
        .count("Batches", outcome.batches)
        .count("MessagesSent", outcome.messages_sent)
        .count("SqsRequests", outcome.sqs_requests)
        .count("RetriedEntries", outcome.retried_entries)
        .count("FailedBatches", outcome.failed_batches)
        .count("Oversized", outcome.oversized)
        .count("ConfigSafesRead", outcome.safes_read)
        .count("ConfigCustomersRead", outcome.customers_read)
        .count(
            "PartialFailures",
            usize::from(outcome.first_failed.is_some()),
        )
        .count(
            "ProgressWriteFailed",
            usize::from(outcome.progress_write_failed),
        )
        .millis("Duration", duration.as_millis());
    m.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The local runner serves the handler on a multi-threaded tokio
    /// runtime: its future must be `Send`.
    #[allow(dead_code)]
    fn handler_future_is_send(fanout: &'static Fanout, event: Event) {
        fn assert_send<F: std::future::Future + Send>(_: F) {}
        assert_send(fanout.handle(event));
    }
}
