//! The push handler: one SQS event in, one partial batch response out.
//!
//! Reads top to bottom as the flow of one batch: parse → ledger → settings
//! and key → render → POST → delivered / failed (retry or expire).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::env::EnvError;
use platformsync_aws::health::{Claim, HealthStore, Incident};
use platformsync_aws::ledger::{Delivery, Ledger, Recorded};
use platformsync_aws::metrics::Metrics;
use platformsync_aws::notifier::{Notification, NotificationKind, Notifier};
use platformsync_aws::redelivery::{DeadLetter, Redelivery};
use platformsync_aws::secrets::{MAX_TTL, SecretCache};
use platformsync_aws::{SdkConfig, StoreError};
use platformsync_delivery::retry::{AttemptState, Decision, on_failure, seed_for};
use platformsync_delivery::ssrf::check_url;
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchMessage};
use platformsync_domain::endpoint::{CustomerId, EndpointId, EndpointSettings};
use platformsync_domain::payload::{PayloadItems, RenderInput, render};
use platformsync_http::{ClientConfig, ClientError, EndpointClient, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{Instrument, error, info, info_span, warn};

use crate::settings::Settings;

/// Attempts per AWS call: the SDK's standard retry mode (backoff + jitter)
/// absorbs throttling before a call counts as failed.
const SDK_MAX_ATTEMPTS: u32 = 5;

/// Time kept after a POST's deadline for the ledger, health, queue and
/// notification calls that follow it.
const AFTER_ATTEMPT: Duration = Duration::from_secs(20);

/// [`Push::handle`]'s budget beyond one attempt (the local runner and tests
/// have no Lambda deadline).
const DEFAULT_MARGIN: Duration = Duration::from_secs(30);

/// When something of ours fails (DynamoDB, Secrets Manager throttled), the
/// batch comes back this soon, without counting an attempt.
const OUR_RETRY: i32 = 30;

/// Response body text kept in the last error.
const SNIPPET_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("cannot build the endpoint HTTPS client: {0}")]
    Client(#[from] ClientError),
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered 200; recorded in the ledger.
    Delivered,
    /// The ledger already had it: acknowledged without posting.
    AlreadyDelivered,
    /// Moved to the dead-letter queue (`expired` or `malformed`).
    DeadLettered { reason: &'static str },
    /// The attempt failed; the message comes back after this delay.
    Retrying { delay: Duration },
    /// Something of ours failed before an attempt was made; back in 30 s.
    Deferred,
    /// Not processed (an earlier batch of its endpoint failed, or too little
    /// time was left): visible again at once, order kept by the FIFO group.
    HandedBack,
}

impl Outcome {
    /// Acknowledged outcomes are deleted from the queue by Lambda.
    pub fn is_acknowledged(&self) -> bool {
        matches!(
            self,
            Outcome::Delivered | Outcome::AlreadyDelivered | Outcome::DeadLettered { .. }
        )
    }

    fn metric(&self) -> &'static str {
        match self {
            Outcome::Delivered => "Delivered",
            Outcome::AlreadyDelivered => "AlreadyDelivered",
            Outcome::DeadLettered { reason: "expired" } => "Expired",
            Outcome::DeadLettered { .. } => "Malformed",
            Outcome::Retrying { .. } => "FailedAttempts",
            Outcome::Deferred => "Deferred",
            Outcome::HandedBack => "HandedBack",
        }
    }
}

/// Why an attempt did not deliver.
enum AttemptFailure {
    /// The endpoint (or its configuration) failed: counts as an attempt.
    Counted {
        error: String,
        retry_after: Option<Duration>,
    },
    /// A store of ours failed before the POST: not the customer's fault.
    Ours(StoreError),
}

impl AttemptFailure {
    fn counted(error: impl Into<String>) -> Self {
        AttemptFailure::Counted {
            error: error.into(),
            retry_after: None,
        }
    }

    /// A transient store error is ours; a permanent one (a deleted secret)
    /// is a configuration problem of the endpoint, retried on the schedule.
    fn from_store(e: StoreError) -> Self {
        if e.is_retryable() {
            AttemptFailure::Ours(e)
        } else {
            AttemptFailure::counted(e.to_string())
        }
    }
}

