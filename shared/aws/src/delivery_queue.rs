//! The FIFO delivery queue, as the fan-out writes to it: whole batches, ten
//! messages and at most 1 MiB per `SendMessageBatch`, every per-entry failure
//! retried or reported.
//!
//! - **Group and dedup id** come with each [`OutgoingBatch`]: the fan-out
//!   passes the endpoint id (one FIFO group per endpoint) and the planner's
//!   deterministic dedup id, so a replayed stream batch that plans the same
//!   batch is dropped by SQS (5-minute window).
//! - **Packing**: each request takes, in order, the pending batches that fit
//!   (≤ 10 entries, ≤ 1 MiB of bodies). A batch that does not fit blocks the
//!   later batches of its own group for that request, so one group's batches
//!   never enter SQS out of order on the happy path.
//! - **Per-entry failures**: SQS answers 200 with a `Failed` list. Entries it
//!   blames on the sender (`SenderFault`: too large, invalid) are final;
//!   others are retried in the next request, with exponential backoff and
//!   jitter, up to [`RetryPolicy::max_attempts`]. While a batch is being
//!   retried, the later batches of its group wait; only those that were in
//!   the same request as its failure may already be ahead of it (the spec
//!   allows order to differ after a failure).
//! - **A final failure blocks its group**: later batches of the same group
//!   are not sent (reported [`SendFailure::GroupBlocked`]), so an endpoint's
//!   batches are never delivered around a hole that a retry would fill later.
//! - **Deadline**: no request is started once the caller's deadline is
//!   closer than the policy's margin; what is left is reported
//!   [`SendFailure::Deadline`], never silently dropped.
//!
//! The one SQS call sits behind [`SendMessageBatch`], so tests can put a
//! failing double at exactly that boundary while everything else runs for real.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tracing::warn;

/// Entries per `SendMessageBatch` (an SQS limit).
pub const MAX_ENTRIES_PER_REQUEST: usize = 10;

/// Sum of message bodies per `SendMessageBatch`, and the largest message
/// (SQS limits, both 1 MiB).
pub const MAX_REQUEST_BYTES: usize = 1_048_576;

/// One message to send: a planned batch for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingBatch {
    /// `MessageGroupId`: the endpoint id.
    pub group_id: String,
    /// `MessageDeduplicationId`: derived from the endpoint and the keys.
    pub dedup_id: String,
    /// The message body (a serialised `BatchMessage`).
    pub body: String,
}

/// Why a batch was not sent. Carries no message body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    #[error("SQS refused the message as invalid ({code}): {message}")]
    Rejected { code: String, message: String },
    #[error("still failing after {attempts} attempts ({code}): {message}")]
    Exhausted {
        attempts: u32,
        code: String,
        message: String,
    },
    #[error("message body is {bytes} bytes, over the {MAX_REQUEST_BYTES}-byte SQS limit")]
    TooLarge { bytes: usize },
    #[error("not sent: an earlier batch of group {group} failed and this one must not overtake it")]
    GroupBlocked { group: String },
    #[error("not sent: the invocation's deadline is near")]
    Deadline,
}

/// The result of [`DeliveryQueue::send`]: one outcome per batch, in input
/// order, and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    pub outcomes: Vec<Result<(), SendFailure>>,
    /// `SendMessageBatch` calls made (the billed unit, with 64 KB chunks).
    pub requests: usize,
    /// Entries that were retried after a per-entry or request failure.
    pub retried_entries: usize,
}

impl SendReport {
    pub fn sent(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_ok()).count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.sent()
    }
}

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per entry, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time, with ±25 % jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// No request starts when the deadline is closer than this: room for the
    /// request itself (the SDK's own timeouts) and for reporting the rest.
    pub deadline_margin: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            deadline_margin: Duration::from_secs(10),
        }
    }
}

/// One entry of a request, as the transport sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestEntry<'a> {
    /// Unique within the request (`b<index>`).
    pub id: &'a str,
    pub batch: &'a OutgoingBatch,
}

/// A per-entry failure in a `SendMessageBatch` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub id: String,
    /// SQS's `SenderFault`: the entry itself is wrong; retrying cannot help.
    pub sender_fault: bool,
    pub code: String,
    pub message: String,
}

/// A `SendMessageBatch` answer: ids sent and ids failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReply {
    pub successful: Vec<String>,
    pub failed: Vec<EntryError>,
}

/// The whole request failed (after the SDK's own retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SendMessageBatch failed ({code}): {message}")]
pub struct RequestError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

