use crate::batches::{self, Left};
use crate::config_cache::ConfigCache;
use crate::records::{self, Disposition, Record};
use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::delivery_queue::{
    DeliveryQueue, OutgoingBatch, RetryPolicy, SendMessageBatch, SqsTransport,
};
use platformsync_aws::env::{self, EnvError};
use platformsync_aws::fanout_plans::{Created, Found, MAX_PLAN_BYTES, Parked, Plan, PlanStore};
use platformsync_aws::metrics::Metrics;
use platformsync_aws::transactions::TransactionStore;
use platformsync_aws::{SdkConfig, StoreError};
use platformsync_domain::batch::BatchEntry;
use platformsync_domain::endpoint::CustomerId;
use std::collections::{BTreeSet, HashMap};
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
    /// Where bodies of records absent from a replayed event are read from
    /// (`TRANSACTIONS_TABLE`). Without it such a replay fails (transient).
    pub transactions_table: Option<String>,
    /// How long safe owners and endpoints are reused (`CONFIG_CACHE_SECONDS`,
    /// default 60): the bound on how stale a routing decision can be.
    pub config_cache_ttl: Duration,
    /// Time allowed when no Lambda deadline is known (`TIME_BUDGET_SECONDS`,
    /// default 50; keep it below the function timeout).
    pub time_budget: Duration,
    /// No AWS request starts closer than this to the deadline
    /// (`DEADLINE_MARGIN_SECONDS`, default 10): one request's worst case
    /// (every client's operation timeout is 8 s) plus the answer.
    pub deadline_margin: Duration,
    /// Attempts per message within one invocation, the first included
    /// (`SEND_ATTEMPTS`, default 5). Beyond them the batch is retried by
    /// Lambda, from the plan.
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
            transactions_table: None,
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
        settings.transactions_table = Some(env::required("TRANSACTIONS_TABLE")?);
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
    #[error("reading the plan for transaction {key}: {source}")]
    Lookup { key: String, source: StoreError },
    #[error("reading the owners of {safes} safes: {source}")]
    Owners { safes: usize, source: StoreError },
    #[error("reading the endpoints of customer {customer}: {source}")]
    Endpoints {
        customer: CustomerId,
        source: Arc<StoreError>,
    },
    #[error("writing the plan {key}: {source}")]
    WritePlan { key: String, source: StoreError },
    #[error("writing a pointer at {at} to its plan: {source}")]
    WritePointer { at: String, source: StoreError },
    #[error("parking {records} records: {source}")]
    Park { records: usize, source: StoreError },
    #[error("reading {keys} transactions of plan {plan}: {source}")]
    Rebuild {
        plan: String,
        keys: usize,
        source: StoreError,
    },
    #[error("{batches} batches not sent (transient; retried from the plan)")]
    NotSent { batches: usize },
    #[error("the invocation's deadline is near")]
    Deadline,
}

/// What one invocation did (also its metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub records: usize,
    pub pushable: usize,
    pub skipped: usize,
    /// Records that cannot be read as a stored transaction (parked).
    pub unreadable: usize,
    /// Pushable records of safes no customer owns: kept, not pushed.
    pub unowned: usize,
    /// Records whose safe names an invalid customer id (parked).
    pub invalid_owner: usize,
    /// Items too large for any message (parked).
    pub oversized: usize,
    /// Records and messages parked (written to the config table).
    pub parked: usize,
    pub plans_created: usize,
    pub plans_found: usize,
    pub pointers_written: usize,
    /// Messages of found plans that an earlier attempt recorded as sent.
    pub already_sent: usize,
    /// Messages in the plans this invocation made.
    pub batches: usize,
    pub transactions_batched: usize,
    /// Entries read back from the transactions table (records absent from
    /// the event).
    pub rebuilt: usize,
    pub messages_sent: usize,
    pub sqs_requests: usize,
    pub retried_entries: usize,
    pub failed_batches: usize,
    /// Safes and customers read from the config table (not from the cache).
    pub safes_read: usize,
    pub customers_read: usize,
    /// The identifier reported to Lambda: the first record not fully handled.
    pub first_failed: Option<String>,
    /// A plan, pointer or parked record could not be written (the batch is
    /// retried; counted for the alarm).
    pub plan_write_failed: bool,
    pub progress_saved: bool,
    pub progress_write_failed: bool,
}