/// One received message, with the batch it carries split for rendering.
struct Received<'a> {
    message: &'a SqsMessage,
    receipt: &'a str,
    body: &'a str,
    batch: BatchMessage,
    message_id: String,
    keys: Vec<String>,
    payloads: Vec<Box<RawValue>>,
}

type EndpointKey = (CustomerId, EndpointId);

/// The push function: clients built once per container.
pub struct Push {
    http: EndpointClient,
    config: ConfigStore,
    ledger: Ledger,
    health: HealthStore,
    secrets: SecretCache,
    notifier: Notifier,
    queue: Redelivery,
    endpoints: Mutex<HashMap<EndpointKey, (Arc<EndpointSettings>, Instant)>>,
    settings: Settings,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// "24 h", "10 s": the window as notifications state it.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// Removes `secret` from text the endpoint sent back (a receiver that echoes
/// the body would echo a key placed in the body). The HTTP client already
/// scrubs header and query values.
fn scrub(text: &str, secret: &SecretString) -> String {
    let secret = secret.expose_secret();
    if secret.len() >= 4 && text.contains(secret) {
        text.replace(secret, "[redacted]")
    } else {
        text.to_owned()
    }
}

impl Push {
    pub fn new(sdk: &SdkConfig, settings: Settings) -> Result<Self, InitError> {
        let http = EndpointClient::new(ClientConfig {
            attempt_timeout: settings.attempt_timeout,
            extra_ca_pem: settings.extra_ca_pem.clone(),
            allow: settings.allow.clone(),
            ..ClientConfig::default()
        })?;
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        Ok(Self {
            http,
            config: ConfigStore::new(dynamodb.clone(), &settings.config_table),
            ledger: Ledger::new(dynamodb.clone(), &settings.ledger_table),
            health: HealthStore::new(dynamodb, &settings.config_table),
            secrets: SecretCache::new(aws_sdk_secretsmanager::Client::new(sdk), MAX_TTL),
            notifier: Notifier::new(aws_sdk_sns::Client::new(sdk), &settings.topic_arn),
            queue: Redelivery::new(
                aws_sdk_sqs::Client::new(sdk),
                &settings.queue_url,
                &settings.dead_letter_url,
            ),
            endpoints: Mutex::new(HashMap::new()),
            settings,
        })
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let settings = Settings::from_env()?;
        let sdk = platformsync_aws::sdk_config_with_retries(SDK_MAX_ATTEMPTS).await;
        Self::new(&sdk, settings)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Handles one event with time for one full attempt per endpoint (no
    /// Lambda deadline: tests, the local runner).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let deadline = Instant::now() + self.settings.attempt_timeout + DEFAULT_MARGIN;
        self.handle_before(event, deadline).await
    }

    /// Handles one event; a batch is only started while a whole attempt and
    /// its bookkeeping fit before `deadline` (the Lambda deadline).
    ///
    /// Messages are grouped by FIFO group (= endpoint). Groups run
    /// concurrently (one slow endpoint does not hold up the others); within a
    /// group, in order, and the first batch not acknowledged stops the group:
    /// it and everything after it are reported as failed.
    pub async fn handle_before(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let started = Instant::now();
        let groups = group_in_order(&event.records);
        let outcomes: Vec<(&SqsMessage, Outcome)> =
            join_all(groups.into_iter().map(|g| self.deliver_group(g, deadline)))
                .await
                .into_iter()
                .flatten()
                .collect();

        let mut response = SqsBatchResponse::default();
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for (message, outcome) in &outcomes {
            *counts.entry(outcome.metric()).or_default() += 1;
            if !outcome.is_acknowledged() {
                response.add_failure(message.message_id.clone().unwrap_or_default());
            }
        }
        let mut metrics = Metrics::for_function("push");
        let mut names: Vec<_> = counts.into_iter().collect();
        names.sort();
        for (name, count) in names {
            metrics.count(name, count);
        }
        metrics.millis("DurationMs", started.elapsed().as_millis());
        metrics.flush();
        response
    }

    /// One endpoint's messages, in order, stopping at the first that is not
    /// acknowledged.
    async fn deliver_group<'a>(
        &self,
        messages: Vec<&'a SqsMessage>,
        deadline: Instant,
    ) -> Vec<(&'a SqsMessage, Outcome)> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            let time_left = deadline.saturating_duration_since(Instant::now());
            let outcome = if time_left < self.settings.attempt_timeout + AFTER_ATTEMPT {
                info!(
                    left_ms = time_left.as_millis() as u64,
                    "too little time left for a whole attempt"
                );
                Outcome::HandedBack
            } else {
                self.deliver(message, deadline).await
            };
            let stop = !outcome.is_acknowledged();
            let handed_back = outcome == Outcome::HandedBack;
            outcomes.push((*message, outcome));
            if stop {
                // FIFO: the rest of this endpoint's batches must not overtake
                // the one that stopped. Make them visible at once; the group
                // stays locked by the stopped one while it is invisible.
                let start = if handed_back { i } else { i + 1 };
                let rest = &messages[start..];
                self.hand_back(rest).await;
                outcomes.extend(
                    rest[usize::from(handed_back)..]
                        .iter()
                        .map(|m| (*m, Outcome::HandedBack)),
                );
                break;
            }
        }
        outcomes
    }