/// The one SQS call the fan-out makes.
pub trait SendMessageBatch: Send + Sync {
    fn send_message_batch(
        &self,
        entries: &[RequestEntry<'_>],
    ) -> impl Future<Output = Result<BatchReply, RequestError>> + Send;
}

/// [`SendMessageBatch`] over the AWS SDK, to one queue.
#[derive(Debug, Clone)]
pub struct SqsTransport {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsTransport {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

impl SendMessageBatch for SqsTransport {
    async fn send_message_batch(
        &self,
        entries: &[RequestEntry<'_>],
    ) -> Result<BatchReply, RequestError> {
        let mut request = Vec::with_capacity(entries.len());
        for e in entries {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(e.id)
                .message_body(&e.batch.body)
                .message_group_id(&e.batch.group_id)
                .message_deduplication_id(&e.batch.dedup_id)
                .build()
                .map_err(|err| RequestError {
                    code: "InvalidEntry".into(),
                    message: err.to_string(),
                    retryable: false,
                })?;
            request.push(entry);
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(request))
            .send()
            .await
            .map_err(request_error)?;
        Ok(BatchReply {
            successful: out.successful().iter().map(|s| s.id().to_owned()).collect(),
            failed: out
                .failed()
                .iter()
                .map(|f| EntryError {
                    id: f.id().to_owned(),
                    sender_fault: f.sender_fault(),
                    code: f.code().to_owned(),
                    message: f.message().unwrap_or_default().to_owned(),
                })
                .collect(),
        })
    }
}

/// Request-level errors the SDK already retried. Still worth another round
/// unless SQS says the request itself is wrong (no queue, no permission, bad
/// parameters): those fail every entry at once.
fn request_error<E, R>(err: SdkError<E, R>) -> RequestError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().unwrap_or("RequestFailed").to_owned();
    let retryable = match &err {
        SdkError::ServiceError(_) => !matches!(
            code.as_str(),
            "AWS.SimpleQueueService.NonExistentQueue"
                | "QueueDoesNotExist"
                | "AccessDenied"
                | "AccessDeniedException"
                | "InvalidParameterValue"
                | "InvalidParameterValueException"
                | "MissingParameter"
                | "BatchRequestTooLong"
                | "AWS.SimpleQueueService.BatchRequestTooLong"
                | "TooManyEntriesInBatchRequest"
                | "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
                | "BatchEntryIdsNotDistinct"
                | "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
                | "InvalidBatchEntryId"
                | "AWS.SimpleQueueService.InvalidBatchEntryId"
                | "UnsupportedOperation"
                | "AWS.SimpleQueueService.UnsupportedOperation"
        ),
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    RequestError {
        code,
        message,
        retryable,
    }
}

/// Sends batches to the delivery queue.
#[derive(Debug, Clone)]
pub struct DeliveryQueue<T = SqsTransport> {
    transport: T,
    policy: RetryPolicy,
}

impl DeliveryQueue<SqsTransport> {
    /// The queue at `queue_url`, with the default policy.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self::with_transport(SqsTransport::new(client, queue_url), RetryPolicy::default())
    }
}

impl<T: SendMessageBatch> DeliveryQueue<T> {
    pub fn with_transport(transport: T, policy: RetryPolicy) -> Self {
        Self { transport, policy }
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Sends every batch, with no deadline.
    pub async fn send(&self, batches: &[OutgoingBatch]) -> SendReport {
        self.send_until(batches, None).await
    }

    /// Sends every batch; starts no request within the policy's margin of
    /// `deadline`. One outcome per batch, in input order.
    pub async fn send_until(
        &self,
        batches: &[OutgoingBatch],
        deadline: Option<Instant>,
    ) -> SendReport {
        let mut outcomes: Vec<Option<Result<(), SendFailure>>> = vec![None; batches.len()];
        let mut attempts = vec![0u32; batches.len()];
        let mut pending: BTreeSet<usize> = BTreeSet::new();
        for (i, batch) in batches.iter().enumerate() {
            if batch.body.len() > MAX_REQUEST_BYTES {
                outcomes[i] = Some(Err(SendFailure::TooLarge {
                    bytes: batch.body.len(),
                }));
            } else {
                pending.insert(i);
            }
        }
        // Groups with a final failure: their later batches are held back.
        let mut blocked_groups: HashSet<&str> = outcomes
            .iter()
            .zip(batches)
            .filter(|(o, _)| matches!(o, Some(Err(_))))
            .map(|(_, b)| b.group_id.as_str())
            .collect();
        let mut report = SendReport::default();
        let mut retry_round = 0u32;

        loop {
            block_groups(batches, &mut pending, &mut outcomes, &blocked_groups);
            if pending.is_empty() {
                break;
            }
            if deadline.is_some_and(|d| {
                d.saturating_duration_since(Instant::now()) < self.policy.deadline_margin
            }) {
                for i in std::mem::take(&mut pending) {
                    outcomes[i] = Some(Err(SendFailure::Deadline));
                }
                break;
            }
            let chosen = pack(batches, &pending, &attempts);
            let ids: Vec<String> = chosen.iter().map(|i| format!("b{i}")).collect();
            let entries: Vec<RequestEntry<'_>> = chosen
                .iter()
                .zip(&ids)
                .map(|(&i, id)| RequestEntry {
                    id,
                    batch: &batches[i],
                })
                .collect();
            report.requests += 1;
            for &i in &chosen {
                attempts[i] += 1;
            }
            let by_id: HashMap<&str, usize> = ids
                .iter()
                .map(String::as_str)
                .zip(chosen.iter().copied())
                .collect();
            let mut retry = Vec::new();
            match self.transport.send_message_batch(&entries).await {
                Ok(reply) => {
                    let ok: HashSet<&str> = reply.successful.iter().map(String::as_str).collect();
                    let failed: HashMap<&str, &EntryError> =
                        reply.failed.iter().map(|f| (f.id.as_str(), f)).collect();
                    for (id, &i) in &by_id {
                        if let Some(f) = failed.get(id) {
                            if f.sender_fault {
                                pending.remove(&i);
                                blocked_groups.insert(batches[i].group_id.as_str());
                                outcomes[i] = Some(Err(SendFailure::Rejected {
                                    code: f.code.clone(),
                                    message: f.message.clone(),
                                }));
                            } else {
                                retry.push((i, f.code.clone(), f.message.clone()));
                            }
                        } else if ok.contains(id) {
                            pending.remove(&i);
                            outcomes[i] = Some(Ok(()));
                        } else {
                            retry.push((
                                i,
                                "MissingFromReply".into(),
                                "entry neither sent nor failed in the reply".into(),
                            ));
                        }
                    }
                }
                Err(e) if e.retryable => {
                    warn!(code = %e.code, error = %e.message, entries = chosen.len(), "SendMessageBatch failed; retrying its entries");
                    retry.extend(
                        chosen
                            .iter()
                            .map(|&i| (i, e.code.clone(), e.message.clone())),
                    );
                }
                Err(e) => {
                    for &i in &chosen {
                        pending.remove(&i);
                        blocked_groups.insert(batches[i].group_id.as_str());
                        outcomes[i] = Some(Err(SendFailure::Rejected {
                            code: e.code.clone(),
                            message: e.message.clone(),
                        }));
                    }
                }
            }
            let mut retrying = false;
            for (i, code, message) in retry {
                if attempts[i] >= self.policy.max_attempts {
                    pending.remove(&i);
                    blocked_groups.insert(batches[i].group_id.as_str());
                    outcomes[i] = Some(Err(SendFailure::Exhausted {
                        attempts: attempts[i],
                        code,
                        message,
                    }));
                } else {
                    report.retried_entries += 1;
                    retrying = true;
                }
            }
            if !retrying {
                continue;
            }
            retry_round += 1;
            let wait = self.backoff(retry_round);
            if deadline.is_some_and(|d| {
                d.saturating_duration_since(Instant::now()) < self.policy.deadline_margin + wait
            }) {
                continue; // the deadline check at the top reports the rest
            }
            tokio::time::sleep(wait).await;
        }

        report.outcomes = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(SendFailure::Deadline)))
            .collect();
        report
    }