/// The fan-out function: its clients (built once per container), its config
/// cache and its settings. `T` is the SQS boundary (real SQS outside tests).
#[derive(Debug)]
pub struct Fanout<T = SqsTransport> {
    config: ConfigCache,
    plans: PlanStore,
    transactions: Option<TransactionStore>,
    queue: DeliveryQueue<T>,
    settings: Settings,
}

/// One request never runs longer than this, so the deadline margin holds
/// (the SDK's own retries included), for SQS and DynamoDB alike.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

fn timeouts() -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .operation_timeout(OPERATION_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build()
}

impl Fanout<SqsTransport> {
    pub fn new(sdk: &SdkConfig, settings: Settings) -> Self {
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .timeout_config(timeouts())
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

/// Where a record's handling failed, and the error behind it.
struct Failure {
    record: usize,
    error: FanoutError,
}

impl<T: SendMessageBatch> Fanout<T> {
    /// The function with `transport` in place of the SQS client: the one
    /// seam tests use to inject send failures.
    pub fn with_transport(sdk: &SdkConfig, settings: Settings, transport: T) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .timeout_config(timeouts())
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
        self.handle_until(event, Instant::now() + self.settings.time_budget)
            .await
    }

    /// Handles one stream batch, starting no request near `deadline` (Lambda's).
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
                parked = outcome.parked,
                plans_created = outcome.plans_created,
                plans_found = outcome.plans_found,
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

    fn near(&self, deadline: Instant) -> bool {
        deadline.saturating_duration_since(Instant::now()) < self.settings.deadline_margin
    }

    fn now_unix() -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }

    async fn fan_out(&self, records: &[Record], deadline: Instant) -> Outcome {
        let mut outcome = Outcome {
            records: records.len(),
            ..Outcome::default()
        };
        let mut poison: Vec<Parked> = Vec::new();
        for record in records {
            match &record.disposition {
                Disposition::Push(_) => outcome.pushable += 1,
                Disposition::Skip(_) => outcome.skipped += 1,
                Disposition::Unreadable(p) => {
                    outcome.unreadable += 1;
                    error!(record = %record.id, reason = %p.reason, "poison stream record: parked, not pushed");
                    poison.push(Parked {
                        id: format!("SEQ#{}", record.id),
                        record: record.id.clone(),
                        reason: p.reason.clone(),
                        data: p.image.clone(),
                    });
                }
            }
        }
        let failure = self.walk(records, poison, deadline, &mut outcome).await;
        if let Some(Failure { record, error }) = failure {
            if matches!(
                error,
                FanoutError::WritePlan { .. }
                    | FanoutError::WritePointer { .. }
                    | FanoutError::Park { .. }
            ) {
                outcome.plan_write_failed = true;
            }
            let id = records[record].id.clone();
            warn!(record = %id, error = %error, "not fully handled; Lambda retries from this record");
            outcome.first_failed = Some(id);
        }
        outcome
    }