    async fn hand_back(&self, messages: &[&SqsMessage]) {
        let receipts: Vec<&str> = messages
            .iter()
            .filter_map(|m| m.receipt_handle.as_deref())
            .collect();
        if receipts.is_empty() {
            return;
        }
        if let Err(e) = self.queue.release(&receipts).await {
            // They come back after the queue's visibility timeout instead.
            warn!(error = %e, count = receipts.len(), "could not hand back unprocessed batches");
        }
    }

    /// One message: parse, then deliver the batch under its correlation id.
    async fn deliver(&self, message: &SqsMessage, deadline: Instant) -> Outcome {
        let sqs_id = message.message_id.as_deref().unwrap_or_default();
        let Some(receipt) = message.receipt_handle.as_deref() else {
            error!(sqs_message_id = sqs_id, "message without a receipt handle");
            return Outcome::Deferred;
        };
        let body = message.body.as_deref().unwrap_or_default();
        let mut batch = match parse_batch(body) {
            Ok(batch) => batch,
            Err(reason) => {
                return self
                    .dead_letter_malformed(message, receipt, body, &reason)
                    .await;
            }
        };
        let message_id = batch.message_id.to_string();
        let span = info_span!(
            "batch",
            message_id = %message_id,
            endpoint = %batch.endpoint_id,
            customer = %batch.customer_id,
        );
        // Moved, not cloned: a batch of 1000 is ~0.4 MB, once is enough.
        let (keys, payloads) = std::mem::take(&mut batch.items)
            .into_iter()
            .map(|e| (e.key, e.payload))
            .unzip();
        let received = Received {
            message,
            receipt,
            body,
            batch,
            message_id,
            keys,
            payloads,
        };
        self.deliver_batch(received, deadline)
            .instrument(span)
            .await
    }

    async fn deliver_batch(&self, r: Received<'_>, deadline: Instant) -> Outcome {
        let endpoint_id = r.batch.endpoint_id.as_str();

        // 1. Delivered before (a redelivery after a crash)? Then no POST.
        let lookup = match self.ledger.lookup(endpoint_id, &r.message_id).await {
            Ok(lookup) => lookup,
            Err(e) => return self.defer(r.receipt, "ledger lookup", &e).await,
        };
        if lookup.delivered {
            info!("already in the ledger: acknowledged without posting");
            return Outcome::AlreadyDelivered;
        }

        // 2. The attempt's place in the schedule. The window starts at the
        //    first attempt, not at enqueue; a late retry credits our downtime.
        let started_at = now();
        let had_state = lookup.attempts.is_some();
        let mut state = match lookup.attempts {
            Some(mut state) => {
                let credited = state.record_attempt(started_at);
                if !credited.is_zero() {
                    warn!(
                        credited_s = credited.as_secs(),
                        "retry started late: the delay was ours, credited to the customer's window"
                    );
                }
                state
            }
            None => AttemptState::first(started_at),
        };

        // 3. Settings, key, render, POST.
        let timer = Instant::now();
        match self.attempt(&r, deadline).await {
            Ok(status) => {
                info!(
                    status,
                    attempt = state.attempts,
                    transactions = r.keys.len(),
                    duration_ms = timer.elapsed().as_millis() as u64,
                    "delivered"
                );
                self.delivered(&r, &state, had_state).await
            }
            Err(AttemptFailure::Ours(e)) => self.defer(r.receipt, "before posting", &e).await,
            Err(AttemptFailure::Counted { error, retry_after }) => {
                warn!(
                    attempt = state.attempts,
                    error = %error,
                    duration_ms = timer.elapsed().as_millis() as u64,
                    "attempt failed"
                );
                state.record_error(&error);
                self.failed(&r, state, retry_after).await
            }
        }
    }

