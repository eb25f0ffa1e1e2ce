//! The fan-out function: from the transactions table's stream to
//! per-endpoint delivery batches on the FIFO delivery queue, so that every
//! replay of a stream batch sends exactly the same messages.
//!
//! # Modules, by role
//!
//! - `handler`: the Lambda edge: clients, event in, [`Tally`] and answer out.
//! - `walk`: the flow of one stream batch, plan by plan, over [`ports`].
//! - `sending`: sending one plan, parking what SQS refuses, the replay's pointer.
//! - [`planning`]: routing and cutting records into a plan's messages (pure).
//! - [`decoding`]: stream records as pushed, skipped or poison (pure).
//! - `parking`: what is parked for good, under which id (pure).
//! - `failure`: why a batch is retried ([`FanoutError`]), what a send meant.
//! - [`ports`]: what the walk asks of storage and queues; `tally`: the counts.
//! - [`config_cache`]: safe owners and endpoints, cached per container.
//!
//! One stream batch, as [`Fanout::handle`] walks it:
//!
//! 1. **Decode** ([`decoding`]): each record's new image becomes a
//!    `StoredTransaction`. Pushed: an `INSERT` that is `Deliverable`, and a
//!    `MODIFY` to `Released`. Skipped: held and discarded items, removals.
//!    **Poison** (an image that is not a stored transaction, a payload SQS
//!    would refuse) is parked with its raw image (`PARKED#SEQ#<sequence>` in
//!    the config table) and counted (`Unreadable`, `Parked`): never retried,
//!    never dependent on Lambda bisecting down to it.
//! 2. **Find the plan** ([`platformsync_aws::fanout_plans`]): for the first
//!    pushable record, one consistent `Query` on `PLAN#<its storage key>`
//!    finds a plan, or a pointer to one, and the plan's sent-progress. The
//!    plan covers the records that follow in the same order; after the
//!    last one it covers, look up again.
//! 3. **Or make one** ([`planning::make_plan`]): route (safe owners and their
//!    endpoints, from a per-container cache), cut each (endpoint, kind)
//!    into messages ordered by safe time, at most the endpoint's max batch
//!    size, within the SQS message limit, with `MessageId` and dedup id
//!    derived from the endpoint and the keys; park what can never be sent
//!    (invalid owner, oversized), count the unowned; then **write the plan
//!    before sending anything** (conditional put; split in halves while the
//!    item would exceed [`platformsync_aws::fanout_plans::MAX_PLAN_BYTES`]).
//! 4. **Pointer**: when the event ends before its plan does (Lambda bisected
//!    or shortened the batch), write `PLAN#<the plan's next key>` → plan
//!    before sending, so the part that starts there finds it.
//! 5. **Send** ([`platformsync_aws::delivery_queue`]) every message of the
//!    plan not recorded as sent, rendered from the plan
//!    ([`planning::render`]: the plan's `CreatedAt`, a `PlanRef`); bodies of
//!    records the event does not hold are read from the transactions table
//!    (`BatchGetItem`). An endpoint's message i goes only after its message
//!    i-1 was accepted, one entry per endpoint per request.
//! 6. **Answer**: nothing failed, or the first record (in event order) of a
//!    message not sent. Before answering a failure, save the sent-progress
//!    (`SENT` item of the plan; losing it only costs re-sends under the same
//!    ids) and write a pointer at that record, so the replay finds the plan.
//!    If the pointer cannot be written, the whole event is reported.
//!
//! # Exactly one `MessageId` per (endpoint, transaction)
//!
//! What is sent is a function of the stored plan, not of the invocation:
//! a partial-batch retry, a bisected half, a crash or timeout mid-send, the
//! stream-recovery consumer re-reading a range: each finds the plan through
//! its key or a pointer and re-sends the planned messages with the same
//! `MessageId`, dedup id and body. SQS drops a repeat within 5 minutes, the
//! push ledger (by `MessageId`) after. A record is only ever planned once:
//! before it is planned, no plan covers it; after, its key or a pointer
//! leads to the plan from every place a replay can start (the batch's first
//! record, the reported record, the record after an event's end).
//!
//! # Failures
//!
//! Transient failures (throttling, 5xx, timeouts, AccessDenied or KMS errors
//! of our own configuration, on any call) fail the batch from the first
//! record not fully handled, and Lambda retries it until the record age
//! (12 h; `MaximumRetryAttempts: -1`): later records of the shard wait, so
//! nothing overtakes. What then still fails goes to `StreamFailureQueue`,
//! which the `stream-recovery` function consumes through this same code.
//! Every client has an 8 s operation timeout, and no request starts within
//! [`Settings::deadline_margin`] of the deadline, so a timeout never
//! interrupts a write the replay depends on.
//!
//! # Configuration staleness
//!
//! Safe owners and endpoints are cached per container for
//! [`Settings::config_cache_ttl`] (`CONFIG_CACHE_SECONDS`): a change is seen
//! by plans made more than that long after it. Routing is fixed in the plan:
//! a replay sends what was planned, even if the configuration changed since.
//!
//! # Order
//!
//! Within a message, by safe time. An endpoint's messages enter its FIFO
//! group in plan order, even when SQS rejects an entry in the middle of a
//! request; a plan with an unsent message stops the walk, so the next plan's
//! messages never overtake it.

pub mod config_cache;
pub mod decoding;
mod failure;
mod handler;
mod parking;
pub mod planning;
pub mod ports;
mod sending;
mod settings;
#[cfg(feature = "stream-records")]
pub mod stream_reader;
mod tally;
mod walk;

#[cfg(test)]
mod memory;
#[cfg(test)]
mod walk_tests;

pub use failure::FanoutError;
pub use handler::Fanout;
pub use settings::{InitError, Settings};
pub use tally::Tally;