    /// Parks the poison, then walks the pushable records plan by plan. The
    /// first failure stops the walk: later plans would put an endpoint's
    /// later messages ahead of the failed ones.
    async fn walk(
        &self,
        records: &[Record],
        poison: Vec<Parked>,
        deadline: Instant,
        outcome: &mut Outcome,
    ) -> Option<Failure> {
        if !poison.is_empty() {
            if self.near(deadline) {
                return Some(Failure {
                    record: 0,
                    error: FanoutError::Deadline,
                });
            }
            if let Err(source) = self.plans.park(&poison, Self::now_unix()).await {
                return Some(Failure {
                    record: 0,
                    error: FanoutError::Park {
                        records: poison.len(),
                        source,
                    },
                });
            }
            outcome.parked += poison.len();
        }
        let pushable: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].pushable().is_some())
            .collect();
        let mut i = 0;
        while i < pushable.len() {
            let at = pushable[i];
            let key = batches::key_of(&records[at]).unwrap_or_default();
            if self.near(deadline) {
                return Some(Failure {
                    record: at,
                    error: FanoutError::Deadline,
                });
            }
            let found = match self.plans.lookup(key, Self::now_unix()).await {
                Ok(found) => found,
                Err(source) => {
                    return Some(Failure {
                        record: at,
                        error: FanoutError::Lookup {
                            key: key.to_owned(),
                            source,
                        },
                    });
                }
            };
            let found = match found {
                Some(found) => {
                    outcome.plans_found += 1;
                    found
                }
                None => match self
                    .new_plan(records, &pushable[i..], deadline, outcome)
                    .await
                {
                    Ok(found) => found,
                    Err(failure) => return Some(failure),
                },
            };
            let covered = match self
                .coverage(records, &pushable[i..], &found.plan, deadline, outcome)
                .await
            {
                Ok(covered) => covered,
                Err(failure) => return Some(failure),
            };
            if let Err(failure) = self
                .execute(records, &pushable[i..i + covered], found, deadline, outcome)
                .await
            {
                return Some(failure);
            }
            i += covered;
        }
        None
    }

    /// How many of `pushable` (from the first) `plan` covers, in order; and,
    /// when the event ends before the plan does, a pointer at the plan's
    /// next key, written before anything is sent, so the replay or the
    /// bisected half that starts there finds the plan.
    async fn coverage(
        &self,
        records: &[Record],
        pushable: &[usize],
        plan: &Plan,
        deadline: Instant,
        outcome: &mut Outcome,
    ) -> Result<usize, Failure> {
        let first_key = batches::key_of(&records[pushable[0]]).unwrap_or_default();
        let Some(start) = plan.position(first_key) else {
            // A pointer to a plan without the key: corrupt, never written so.
            return Err(Failure {
                record: pushable[0],
                error: FanoutError::Lookup {
                    key: first_key.to_owned(),
                    source: StoreError::Malformed {
                        resource: self.settings.config_table.clone(),
                        key: plan.key.clone(),
                        message: "the plan found does not hold the key".into(),
                    },
                },
            });
        };
        let covered = pushable
            .iter()
            .zip(&plan.keys[start..])
            .take_while(|(r, k)| batches::key_of(&records[**r]) == Some(k.as_str()))
            .count();
        let next = start + covered;
        if covered == pushable.len() && next < plan.keys.len() {
            if self.near(deadline) {
                return Err(Failure {
                    record: pushable[0],
                    error: FanoutError::Deadline,
                });
            }
            let at = &plan.keys[next];
            if let Err(source) = self.plans.point(at, &plan.key, Self::now_unix()).await {
                return Err(Failure {
                    record: pushable[0],
                    error: FanoutError::WritePointer {
                        at: at.clone(),
                        source,
                    },
                });
            }
            outcome.pointers_written += 1;
        }
        Ok(covered)
    }

    /// Plans `pushable` (from the first record, as many as fit one plan
    /// item), parks what it leaves out, writes the plan. Nothing is sent
    /// before the plan is stored.
    async fn new_plan(
        &self,
        records: &[Record],
        pushable: &[usize],
        deadline: Instant,
        outcome: &mut Outcome,
    ) -> Result<Found, Failure> {
        let first = pushable[0];
        let fail = |error| Failure {
            record: first,
            error,
        };
        let serials: BTreeSet<&str> = pushable
            .iter()
            .filter_map(|&r| records[r].pushable().map(|p| p.serial.as_str()))
            .collect();
        if self.near(deadline) {
            return Err(fail(FanoutError::Deadline));
        }
        let (routing, reads) = self.config.lookup(&serials).await.map_err(|source| {
            fail(FanoutError::Owners {
                safes: serials.len(),
                source,
            })
        })?;
        outcome.safes_read += reads.safes_read;
        outcome.customers_read += reads.customers_read;
        let created_at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        // Halve until the plan item fits (many endpoints with small batches).
        let mut take = pushable.len();
        let planned = loop {
            let planned = batches::make_plan(records, &pushable[..take], &routing, &created_at)
                .map_err(fail)?;
            let fits = planned
                .plan
                .as_ref()
                .is_none_or(|p| p.encoded_bytes() <= MAX_PLAN_BYTES);
            if fits || take == 1 {
                break planned;
            }
            take = take.div_ceil(2);
        };
        let Some(plan) = planned.plan else {
            return Err(fail(FanoutError::Deadline));
        };
        if !planned.unowned.is_empty() {
            let safes: BTreeSet<&str> = planned
                .unowned
                .iter()
                .filter_map(|&i| records[i].pushable().map(|p| p.serial.as_str()))
                .collect();
            warn!(transactions = planned.unowned.len(), safes = ?safes, "transactions of safes no customer owns: kept, not pushed");
        }
        if !planned.parked.is_empty() {
            let parked: Vec<Parked> = planned
                .parked
                .iter()
                .map(|Left { record, reason }| {
                    let r = &records[*record];
                    error!(record = %r.id, reason = %reason, "transaction parked, not pushed");
                    let data = r
                        .pushable()
                        .map(|p| serde_json::to_string(&p.entry).unwrap_or_default())
                        .unwrap_or_default();
                    Parked {
                        id: batches::key_of(r).unwrap_or(&r.id).to_owned(),
                        record: r.id.clone(),
                        reason: reason.clone(),
                        data,
                    }
                })
                .collect();
            if self.near(deadline) {
                return Err(fail(FanoutError::Deadline));
            }
            self.plans
                .park(&parked, Self::now_unix())
                .await
                .map_err(|source| {
                    fail(FanoutError::Park {
                        records: parked.len(),
                        source,
                    })
                })?;
            outcome.parked += parked.len();
        }
        if self.near(deadline) {
            return Err(fail(FanoutError::Deadline));
        }
        match self.plans.create(&plan, Self::now_unix()).await {
            Ok(Created::Written) => {
                outcome.plans_created += 1;
                outcome.unowned += planned.unowned.len();
                outcome.invalid_owner += planned.invalid_owner;
                outcome.oversized += planned.oversized;
                outcome.batches += plan.messages.len();
                outcome.transactions_batched += planned.transactions_batched;
                Ok(Found {
                    sent: Vec::new(),
                    plan,
                    via_pointer: false,
                })
            }
            Ok(Created::Existing(found)) => {
                outcome.plans_found += 1;
                Ok(*found)
            }
            Err(source) => Err(fail(FanoutError::WritePlan {
                key: plan.key.clone(),
                source,
            })),
        }
    }

    /// Sends the plan's messages not yet recorded as sent, in plan order per
    /// endpoint. `covered`: the event's records the plan covers.
    async fn execute(
        &self,
        records: &[Record],
        covered: &[usize],
        found: Found,
        deadline: Instant,
        outcome: &mut Outcome,
    ) -> Result<(), Failure> {
        let Found { plan, sent, .. } = found;
        let first = covered[0];
        let mut sent: Vec<bool> = (0..plan.messages.len())
            .map(|i| sent.get(i).copied().unwrap_or(false))
            .collect();
        outcome.already_sent += sent.iter().filter(|s| **s).count();
        let todo: Vec<usize> = (0..plan.messages.len()).filter(|&i| !sent[i]).collect();
        if todo.is_empty() {
            return Ok(());
        }

        // Bodies: from the event, else from the transactions table.
        let present: HashMap<&str, usize> = covered
            .iter()
            .filter_map(|&r| batches::key_of(&records[r]).map(|k| (k, r)))
            .collect();
        let mut absent: BTreeSet<&str> = BTreeSet::new();
        for &m in &todo {
            for &item in &plan.messages[m].items {
                let key = plan.keys[item as usize].as_str();
                if !present.contains_key(key) {
                    absent.insert(key);
                }
            }
        }
        let mut rebuilt: HashMap<String, BatchEntry> = HashMap::new();
        let mut unavailable: HashMap<String, String> = HashMap::new();
        if !absent.is_empty() {
            if self.near(deadline) {
                return Err(Failure {
                    record: first,
                    error: FanoutError::Deadline,
                });
            }
            match self.rebuild(&plan, &absent).await {
                Ok((entries, missing)) => {
                    outcome.rebuilt += entries.len();
                    rebuilt = entries;
                    unavailable = missing;
                }
                Err(error) => {
                    return Err(Failure {
                        record: first,
                        error,
                    });
                }
            }
        }
        let mut entries: HashMap<&str, &BatchEntry> = HashMap::new();
        for (key, &r) in &present {
            if let Some(p) = records[r].pushable() {
                entries.insert(key, &p.entry);
            }
        }
        for (key, entry) in &rebuilt {
            entries.insert(key.as_str(), entry);
        }

        let mut outgoing: Vec<OutgoingBatch> = Vec::with_capacity(todo.len());
        let mut sendable: Vec<usize> = Vec::with_capacity(todo.len());
        let mut to_park: Vec<(usize, String)> = Vec::new();
        for &m in &todo {
            match batches::render(&plan, m, &entries) {
                Ok(batch) => {
                    outgoing.push(batch);
                    sendable.push(m);
                }
                Err(why) => {
                    let detail = plan.messages[m]
                        .items
                        .iter()
                        .filter_map(|&i| unavailable.get(&plan.keys[i as usize]))
                        .next()
                        .cloned()
                        .unwrap_or(why);
                    to_park.push((m, detail));
                }
            }
        }
        let report = self.queue.send_until(&outgoing, Some(deadline)).await;
        drop(outgoing);
        outcome.sqs_requests += report.requests;
        outcome.retried_entries += report.retried_entries;
        for (&m, result) in sendable.iter().zip(report.outcomes) {
            match result {
                Ok(()) => {
                    outcome.messages_sent += 1;
                    sent[m] = true;
                }
                Err(e) if e.is_permanent() => to_park.push((m, e.to_string())),
                Err(e) => {
                    outcome.failed_batches += 1;
                    let (endpoint, _) = &plan.endpoints[plan.messages[m].endpoint];
                    warn!(
                        endpoint = %endpoint,
                        message_id = %plan.messages[m].message_id,
                        error = %e,
                        "batch not sent; the stream batch will be retried from the plan"
                    );
                }
            }
        }
        if !to_park.is_empty() && !self.near(deadline) {
            let parked: Vec<Parked> = to_park
                .iter()
                .map(|(m, reason)| {
                    let message = &plan.messages[*m];
                    error!(message_id = %message.message_id, reason = %reason, "message refused for good: parked with its keys");
                    let keys: Vec<&str> = message
                        .items
                        .iter()
                        .map(|&i| plan.keys[i as usize].as_str())
                        .collect();
                    Parked {
                        id: format!("MSG#{}", message.message_id),
                        record: format!("{}#{}", plan.key, m),
                        reason: reason.clone(),
                        data: serde_json::json!({
                            "Endpoint": plan.endpoints[message.endpoint].0.as_str(),
                            "MessageId": message.message_id,
                            "Keys": keys,
                        })
                        .to_string(),
                    }
                })
                .collect();
            match self.plans.park(&parked, Self::now_unix()).await {
                Ok(()) => {
                    outcome.parked += parked.len();
                    for (m, _) in &to_park {
                        sent[*m] = true;
                    }
                }
                Err(source) => {
                    outcome.plan_write_failed = true;
                    error!(error = %source, "could not park refused messages; retried with the batch");
                }
            }
        }
        if sent.iter().all(|s| *s) {
            return Ok(());
        }

        // The first record of the event in a message still unsent: records
        // before it are done. Unsent messages holding only records absent
        // from the event belong to a later part of a bisected batch, which
        // finds this plan through its pointer.
        let failed_at = (0..plan.messages.len())
            .filter(|&m| !sent[m])
            .flat_map(|m| plan.messages[m].items.iter())
            .filter_map(|&i| present.get(plan.keys[i as usize].as_str()).copied())
            .min();
        let Some(failed_at) = failed_at else {
            return Ok(());
        };
        let now = Self::now_unix();
        if !self.near(deadline) {
            match self.plans.save_sent(&plan.key, &sent, now).await {
                Ok(()) => outcome.progress_saved = true,
                Err(e) => {
                    outcome.progress_write_failed = true;
                    warn!(error = %e, "sent-progress not saved: the replay re-sends (same MessageIds)");
                }
            }
        }
        // The replay starts at `failed_at`: make it find the plan. If that
        // cannot be written, the whole event is replayed instead (it starts
        // where this one found the plan).
        let key = batches::key_of(&records[failed_at]).unwrap_or_default();
        if failed_at != first {
            if self.near(deadline) {
                return Err(Failure {
                    record: first,
                    error: FanoutError::Deadline,
                });
            }
            if let Err(source) = self.plans.point(key, &plan.key, now).await {
                return Err(Failure {
                    record: first,
                    error: FanoutError::WritePointer {
                        at: key.to_owned(),
                        source,
                    },
                });
            }
            outcome.pointers_written += 1;
        }
        Err(Failure {
            record: failed_at,
            error: FanoutError::NotSent {
                batches: sent.iter().filter(|s| !**s).count(),
            },
        })
    }

    /// Entries of `keys` from the transactions table; keys missing or
    /// unusable there are returned with the reason (their messages are
    /// parked: nothing else can ever send them).
    async fn rebuild(
        &self,
        plan: &Plan,
        keys: &BTreeSet<&str>,
    ) -> Result<(HashMap<String, BatchEntry>, HashMap<String, String>), FanoutError> {
        let Some(store) = &self.transactions else {
            return Err(FanoutError::Rebuild {
                plan: plan.key.clone(),
                keys: keys.len(),
                source: StoreError::Malformed {
                    resource: "TRANSACTIONS_TABLE".into(),
                    key: plan.key.clone(),
                    message: "not configured".into(),
                },
            });
        };
        let wanted: Vec<(String, String)> = keys
            .iter()
            .filter_map(|k| k.split_once('|'))
            .map(|(s, k)| (s.to_owned(), k.to_owned()))
            .collect();
        let mut stored = store
            .get_many(&wanted)
            .await
            .map_err(|source| FanoutError::Rebuild {
                plan: plan.key.clone(),
                keys: keys.len(),
                source,
            })?;
        let mut entries = HashMap::new();
        let mut missing = HashMap::new();
        for key in keys {
            let found = key
                .split_once('|')
                .and_then(|(s, k)| stored.remove(&(s.to_owned(), k.to_owned())));
            match found.map(records::pushable) {
                Some(Ok(p)) => {
                    entries.insert((*key).to_owned(), p.entry);
                }
                Some(Err(reason)) => {
                    missing.insert((*key).to_owned(), reason);
                }
                None => {
                    missing.insert(
                        (*key).to_owned(),
                        format!("transaction {key} is not in the transactions table"),
                    );
                }
            }
        }
        Ok((entries, missing))
    }
}

fn record_metrics(outcome: &Outcome, duration: Duration) {
    let mut m = Metrics::for_function("fanout");
    m.count("Records", outcome.records)
        .count("Pushable", outcome.pushable)
        .count("Skipped", outcome.skipped)
        .count("Unreadable", outcome.unreadable)
        .count("Unowned", outcome.unowned)
        .count("InvalidOwner", outcome.invalid_owner)
        .count("Oversized", outcome.oversized)
        .count("Parked", outcome.parked)
        .count("PlansCreated", outcome.plans_created)
        .count("PlansFound", outcome.plans_found)
        .count("AlreadySent", outcome.already_sent)
        .count("Batches", outcome.batches)
        .count("Rebuilt", outcome.rebuilt)
        .count("MessagesSent", outcome.messages_sent)
        .count("SqsRequests", outcome.sqs_requests)
        .count("RetriedEntries", outcome.retried_entries)
        .count("FailedBatches", outcome.failed_batches)
        .count("ConfigSafesRead", outcome.safes_read)
        .count("ConfigCustomersRead", outcome.customers_read)
        .count(
            "PartialFailures",
            usize::from(outcome.first_failed.is_some()),
        )
        .count("PlanWriteFailed", usize::from(outcome.plan_write_failed))
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
