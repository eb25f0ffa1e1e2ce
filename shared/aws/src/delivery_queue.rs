//! The FIFO delivery queue, as the fan-out writes to it: whole batches, ten
//! messages and at most 1 MiB per `SendMessageBatch`, every per-entry failure
//! retried or reported.
//!
//! - **Group and dedup id** come with each [`OutgoingBatch`]: the fan-out
//!   passes the endpoint id (one FIFO group per endpoint) and the planner's
//!   deterministic dedup id, so a replayed stream batch that plans the same
//!   batch is dropped by SQS (5-minute window).
//! - **Order**: an endpoint's batches enter the queue in input order, even
//!   when SQS rejects an entry in the middle of a request: a request carries
//!   at most one entry per group (the group's head; ≤ 10 entries, ≤ 1 MiB),
//!   and a group's next batch is sent only after its head was accepted.
//! - **Per-entry failures**: SQS answers 200 with a `Failed` list. Entries it
//!   blames on the sender (`SenderFault`: too large, invalid) are final
//!   ([`SendFailure::is_permanent`]; the caller parks them) and the group
//!   goes on; others are retried with exponential backoff and jitter, up to
//!   [`RetryPolicy::max_attempts`], and while they are, their group waits.
//! - **A transient failure that outlasts the attempts blocks its group**:
//!   the group's later batches are not sent ([`SendFailure::GroupBlocked`]),
//!   so an endpoint's batches are never delivered around a hole.
//! - **A refused request** (no queue, AccessDenied: our configuration) stops
//!   the whole send ([`SendFailure::Unavailable`]); the caller retries later.
//! - **Deadline**: no request is started once the caller's deadline is
//!   closer than the policy's margin; what is left is reported
//!   [`SendFailure::Deadline`], never silently dropped.
//!
//! The one SQS call sits behind [`SendMessageBatch`], so tests can put a
//! failing double at exactly that boundary while everything else runs for real.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use platformsync_domain::endpoint::EndpointId;
use tracing::warn;

use crate::backoff::Backoff;

/// Entries per `SendMessageBatch` (an SQS limit).
pub const MAX_ENTRIES_PER_REQUEST: usize = 10;

/// Sum of message bodies per `SendMessageBatch`, and the largest message
/// (SQS limits, both 1 MiB).
pub const MAX_REQUEST_BYTES: usize = 1_048_576;

/// One message to send: a planned batch for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingBatch {
    /// `MessageGroupId`: the endpoint id.
    pub group_id: EndpointId,
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
    /// The request itself was refused (no queue, no permission): our
    /// configuration, transient from the pipeline's point of view.
    #[error("not sent: SendMessageBatch refused ({code}): {message}")]
    Unavailable { code: String, message: String },
}