    /// Loads what the POST needs and posts; on 401/403 fetches the key again
    /// and posts once more (a key rotated since we cached it) before the
    /// attempt counts as failed. `Ok(status)` only for 200.
    async fn attempt(&self, r: &Received<'_>, deadline: Instant) -> Result<u16, AttemptFailure> {
        let endpoint = self
            .endpoint(&r.batch.customer_id, &r.batch.endpoint_id)
            .await?;
        if !endpoint.enabled {
            return Err(AttemptFailure::counted("endpoint is disabled"));
        }
        let secret = self
            .secrets
            .get(&endpoint.api_key_secret)
            .await
            .map_err(AttemptFailure::from_store)?;
        let response = self.post(r, &endpoint, &secret).await?;
        let response = if matches!(response.status, 401 | 403) {
            let time_left = deadline.saturating_duration_since(Instant::now());
            if time_left < self.settings.attempt_timeout + AFTER_ATTEMPT {
                // Refreshing now still helps the next attempt.
                let _ = self.secrets.refresh(&endpoint.api_key_secret).await;
                response
            } else {
                info!(
                    status = response.status,
                    "endpoint refused the key: fetching it again"
                );
                let secret = self
                    .secrets
                    .refresh(&endpoint.api_key_secret)
                    .await
                    .map_err(AttemptFailure::from_store)?;
                self.post(r, &endpoint, &secret).await?
            }
        } else {
            response
        };
        if response.is_delivered() {
            return Ok(response.status);
        }
        let snippet: String = scrub(&response.body_snippet, &secret)
            .chars()
            .take(SNIPPET_CHARS)
            .collect();
        let snippet = snippet.trim();
        Err(AttemptFailure::Counted {
            error: if snippet.is_empty() {
                format!("HTTP {}", response.status)
            } else {
                format!("HTTP {}: {snippet}", response.status)
            },
            retry_after: response.retry_after,
        })
    }

    /// Renders the batch for the endpoint (version, metadata, key placement)
    /// and posts it once.
    async fn post(
        &self,
        r: &Received<'_>,
        endpoint: &EndpointSettings,
        secret: &SecretString,
    ) -> Result<Response, AttemptFailure> {
        let config = |e: &dyn std::fmt::Display| {
            AttemptFailure::counted(format!("endpoint settings unusable: {e}"))
        };
        let version = endpoint.payload_version().map_err(|e| config(&e))?;
        let key = endpoint.api_key(secret.clone()).map_err(|e| config(&e))?;
        let rendered = render(
            version,
            &RenderInput {
                message_id: r.batch.message_id,
                correlation_id: None,
                endpoint_metadata: &endpoint.metadata,
                items: PayloadItems::Raw {
                    kind: r.batch.kind,
                    items: &r.payloads,
                },
                api_key: &key,
            },
        );
        // Exposed only for the duration of the call; the client marks
        // headers sensitive and scrubs these values from its errors.
        let headers: Vec<(String, String)> = rendered
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect();
        let query: Vec<(String, String)> = rendered
            .query
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
            .collect();
        self.http
            .post(&endpoint.url, &query, &headers, rendered.body)
            .await
            .map_err(|e| AttemptFailure::counted(scrub(&e.to_string(), secret)))
    }

