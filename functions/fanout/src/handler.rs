//! The Lambda edge of the fan-out: its clients (built once per container),
//! turning a stream event into records, handing them to the walk
//! ([`crate::walk`]) and answering Lambda with the record to retry from.

use crate::config_cache::ConfigCache;
use crate::decoding::{self, Record};
use crate::settings::{InitError, Settings};
use crate::tally::Tally;
use crate::walk::Walk;
use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use platformsync_aws::SdkConfig;
use platformsync_aws::config::{Function, Reader};
use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::delivery_queue::{DeliveryQueue, SendMessageBatch, SqsTransport};
use platformsync_aws::fanout_plans::PlanStore;
use platformsync_aws::lambda;
use platformsync_aws::transactions::TransactionStore;
use std::time::Instant;
use tracing::{Instrument, info, info_span};

/// The fan-out function: its clients, its config cache and its settings.
/// `T` is the SQS boundary (real SQS outside tests).
#[derive(Debug)]
pub struct Fanout<T = SqsTransport> {
    config: ConfigCache,
    plans: PlanStore,
    transactions: Option<TransactionStore>,
    queue: DeliveryQueue<T>,
    settings: Settings,
}

impl Fanout<SqsTransport> {
    pub fn new(sdk: &SdkConfig, settings: Settings) -> Self {
        // One request never runs longer than the operation timeout, so the
        // deadline margin holds (the SDK's own retries included), for SQS and
        // DynamoDB alike.
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .timeout_config(settings.timeouts())
                .build(),
        );
        let transport = SqsTransport::new(sqs, &settings.delivery_queue_url);
        Self::with_transport(sdk, settings, transport)
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let reader = Reader::from_env(Function::Fanout);
        let settings = Settings::load(&reader)?;
        let sdk = platformsync_aws::sdk_config_for(&settings.calls).await;
        Ok(Self::new(&sdk, settings))
    }
}

impl<T: SendMessageBatch> Fanout<T> {
    /// The function with `transport` in place of the SQS client: the seam
    /// the wire tests use to inject send failures.
    pub fn with_transport(sdk: &SdkConfig, settings: Settings, transport: T) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .timeout_config(settings.timeouts())
                .build(),
        );
        Self {
            config: ConfigCache::new(
                ConfigStore::new(dynamodb.clone(), &settings.config_table),
                settings.config_cache_ttl,
            ),
            plans: PlanStore::new(dynamodb.clone(), &settings.config_table),
            transactions: settings
                .transactions_table
                .as_ref()
                .map(|t| TransactionStore::new(dynamodb.clone(), t)),
            queue: DeliveryQueue::with_transport(transport, settings.retry_policy()),
            settings,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn plans(&self) -> &PlanStore {
        &self.plans
    }

    /// Handles one stream batch with the configured time budget (local
    /// runner, tests). Never fails: a failure is a partial batch response.
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let deadline = Instant::now() + self.settings.time_budget;
        self.handle_before(event, deadline).await
    }

    /// Handles one stream batch, starting no request near `deadline`
    /// (Lambda's); answers with the first record not fully handled.
    pub async fn handle_before(&self, event: Event, deadline: Instant) -> DynamoDbEventResponse {
        let tally = self.process(event, deadline).await;
        lambda::stream_response(tally.first_failed)
    }

    /// Fans out one stream batch; what happened, for the answer, metrics
    /// and benchmarks.
    pub async fn process(&self, event: Event, deadline: Instant) -> Tally {
        let records: Vec<Record> = event.records.into_iter().map(decoding::decode).collect();
        let Some(first) = records.first() else {
            return Tally::default();
        };
        // The first record's sequence number identifies the batch in logs:
        // a replay starts with the record the previous attempt reported.
        let span = info_span!("fanout", batch = %first.id, records = records.len());
        let walk = Walk {
            routing: &self.config,
            plans: &self.plans,
            parking: &self.plans,
            transactions: &self.transactions,
            queue: &self.queue,
            deadline,
            margin: self.settings.deadline_margin,
        };
        async {
            let started = Instant::now();
            let tally = walk.fan_out(&records).await;
            tally.record_metrics(started.elapsed());
            info!(
                pushable = tally.pushable,
                skipped = tally.skipped,
                unowned = tally.unowned,
                parked = tally.parked,
                plans_created = tally.plans_created,
                plans_found = tally.plans_found,
                already_sent = tally.already_sent,
                batches = tally.batches,
                sent = tally.messages_sent,
                sqs_requests = tally.sqs_requests,
                failed_batches = tally.failed_batches,
                first_failed = tally.first_failed.as_deref().unwrap_or(""),
                duration_ms = started.elapsed().as_millis() as u64,
                "stream batch fanned out"
            );
            tally
        }
        .instrument(span)
        .await
    }
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
