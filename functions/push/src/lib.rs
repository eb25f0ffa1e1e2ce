//! The push function: delivers each batch of the delivery queue to its
//! customer endpoint, exactly as the spec's delivery rules 1 to 7 say.
//!
//! # One batch, as [`Push::handle`] walks it
//!
//! 1. **Parse** the SQS body as a [`BatchMessage`](platformsync_domain::batch::BatchMessage).
//!    A body that is not one (or of an unknown version) goes to the
//!    dead-letter queue with the reason and is acknowledged: never a poison
//!    loop.
//! 2. **Ledger**: a batch the delivery ledger already has (batch id =
//!    `MessageId`) is acknowledged without posting: SQS redelivered it after a
//!    crash between the POST and the acknowledgement.
//! 3. **Settings and key**: the endpoint's settings (cached 30 s) and its API
//!    key from Secrets Manager (cached ≤ 5 min).
//! 4. **Render** payload v1 for the endpoint's pinned version, metadata and
//!    key placement, and **POST** it with the one shared
//!    [`EndpointClient`](platformsync_http::EndpointClient) (rustls, SSRF-guarded
//!    resolver, no redirects, 3-minute attempts). A 401 or 403 makes the key
//!    be fetched again and the POST be repeated once before the attempt
//!    counts as failed (the key may have been rotated since we cached it).
//! 5. **Only HTTP 200 is delivered.** The ledger records the batch once
//!    (conditional put) with the keys of its transactions in one attribute;
//!    the endpoint's health is updated (a "recovered" notification if it was
//!    failing); the message is acknowledged.
//! 6. **Anything else is a failed attempt** (201, 204, 3xx, 4xx, 5xx, timeout,
//!    reset, TLS failure, refused address). The attempt state
//!    ([`AttemptState`](platformsync_delivery::retry::AttemptState)) is kept in
//!    the ledger table (`ATTEMPT#<MessageId>`), and
//!    [`on_failure`](platformsync_delivery::retry::on_failure) decides:
//!    - **retry**: `ChangeMessageVisibility(delay)` and the message is
//!      reported failed. The schedule is 30 s, 1 min, 2 min, 5 min, 10 min,
//!      30 min, then hourly, ±20 % jitter, `Retry-After` honoured (never
//!      sooner than the schedule, at most 2 h), with one last attempt at the
//!      deadline: about 30 attempts in 24 h;
//!    - **expire** (the window is over): the batch goes to the dead-letter
//!      queue (same group, deduplication id = `MessageId`, attributes
//!      `Reason`, `LastError`, `Attempts`, `FirstAttemptAt`) and is
//!      acknowledged.
//!
//! Something of *ours* failing before the POST (DynamoDB or Secrets Manager
//! throttled) counts no attempt: the batch comes back in 30 s.
//!
//! # Order (FIFO)
//!
//! The delivery queue's group is the endpoint. Lambda may hand one invocation
//! several batches of one group; they are processed in order and the first
//! batch that is not acknowledged stops its group: it keeps its retry delay
//! (invisible, so the group stays locked and nothing overtakes it), and the
//! later batches of that group are reported failed and made visible at once
//! (`ChangeMessageVisibility 0`), so they come back right after it rather than
//! after the queue's 21-minute visibility timeout. Different groups in one
//! event are processed concurrently: a slow endpoint does not hold up others.
//! A batch is only started while one whole attempt (plus 20 s of
//! bookkeeping) fits before the Lambda deadline; otherwise it is handed back.
//!
//! # The window, and our own downtime
//!
//! Rule 2's 24 hours run from a batch's **first attempt**, not from when it
//! was enqueued: a backlog built up while PlatformSync was down (or the
//! fan-out was behind) starts its windows only when delivery resumes.
//!
//! Rule 7 ("our downtime does not eat the customer's 24 hours") is the
//! retry state's lateness credit: each failure records when the retry was
//! scheduled and with which delay. When the next attempt starts later than
//! due by more than max(2 min, half the delay), the function was not running
//! (throttled, failing, region trouble), so the whole lateness is added to
//! the batch's deadline (`deadline = first attempt + window + credited`).
//! Lateness is measured from the end of the failed attempt, so a customer
//! endpoint that takes its 3 minutes to time out is never mistaken for our
//! downtime. Credits are logged (`credited_s`).
//!
//! # Notifications
//!
//! Published to the notifications topic with message attributes
//! `customer`, `endpoint` and `kind` (`failing` | `expired` | `recovered`),
//! once per incident, not per attempt: the endpoint's health item
//! (`platformsync_aws::health`) is changed with conditional updates, and only
//! the invocation whose update flipped a flag publishes. Subscription filter
//! policies:
//!
//! | subscriber | filter policy |
//! |---|---|
//! | a customer's recipients | `{"customer": ["acme"]}` |
//! | one endpoint's owner | `{"endpoint": ["acme-prod"]}` |
//! | a pager for expirations only | `{"kind": ["expired"]}` |
//! | Loomis support | none (everything) |
//!
//! The body names the customer's notification recipients, the endpoint's
//! host and path, the incident, the batch and the last (redacted) error.
//!
//! # Secrets
//!
//! Tokens live in Secrets Manager and in memory as `SecretString`; they are
//! exposed only to build the request. They never reach logs (structured, with
//! the batch's `MessageId` as correlation id; payloads are never logged),
//! errors (the HTTP client names `https://host:port/path` only and scrubs
//! echoes; the handler also scrubs a key placed in the body), queue messages
//! or DynamoDB.

mod event;
mod handler;
mod settings;

pub use event::sqs_event;
pub use handler::{InitError, Outcome, Push, parse_batch};
pub use settings::{DEFAULT_CONFIG_CACHE, Settings};

/// The Lambda deadline (`context.deadline`, ms since the Unix epoch) as an
/// `Instant`; a deadline in the past is now.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> std::time::Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    std::time::Instant::now() + std::time::Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