    /// Delivered: ledger (once), retry state gone, health, acknowledge.
    async fn delivered(&self, r: &Received<'_>, state: &AttemptState, had_state: bool) -> Outcome {
        let at = now();
        let delivery = Delivery {
            endpoint_id: r.batch.endpoint_id.as_str(),
            message_id: &r.message_id,
            customer_id: r.batch.customer_id.as_str(),
            kind: r.batch.kind.wire_name(),
            transaction_keys: &r.keys,
            attempts: state.attempts,
            first_attempt_at: state.first_attempt_at,
            delivered_at: at,
        };
        // Independent writes: one round trip instead of three.
        let endpoint_id = r.batch.endpoint_id.as_str();
        let clear = async {
            if had_state {
                self.ledger.clear_attempts(endpoint_id, &r.message_id).await
            } else {
                Ok(())
            }
        };
        let (recorded, cleared, health) = tokio::join!(
            self.ledger.record_delivery(&delivery),
            clear,
            self.health
                .delivered(endpoint_id, r.batch.customer_id.as_str(), at),
        );
        match recorded {
            Ok(Recorded::New) => {}
            Ok(Recorded::AlreadyThere) => {
                warn!("another invocation recorded this batch first: it was posted twice")
            }
            // Still acknowledged: it was delivered. Should SQS redeliver it,
            // the receiver drops the repeat by its MessageId.
            Err(e) => error!(error = %e, "delivered, but the ledger write failed"),
        }
        if let Err(e) = cleared {
            warn!(error = %e, "could not clear the retry state (it expires by TTL)");
        }
        match health {
            Ok(Some(incident)) => {
                self.notify(NotificationKind::Recovered, r, state, &incident)
                    .await;
            }
            Ok(None) => {}
            Err(e) => error!(error = %e, "could not update the endpoint's health"),
        }
        Outcome::Delivered
    }