    /// Exponential backoff with ±25 % jitter (clock-derived: no RNG needed
    /// to spread a handful of retries).
    fn backoff(&self, round: u32) -> Duration {
        let exp = self
            .policy
            .base_backoff
            .saturating_mul(2u32.saturating_pow(round.saturating_sub(1).min(16)))
            .min(self.policy.max_backoff);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
        exp.mul_f64(factor)
    }
}

/// Fails the pending batches of groups that had a final failure.
fn block_groups(
    batches: &[OutgoingBatch],
    pending: &mut BTreeSet<usize>,
    outcomes: &mut [Option<Result<(), SendFailure>>],
    blocked: &HashSet<&str>,
) {
    if blocked.is_empty() {
        return;
    }
    pending.retain(|&i| {
        let group = batches[i].group_id.as_str();
        if blocked.contains(group) {
            outcomes[i] = Some(Err(SendFailure::GroupBlocked {
                group: group.to_owned(),
            }));
            false
        } else {
            true
        }
    });
}

/// The next request: pending batches in order that fit (≤ 10, ≤ 1 MiB). A
/// batch that does not fit holds back the rest of its group, so a group's
/// batches enter the queue in order; so does a batch being retried, so a
/// failing batch is not overtaken again and again. Never empty when
/// `pending` is not: the first pending batch always fits an empty request.
fn pack(batches: &[OutgoingBatch], pending: &BTreeSet<usize>, attempts: &[u32]) -> Vec<usize> {
    let mut chosen = Vec::with_capacity(MAX_ENTRIES_PER_REQUEST);
    let mut bytes = 0usize;
    let mut held_back: HashSet<&str> = HashSet::new();
    for &i in pending {
        let batch = &batches[i];
        if held_back.contains(batch.group_id.as_str()) {
            continue;
        }
        if bytes + batch.body.len() <= MAX_REQUEST_BYTES {
            bytes += batch.body.len();
            chosen.push(i);
            if attempts.get(i).is_some_and(|&n| n > 0) {
                held_back.insert(&batch.group_id);
            }
            if chosen.len() == MAX_ENTRIES_PER_REQUEST {
                break;
            }
        } else {
            held_back.insert(&batch.group_id);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn batch(group: &str, n: usize, bytes: usize) -> OutgoingBatch {
        OutgoingBatch {
            group_id: group.into(),
            dedup_id: format!("{group}-{n}"),
            body: "x".repeat(bytes),
        }
    }

    /// Records requests; fails entries per a rule (on their dedup id and attempt).
    struct Scripted {
        requests: Mutex<Vec<Vec<String>>>,
        #[allow(clippy::type_complexity)]
        rule: Box<dyn Fn(&OutgoingBatch, usize) -> Option<EntryError> + Send + Sync>,
        seen: Mutex<HashMap<String, usize>>,
    }

    impl Scripted {
        fn new(
            rule: impl Fn(&OutgoingBatch, usize) -> Option<EntryError> + Send + Sync + 'static,
        ) -> Self {
            Self {
                requests: Mutex::default(),
                rule: Box::new(rule),
                seen: Mutex::default(),
            }
        }
        fn requests(&self) -> Vec<Vec<String>> {
            self.requests.lock().unwrap().clone()
        }
    }

    impl SendMessageBatch for Scripted {
        async fn send_message_batch(
            &self,
            entries: &[RequestEntry<'_>],
        ) -> Result<BatchReply, RequestError> {
            assert!(entries.len() <= MAX_ENTRIES_PER_REQUEST);
            assert!(entries.iter().map(|e| e.batch.body.len()).sum::<usize>() <= MAX_REQUEST_BYTES);
            self.requests
                .lock()
                .unwrap()
                .push(entries.iter().map(|e| e.batch.dedup_id.clone()).collect());
            let mut reply = BatchReply::default();
            for e in entries {
                let attempt = {
                    let mut seen = self.seen.lock().unwrap();
                    let n = seen.entry(e.batch.dedup_id.clone()).or_default();
                    *n += 1;
                    *n
                };
                match (self.rule)(e.batch, attempt) {
                    Some(mut err) => {
                        err.id = e.id.to_owned();
                        reply.failed.push(err);
                    }
                    None => reply.successful.push(e.id.to_owned()),
                }
            }
            Ok(reply)
        }
    }

    fn transient() -> EntryError {
        EntryError {
            id: String::new(),
            sender_fault: false,
            code: "InternalError".into(),
            message: "try again".into(),
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            deadline_margin: Duration::from_millis(0),
        }
    }

    #[tokio::test]
    async fn packs_ten_entries_and_one_mebibyte_per_request() {
        let t = Scripted::new(|_, _| None);
        let q = DeliveryQueue::with_transport(t, fast());
        let mut batches: Vec<_> = (0..25).map(|n| batch("a", n, 10)).collect();
        // Three 400 KB messages of another group: two per request at most.
        batches.extend((0..3).map(|n| batch("big", n, 400_000)));
        let report = q.send(&batches).await;
        assert_eq!(report.sent(), 28);
        let requests = q.transport().requests();
        assert!(requests.iter().all(|r| r.len() <= 10));
        assert_eq!(report.requests, requests.len());
        assert_eq!(report.requests, 4, "{requests:?}");
    }

    #[tokio::test]
    async fn transient_entry_failures_are_retried_and_nothing_is_lost() {
        // Every third entry fails on its first attempt.
        let t = Scripted::new(|b, attempt| {
            let n: usize = b.dedup_id.rsplit('-').next().unwrap().parse().unwrap();
            (n % 3 == 2 && attempt == 1).then(transient)
        });
        let q = DeliveryQueue::with_transport(t, fast());
        let batches: Vec<_> = (0..30).map(|n| batch("a", n, 10)).collect();
        let report = q.send(&batches).await;
        assert_eq!(report.failed(), 0, "{report:?}");
        assert_eq!(report.retried_entries, 10);
        let sent: Vec<String> = q.transport().requests().concat();
        assert_eq!(sent.len(), 40);
    }

    #[tokio::test]
    async fn a_final_failure_blocks_the_rest_of_its_group_only() {
        let t = Scripted::new(|b, _| (b.dedup_id == "a-1").then(transient));
        let q = DeliveryQueue::with_transport(t, fast());
        let mut batches = vec![
            batch("a", 0, 10),
            batch("a", 1, 10),
            batch("b", 0, 10),
            batch("a", 2, 10),
        ];
        // Request 1 holds the first ten; a-2.. succeed there (overtaking is
        // allowed after a failure). The retries of a-1 travel alone for
        // group "a", and once it is given up, the later "a" batches are not
        // sent.
        batches.extend((3..13).map(|n| batch("a", n, 10)));
        let report = q.send(&batches).await;
        assert_eq!(report.outcomes[0], Ok(()));
        assert!(matches!(
            report.outcomes[1],
            Err(SendFailure::Exhausted { attempts: 3, .. })
        ));
        assert_eq!(report.outcomes[2], Ok(()));
        assert_eq!(report.outcomes[3..10], vec![Ok(()); 7]);
        let requests = q.transport().requests();
        assert_eq!(requests[1], vec!["a-1".to_owned()], "{requests:?}");
        assert!(
            report.outcomes[10..]
                .iter()
                .all(|o| matches!(o, Err(SendFailure::GroupBlocked { .. }))),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn sender_faults_are_final_and_oversized_bodies_are_never_sent() {
        let t = Scripted::new(|b, _| {
            (b.group_id == "bad").then(|| EntryError {
                sender_fault: true,
                code: "InvalidParameterValue".into(),
                ..transient()
            })
        });
        let q = DeliveryQueue::with_transport(t, fast());
        let batches = vec![
            batch("bad", 0, 10),
            batch("ok", 0, 10),
            batch("huge", 0, MAX_REQUEST_BYTES + 1),
        ];
        let report = q.send(&batches).await;
        assert!(matches!(
            report.outcomes[0],
            Err(SendFailure::Rejected { .. })
        ));
        assert_eq!(report.outcomes[1], Ok(()));
        assert!(matches!(
            report.outcomes[2],
            Err(SendFailure::TooLarge { .. })
        ));
        assert_eq!(report.requests, 1);
    }

    #[tokio::test]
    async fn nothing_starts_past_the_deadline() {
        let t = Scripted::new(|_, _| None);
        let q = DeliveryQueue::with_transport(
            t,
            RetryPolicy {
                deadline_margin: Duration::from_secs(5),
                ..fast()
            },
        );
        let batches = vec![batch("a", 0, 10)];
        let report = q
            .send_until(&batches, Some(Instant::now() + Duration::from_secs(1)))
            .await;
        assert_eq!(report.outcomes, vec![Err(SendFailure::Deadline)]);
        assert_eq!(report.requests, 0);
    }

    #[test]
    fn packing_keeps_each_group_in_order() {
        let batches = vec![
            batch("a", 0, 600_000),
            batch("a", 1, 600_000),
            batch("b", 0, 10),
            batch("a", 2, 10),
        ];
        let pending: BTreeSet<usize> = (0..4).collect();
        // a-1 does not fit after a-0, so a-2 must wait too; b-0 fills in.
        assert_eq!(pack(&batches, &pending, &[0; 4]), vec![0, 2]);
        // A batch being retried holds back the rest of its group.
        assert_eq!(
            pack(&batches[2..], &BTreeSet::from([0, 1]), &[1, 0]),
            vec![0, 1]
        );
        assert_eq!(
            pack(&batches[1..], &BTreeSet::from([0, 2]), &[1, 0, 0]),
            vec![0]
        );
    }
}
