//! The push function: delivers each batch of the delivery queue to its
//! customer endpoint, exactly as the spec's delivery rules 1 to 7 say.
//!
//! # One batch, as the flow walks it
//!
//! The crate reads as the flow it implements:
//!
//! - [`handler`] is the edge: Lambda's SQS event in, the partial batch
//!   response out; the clients, with operation and attempt timeouts on every
//!   AWS call. No SQS event type goes below it.
//! - [`flow`] groups the messages by endpoint (the FIFO group) and walks each
//!   group in order: **parse** (a body that is not a batch goes to the
//!   dead-letter queue) → **ledger** (a batch already delivered is
//!   acknowledged without a POST) → the endpoint's **incident state** →
//!   **gate** (a disabled or expired endpoint's batch is parked) →
//!   **attempt** → **policy** → save the state → retry / acknowledge / park /
//!   split → **notices**. A group's acknowledged messages are deleted as soon
//!   as the group is done, so a slow endpoint does not hold healthy groups in
//!   flight. Its steps, by role:
//!   - `group`: one endpoint's batches in order, the rest handed back after
//!     the first that stops, the acknowledged ones deleted.
//!   - `parsing`: the batch in a body, or the dead-letter queue.
//!   - `bookkeeping`: the event's reads up front, the ledger check, the
//!     delivered batch's ledger entry, attempt records.
//!   - `gate`: the incident state (once per group), settings, the gate;
//!     `parking`: parking a batch (counted while resuming).
//!   - `attempting`: one attempt started on the state, posted, recorded.
//!   - `splitting`: a batch the endpoint keeps refusing, split in halves.
//!   - `effects`: the policy's decision applied: save, acknowledge / retry /
//!     park, notices.
//!   - `our_failures`: our own failures back off from the receive count; the
//!     retention guard. `outcome`: what became of each message.
//! - [`attempt`]: the key (Secrets Manager, cached ≤ 5 min, fetched again on
//!   401/403), payload v1 rendered for the endpoint, one POST with the shared
//!   [`EndpointClient`](platformsync_http::EndpointClient), and what the
//!   answer means: only 200 is delivered; a 4xx other than 401/403/408/429
//!   is a refusal of the content; anything else is a failed attempt.
//! - [`policy`]: pure: attempt result x incident state -> effects (retry
//!   delay, park, split, notices), unit-tested over every case.
//! - The incident state itself is
//!   [`EndpointState`](platformsync_delivery::incident::EndpointState), one
//!   per endpoint in its health item ([`platformsync_aws::health`]).
//! - [`ports`]: the stores and the queue as small traits, with AWS and
//!   in-memory implementations.
//!
//! # The rules (docs/delivery.md says them for customers)
//!
//! - **Retry delays follow the endpoint's health**: 2 s, 5 s, 15 s, 30 s,
//!   1 min, 2 min, 5 min, 10 min, 30 min, then hourly, by the endpoint's
//!   consecutive failed attempts across its batches; a 200 resets them; ±20 %
//!   jitter; `Retry-After` honoured (never sooner, at most 2 h).
//! - **The window belongs to the endpoint's incident**: from its first failed
//!   attempt since its last 200, 24 h plus our own downtime (a retry that
//!   starts later than due by more than max(30 s, half its delay) credits the
//!   lateness). When it ends, the batch and every batch queued after it are
//!   parked (DynamoDB, [`platformsync_aws::parked`]: reason, attempts, last
//!   error, keys, body, in queue order) and "expired" goes out once. While
//!   expired, new batches are parked at once, with one probe attempt per
//!   15 minutes; a probe's 200 (or an operator's resume) ends the incident.
//! - **Notices with hysteresis**: "failing" after 3 failed attempts in a row
//!   or 5 minutes of failing; "recovered" only if "failing" went out, after 3
//!   successes in a row (or the first after an expiry); at most one of each
//!   per incident.
//! - **Our outages are ours**: a failure of our own AWS calls (throttling,
//!   5xx, AccessDenied, KMS, Secrets Manager errors, timeouts) is not an
//!   attempt: no state change, no notice, no expiry; the batch backs off 5 s
//!   doubling to 30 min per receive (so receives stay far below
//!   `maxReceiveCount` over the queue's 14 days) and the `OurFailures`
//!   metric is alarmed.
//! - **Refused batches are split**: refused 3 times in a row, a batch is
//!   split in halves (derived, deterministic `MessageId`s), recursively;
//!   refused single transactions are parked with the endpoint's answer and a
//!   "refused" notice; the rest is delivered once and in order.
//! - A disabled endpoint's batches are parked, not retried.
//!
//! # Secrets
//!
//! Tokens live in Secrets Manager and in memory as `SecretString`; they are
//! exposed only to build the request. They never reach logs (structured, with
//! the batch's `MessageId` as correlation id; payloads are never logged),
//! errors (the HTTP client names `https://host:port/path` only and scrubs
//! echoes; the attempt also scrubs a key placed in the body), queue messages
//! or DynamoDB.

pub mod attempt;
mod attempting;
mod bookkeeping;
mod effects;
mod event;
pub mod flow;
mod gate;
mod group;
pub mod handler;
mod our_failures;
mod outcome;
mod parking;
mod parsing;
pub mod policy;
pub mod ports;
mod settings;
mod splitting;
#[cfg(test)]
mod testing;

pub use event::{acknowledged, sqs_event};
pub use handler::{InitError, Push};
pub use outcome::Outcome;
pub use parsing::parse_batch;
pub use settings::{DEFAULT_CONFIG_CACHE, Settings};