    /// Failed attempt: the schedule decides between a retry and expiry.
    async fn failed(
        &self,
        r: &Received<'_>,
        mut state: AttemptState,
        retry_after: Option<Duration>,
    ) -> Outcome {
        let endpoint_id = r.batch.endpoint_id.as_str();
        let customer_id = r.batch.customer_id.as_str();
        let error = state.last_error.clone().unwrap_or_default();
        let failed_at = now();
        let seed = seed_for(&r.message_id, state.attempts);
        match on_failure(
            &mut state,
            failed_at,
            retry_after,
            self.settings.retry_window,
            seed,
        ) {
            Decision::RetryIn(delay) => {
                if let Err(e) = self
                    .ledger
                    .save_attempts(endpoint_id, &r.message_id, &state)
                    .await
                {
                    // The next attempt starts a fresh window (or the old one,
                    // if an older state is stored): never lost, maybe longer.
                    error!(error = %e, "could not save the retry state");
                }
                let seconds = Decision::RetryIn(delay)
                    .visibility_timeout_secs()
                    .unwrap_or(OUR_RETRY);
                if let Err(e) = self.queue.retry_in(r.receipt, seconds).await {
                    error!(error = %e, "could not schedule the retry; it comes back after the queue's visibility timeout");
                }
                info!(
                    attempt = state.attempts,
                    retry_in_s = seconds,
                    deadline = %rfc3339(state.deadline(self.settings.retry_window)),
                    "retry scheduled"
                );
                match self
                    .health
                    .failed(endpoint_id, customer_id, failed_at, &error)
                    .await
                {
                    Ok(Some(incident)) => {
                        if !self
                            .notify(NotificationKind::Failing, r, &state, &incident)
                            .await
                        {
                            self.release(endpoint_id, &incident, Claim::Failing).await;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => error!(error = %e, "could not update the endpoint's health"),
                }
                Outcome::Retrying { delay }
            }
            Decision::Expire => {
                let first_attempt_at = rfc3339(state.first_attempt_at);
                let letter = DeadLetter {
                    body: r.body,
                    group_id: group_of(r.message).unwrap_or(endpoint_id),
                    deduplication_id: &r.message_id,
                    reason: "expired",
                    last_error: Some(&error),
                    attempts: state.attempts,
                    first_attempt_at: Some(&first_attempt_at),
                    endpoint_id: Some(endpoint_id),
                    customer_id: Some(customer_id),
                };
                if let Err(e) = self.queue.dead_letter(&letter).await {
                    // Not acknowledged: it comes back and is tried (and, if
                    // it fails, expired) again.
                    if let Err(e) = self
                        .ledger
                        .save_attempts(endpoint_id, &r.message_id, &state)
                        .await
                    {
                        error!(error = %e, "could not save the retry state");
                    }
                    return self.defer(r.receipt, "moving the expired batch", &e).await;
                }
                warn!(
                    attempts = state.attempts,
                    first_attempt_at = %first_attempt_at,
                    "expired: moved to the dead-letter queue"
                );
                if let Err(e) = self.ledger.clear_attempts(endpoint_id, &r.message_id).await {
                    warn!(error = %e, "could not clear the retry state (it expires by TTL)");
                }
                match self
                    .health
                    .expired(endpoint_id, customer_id, failed_at, &error)
                    .await
                {
                    Ok(Some(incident)) => {
                        if !self
                            .notify(NotificationKind::Expired, r, &state, &incident)
                            .await
                        {
                            self.release(endpoint_id, &incident, Claim::Expired).await;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => error!(error = %e, "could not update the endpoint's health"),
                }
                Outcome::DeadLettered { reason: "expired" }
            }
        }
    }

    /// Something of ours failed: back soon, no attempt counted.
    async fn defer(&self, receipt: &str, during: &str, e: &StoreError) -> Outcome {
        error!(error = %e, during, retry_in_s = OUR_RETRY, "deferred: our side failed");
        if let Err(e) = self.queue.retry_in(receipt, OUR_RETRY).await {
            error!(error = %e, "could not shorten the visibility timeout");
        }
        Outcome::Deferred
    }

    /// A body that is not a batch this version can read: kept in the
    /// dead-letter queue with the reason, acknowledged (never a poison loop).
    async fn dead_letter_malformed(
        &self,
        message: &SqsMessage,
        receipt: &str,
        body: &str,
        reason: &str,
    ) -> Outcome {
        let sqs_id = message.message_id.as_deref().unwrap_or("unknown");
        let letter = DeadLetter {
            body: if body.is_empty() { "(empty)" } else { body },
            group_id: group_of(message).unwrap_or("malformed"),
            deduplication_id: sqs_id,
            reason: "malformed",
            last_error: Some(reason),
            attempts: 0,
            first_attempt_at: None,
            endpoint_id: None,
            customer_id: None,
        };
        match self.queue.dead_letter(&letter).await {
            Ok(()) => {
                error!(
                    sqs_message_id = sqs_id,
                    reason, "malformed batch moved to the dead-letter queue"
                );
                Outcome::DeadLettered {
                    reason: "malformed",
                }
            }
            Err(e) => self.defer(receipt, "moving a malformed batch", &e).await,
        }
    }

    /// The endpoint's settings, cached for `config_cache`.
    async fn endpoint(
        &self,
        customer: &CustomerId,
        endpoint: &EndpointId,
    ) -> Result<Arc<EndpointSettings>, AttemptFailure> {
        let key = (customer.clone(), endpoint.clone());
        if let Ok(cache) = self.endpoints.lock()
            && let Some((settings, at)) = cache.get(&key)
            && at.elapsed() < self.settings.config_cache
        {
            return Ok(settings.clone());
        }
        let settings = self
            .config
            .endpoint(customer, endpoint)
            .await
            .map_err(AttemptFailure::from_store)?
            .ok_or_else(|| AttemptFailure::counted("endpoint is not configured (deleted?)"))?;
        let settings = Arc::new(settings);
        if let Ok(mut cache) = self.endpoints.lock() {
            cache.insert(key, (settings.clone(), Instant::now()));
        }
        Ok(settings)
    }

    /// Publishes a notification; `false` if it could not be sent.
    async fn notify(
        &self,
        kind: NotificationKind,
        r: &Received<'_>,
        state: &AttemptState,
        incident: &Incident,
    ) -> bool {
        let customer = match self.config.customer(&r.batch.customer_id).await {
            Ok(customer) => customer,
            Err(e) => {
                // Support still hears about it; the recipients list is missing.
                warn!(error = %e, "could not read the customer for the notification");
                None
            }
        };
        let endpoint = self
            .endpoint(&r.batch.customer_id, &r.batch.endpoint_id)
            .await
            .ok()
            .and_then(|e| check_url(&e.url).ok())
            .map(|u| u.redacted())
            .unwrap_or_else(|| "(settings unavailable)".to_owned());
        let notification = Notification {
            kind,
            customer_id: r.batch.customer_id.to_string(),
            customer_name: customer.as_ref().map(|c| c.name.clone()),
            endpoint_id: r.batch.endpoint_id.to_string(),
            endpoint,
            recipients: customer
                .map(|c| c.notification_recipients)
                .unwrap_or_default(),
            incident_id: incident.id.clone(),
            failing_since: incident.failing_since.clone(),
            message_id: r.message_id.clone(),
            last_error: state
                .last_error
                .clone()
                .filter(|_| kind != NotificationKind::Recovered),
            attempts: state.attempts,
            window: human(self.settings.retry_window),
            kept_in: Some(
                self.queue
                    .dead_letter_url()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
        };
        match self.notifier.publish(&notification).await {
            Ok(()) => {
                info!(kind = kind.as_str(), incident = %incident.id, "notification sent");
                true
            }
            Err(e) => {
                error!(kind = kind.as_str(), error = %e, "notification failed");
                false
            }
        }
    }

    async fn release(&self, endpoint_id: &str, incident: &Incident, claim: Claim) {
        if let Err(e) = self.health.release(endpoint_id, incident, claim).await {
            error!(error = %e, "could not release the notification claim");
        }
    }
}

/// The message's FIFO group (`MessageGroupId` attribute).
fn group_of(message: &SqsMessage) -> Option<&str> {
    message
        .attributes
        .get("MessageGroupId")
        .map(String::as_str)
        .filter(|g| !g.is_empty())
}

/// Messages grouped by FIFO group, groups in order of first appearance,
/// messages in event order. A message without a group is its own group.
fn group_in_order(records: &[SqsMessage]) -> Vec<Vec<&SqsMessage>> {
    let mut groups: Vec<Vec<&SqsMessage>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for message in records {
        match group_of(message) {
            Some(group) => match index.get(group) {
                Some(&i) => groups[i].push(message),
                None => {
                    index.insert(group, groups.len());
                    groups.push(vec![message]);
                }
            },
            None => groups.push(vec![message]),
        }
    }
    groups
}

/// The batch in an SQS body, or why it is not one.
pub fn parse_batch(body: &str) -> Result<BatchMessage, String> {
    let batch: BatchMessage =
        serde_json::from_str(body).map_err(|e| format!("not a batch message: {e}"))?;
    if batch.version != BATCH_MESSAGE_VERSION {
        return Err(format!(
            "batch message version {} is not supported (this function reads {BATCH_MESSAGE_VERSION})",
            batch.version
        ));
    }
    if batch.items.is_empty() {
        return Err("batch has no transactions".to_owned());
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, group: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        if let Some(g) = group {
            m.attributes.insert("MessageGroupId".into(), g.into());
        }
        m
    }

    #[test]
    fn groups_keep_event_order() {
        let records = vec![
            msg("a1", Some("a")),
            msg("b1", Some("b")),
            msg("a2", Some("a")),
            msg("x", None),
            msg("b2", Some("b")),
        ];
        let ids: Vec<Vec<&str>> = group_in_order(&records)
            .iter()
            .map(|g| g.iter().map(|m| m.message_id.as_deref().unwrap()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["a1", "a2"], vec!["b1", "b2"], vec!["x"]]);
    }

    #[test]
    fn malformed_bodies_say_why() {
        assert!(parse_batch("").unwrap_err().contains("not a batch"));
        assert!(
            parse_batch("{\"Version\":1}")
                .unwrap_err()
                .contains("not a batch")
        );
        let body = serde_json::json!({
            "Version": 9, "MessageId": uuid::Uuid::nil(), "EndpointId": "ep-1",
            "CustomerId": "acme", "Kind": "Transactions", "CreatedAt": "x", "Items": []
        })
        .to_string();
        assert!(parse_batch(&body).unwrap_err().contains("version 9"));
    }

    #[test]
    fn scrub_removes_an_echoed_key() {
        let secret = SecretString::from("tok-123456".to_owned());
        assert_eq!(scrub("bad key tok-123456", &secret), "bad key [redacted]");
    }

    #[test]
    fn windows_read_naturally() {
        assert_eq!(human(Duration::from_secs(86_400)), "24 h");
        assert_eq!(human(Duration::from_secs(600)), "10 min");
        assert_eq!(human(Duration::from_secs(10)), "10 s");
    }
}