impl SendFailure {
    /// The message itself can never be sent (SQS blames the entry, or it is
    /// too large): retrying is useless; every other failure is transient.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SendFailure::Rejected { .. } | SendFailure::TooLarge { .. }
        )
    }
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
    /// Wait before the first retry; doubled each time up to `max_backoff`,
    /// each with up to as much again of jitter ([`Backoff`]).
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
                .message_group_id(e.batch.group_id.as_str())
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
    ///
    /// A group's batches are sent in input order, each only after the one
    /// before it was accepted, and a request carries at most one entry per
    /// group: an entry failing in the middle of a request can never be
    /// overtaken by a later batch of its group.
    pub async fn send_until(
        &self,
        batches: &[OutgoingBatch],
        deadline: Option<Instant>,
    ) -> SendReport {
        let mut outcomes: Vec<Option<Result<(), SendFailure>>> = vec![None; batches.len()];
        let mut attempts = vec![0u32; batches.len()];
        // Per group, its batches in input order; groups in order of first use.
        let mut groups: Vec<(&str, VecDeque<usize>)> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (i, batch) in batches.iter().enumerate() {
            let g = *group_of.entry(batch.group_id.as_str()).or_insert_with(|| {
                groups.push((batch.group_id.as_str(), VecDeque::new()));
                groups.len() - 1
            });
            groups[g].1.push_back(i);
        }
        let mut report = SendReport::default();
        // Entries bound the rounds (each retry spends one of an entry's attempts).
        let mut delays =
            Backoff::exponential(self.policy.base_backoff, self.policy.max_backoff).delays();

        loop {
            // Permanent failures of a head (too large) are settled without
            // a request; the group goes on (the caller parks that batch).
            for (_, queue) in &mut groups {
                while let Some(&i) = queue.front() {
                    if batches[i].body.len() <= MAX_REQUEST_BYTES {
                        break;
                    }
                    outcomes[i] = Some(Err(SendFailure::TooLarge {
                        bytes: batches[i].body.len(),
                    }));
                    queue.pop_front();
                }
            }
            let mut heads: Vec<usize> = groups
                .iter()
                .filter_map(|(_, q)| q.front().copied())
                .collect();
            if heads.is_empty() {
                break;
            }
            heads.sort_unstable();
            if deadline.is_some_and(|d| {
                d.saturating_duration_since(Instant::now()) < self.policy.deadline_margin
            }) {
                break; // what is left is reported as Deadline below
            }
            let chosen = pack(batches, &heads);
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
            let mut done: Vec<(usize, Result<(), SendFailure>)> = Vec::new();
            let mut retry: Vec<(usize, String, String)> = Vec::new();
            match self.transport.send_message_batch(&entries).await {
                Ok(reply) => {
                    let ok: HashSet<&str> = reply.successful.iter().map(String::as_str).collect();
                    let failed: HashMap<&str, &EntryError> =
                        reply.failed.iter().map(|f| (f.id.as_str(), f)).collect();
                    for (id, &i) in ids.iter().zip(&chosen) {
                        if let Some(f) = failed.get(id.as_str()) {
                            if f.sender_fault {
                                done.push((
                                    i,
                                    Err(SendFailure::Rejected {
                                        code: f.code.clone(),
                                        message: f.message.clone(),
                                    }),
                                ));
                            } else {
                                retry.push((i, f.code.clone(), f.message.clone()));
                            }
                        } else if ok.contains(id.as_str()) {
                            done.push((i, Ok(())));
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
                    // No queue, no permission, a malformed request: our
                    // configuration, not the messages. Nothing more can be
                    // sent in this invocation; the caller retries later.
                    warn!(code = %e.code, error = %e.message, "SendMessageBatch refused; nothing more is sent now");
                    for (_, queue) in &mut groups {
                        for i in queue.drain(..) {
                            outcomes[i] = Some(Err(SendFailure::Unavailable {
                                code: e.code.clone(),
                                message: e.message.clone(),
                            }));
                        }
                    }
                    break;
                }
            }
            for (i, result) in done {
                outcomes[i] = Some(result);
                let g = group_of[batches[i].group_id.as_str()];
                groups[g].1.pop_front();
            }
            let mut retrying = false;
            for (i, code, message) in retry {
                if attempts[i] >= self.policy.max_attempts {
                    outcomes[i] = Some(Err(SendFailure::Exhausted {
                        attempts: attempts[i],
                        code,
                        message,
                    }));
                    let g = group_of[batches[i].group_id.as_str()];
                    let (group, queue) = &mut groups[g];
                    queue.pop_front();
                    // The rest of the group waits for this one.
                    for later in queue.drain(..) {
                        outcomes[later] = Some(Err(SendFailure::GroupBlocked {
                            group: (*group).to_owned(),
                        }));
                    }
                } else {
                    report.retried_entries += 1;
                    retrying = true;
                }
            }
            if !retrying {
                continue;
            }
            let wait = delays.next().unwrap_or(self.policy.max_backoff);
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
}

/// The next request: group heads in input order that fit (≤ 10 entries,
/// ≤ 1 MiB). One entry per group, so a failed entry can never be overtaken
/// by a later batch of its group in the same request. Never empty when
/// `heads` is not: the first head always fits an empty request.
fn pack(batches: &[OutgoingBatch], heads: &[usize]) -> Vec<usize> {
    let mut chosen = Vec::with_capacity(MAX_ENTRIES_PER_REQUEST);
    let mut bytes = 0usize;
    for &i in heads {
        let size = batches[i].body.len();
        if bytes + size <= MAX_REQUEST_BYTES {
            bytes += size;
            chosen.push(i);
            if chosen.len() == MAX_ENTRIES_PER_REQUEST {
                break;
            }
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
            group_id: EndpointId::parse(group).unwrap(),
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
    async fn packs_one_head_per_group_ten_entries_and_one_mebibyte_per_request() {
        let t = Scripted::new(|_, _| None);
        let q = DeliveryQueue::with_transport(t, fast());
        // Twelve groups of two small batches, and three 400 KB batches of
        // three more groups: at most two of those fit one request.
        let mut batches: Vec<_> = (0..24)
            .map(|n| batch(&format!("g{}", n % 12), n, 10))
            .collect();
        batches.extend((0..3).map(|n| batch(&format!("big{n}"), 0, 400_000)));
        let report = q.send(&batches).await;
        assert_eq!(report.sent(), 27);
        let requests = q.transport().requests();
        assert_eq!(report.requests, requests.len());
        for r in &requests {
            assert!(r.len() <= 10);
            let groups: HashSet<&str> = r.iter().map(|d| d.rsplit_once('-').unwrap().0).collect();
            assert_eq!(groups.len(), r.len(), "one entry per group: {r:?}");
        }
        // Each group's batches in input order.
        let sent: Vec<String> = requests.concat();
        for g in 0..12 {
            let mine: Vec<&String> = sent
                .iter()
                .filter(|d| d.starts_with(&format!("g{g}-")))
                .collect();
            assert_eq!(mine, [&format!("g{g}-{g}"), &format!("g{g}-{}", g + 12)]);
        }
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
        let batches: Vec<_> = (0..30)
            .map(|n| batch(&format!("g{}", n % 3), n, 10))
            .collect();
        let report = q.send(&batches).await;
        assert_eq!(report.failed(), 0, "{report:?}");
        assert_eq!(report.retried_entries, 10);
        let sent: Vec<String> = q.transport().requests().concat();
        assert_eq!(sent.len(), 40);
        // Accepted in input order per group: a failed entry is re-sent
        // before its group's next one.
        for g in 0..3 {
            let mine: Vec<&String> = sent
                .iter()
                .filter(|d| d.starts_with(&format!("g{g}-")))
                .collect();
            let mut order: Vec<&String> = mine.clone();
            order.dedup();
            let expected: Vec<String> = (0..30)
                .filter(|n| n % 3 == g)
                .map(|n| format!("g{g}-{n}"))
                .collect();
            let mut seen = Vec::new();
            for d in &order {
                if seen.last() != Some(d) && !seen.contains(d) {
                    seen.push(*d);
                }
            }
            assert_eq!(seen, expected.iter().collect::<Vec<_>>());
        }
    }

    #[tokio::test]
    async fn an_entry_failing_mid_request_is_never_overtaken_by_its_group() {
        let t = Scripted::new(|b, attempt| (b.dedup_id == "a-1" && attempt < 3).then(transient));
        let q = DeliveryQueue::with_transport(t, fast());
        let batches = vec![
            batch("a", 0, 10),
            batch("b", 0, 10),
            batch("a", 1, 10),
            batch("b", 1, 10),
            batch("a", 2, 10),
        ];
        let report = q.send(&batches).await;
        assert_eq!(report.failed(), 0, "{report:?}");
        let requests = q.transport().requests();
        // a-1 fails twice; a-2 waits for it while b goes on.
        assert_eq!(
            requests,
            vec![
                vec!["a-0".to_owned(), "b-0".to_owned()],
                vec!["a-1".to_owned(), "b-1".to_owned()],
                vec!["a-1".to_owned()],
                vec!["a-1".to_owned()],
                vec!["a-2".to_owned()],
            ]
        );
    }

    #[tokio::test]
    async fn a_final_failure_blocks_the_rest_of_its_group_only() {
        let t = Scripted::new(|b, _| (b.dedup_id == "a-1").then(transient));
        let q = DeliveryQueue::with_transport(t, fast());
        let mut batches = vec![batch("a", 0, 10), batch("a", 1, 10), batch("b", 0, 10)];
        batches.extend((2..6).map(|n| batch("a", n, 10)));
        let report = q.send(&batches).await;
        assert_eq!(report.outcomes[0], Ok(()));
        assert!(matches!(
            report.outcomes[1],
            Err(SendFailure::Exhausted { attempts: 3, .. })
        ));
        assert_eq!(report.outcomes[2], Ok(()));
        assert!(
            report.outcomes[3..]
                .iter()
                .all(|o| matches!(o, Err(SendFailure::GroupBlocked { .. }))),
            "{report:?}"
        );
        let sent: Vec<String> = q.transport().requests().concat();
        assert!(!sent.iter().any(|d| d == "a-2"), "{sent:?}");
    }

    /// Fails the whole request as SQS does without permission.
    struct Refusing;

    impl SendMessageBatch for Refusing {
        async fn send_message_batch(
            &self,
            _: &[RequestEntry<'_>],
        ) -> Result<BatchReply, RequestError> {
            Err(RequestError {
                code: "AccessDenied".into(),
                message: "no".into(),
                retryable: false,
            })
        }
    }

    #[tokio::test]
    async fn a_refused_request_stops_the_send_as_transient() {
        let q = DeliveryQueue::with_transport(Refusing, fast());
        let batches = vec![batch("a", 0, 10), batch("a", 1, 10), batch("b", 0, 10)];
        let report = q.send(&batches).await;
        assert_eq!(report.requests, 1);
        assert!(
            report
                .outcomes
                .iter()
                .all(|o| matches!(o, Err(SendFailure::Unavailable { .. })))
        );
        assert!(
            report
                .outcomes
                .iter()
                .all(|o| !o.as_ref().unwrap_err().is_permanent())
        );
    }

    #[tokio::test]
    async fn sender_faults_are_final_and_oversized_bodies_are_never_sent() {
        let t = Scripted::new(|b, _| {
            (b.group_id.as_str() == "bad").then(|| EntryError {
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
            batch("huge", 1, 10),
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
        // A permanent failure does not hold its group: the caller parks it.
        assert_eq!(report.outcomes[3], Ok(()));
        assert!(report.outcomes[0].as_ref().unwrap_err().is_permanent());
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
    fn packing_takes_heads_that_fit() {
        let batches = vec![
            batch("a", 0, 600_000),
            batch("b", 0, 600_000),
            batch("c", 0, 10),
        ];
        assert_eq!(pack(&batches, &[0, 1, 2]), vec![0, 2]);
        let many: Vec<_> = (0..12).map(|n| batch(&format!("g{n}"), 0, 10)).collect();
        assert_eq!(pack(&many, &(0..12).collect::<Vec<_>>()).len(), 10);
    }
}
