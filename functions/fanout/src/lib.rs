//! The fan-out function: from the transactions table's stream to
//! per-endpoint delivery batches on the FIFO delivery queue.
//!
//! One stream batch, as [`Fanout::handle`] walks it:
//!
//! 1. **Decode** ([`records`]): each record's new image becomes a
//!    `StoredTransaction`. Pushed: an `INSERT` that is `Deliverable`, and a
//!    `MODIFY` to `Released` (held, then released by staff). Skipped: held
//!    and discarded items, removals. A record this code cannot read is a bug,
//!    not a transient failure: it is logged and counted (`Unreadable`), not
//!    retried, so it cannot stall the shard; the item is still in the table.
//! 2. **Skip what an earlier attempt sent** ([`platformsync_aws::fanout_progress`]):
//!    one consistent `GetItem` for `FANOUT#<first record's sequence number>`
//!    (see "No duplicates on replay" below).
//! 3. **Route** ([`config_cache`], [`batches`]): the safes' owners and the
//!    owners' endpoints, from a cache read at most once per invocation; each
//!    transaction goes to every endpoint of its owner that
//!    [`wants`](platformsync_domain::endpoint::EndpointSettings::wants) its
//!    message type and transaction type (enabled, subscribed, whitelisted
//!    under either vocabulary). A safe no customer owns is counted
//!    (`Unowned`) and logged, never pushed.
//! 4. **Plan** ([`platformsync_delivery::batching::plan`]) per endpoint and
//!    message kind: ordered by safe time, at most the endpoint's max batch
//!    size, within the SQS message limit, with a dedup id and `MessageId`
//!    derived from the endpoint and the keys.
//! 5. **Send** ([`platformsync_aws::delivery_queue`]): `SendMessageBatch`,
//!    ten messages and 1 MiB a call, group = endpoint id, per-entry failures
//!    retried with backoff, never past the invocation's deadline.
//! 6. **Answer** with a partial batch response naming the first record (in
//!    event order) not fully handled: a record is fully handled when every
//!    batch holding it was sent.
//!
//! # No duplicates on replay
//!
//! Lambda replays a stream batch from the first failed record. Records after
//! it that were already sent would be planned into different batches on the
//! replay (other companions, so other dedup ids and `MessageId`s) and pushed
//! twice. So, before answering with a failure, the function writes one item
//! to the config table, `FANOUT#<first failed sequence number>` / `DONE`,
//! listing the (record, endpoint) pairs already sent from that record on
//! (what it loaded in step 2 included), with a 48-hour TTL. The replay starts
//! with that record, finds the item in step 2 and skips those pairs. If that
//! write fails, the replay may push some transactions twice: a duplicate,
//! never a loss (logged, counted as `ProgressWriteFailed`).
//!
//! A timeout would make Lambda retry the whole batch blind, so the function
//! starts no SQS request within [`Settings::deadline_margin`] of its deadline
//! (the Lambda context's deadline; [`Settings::time_budget`] from the start
//! when called without one) and reports what is left as failed, through the
//! same path.
//!
//! Remaining duplicate windows, all rare: the progress write fails; a replay
//! arrives as a shorter batch and succeeds, so the pairs of records beyond
//! its end are not carried forward; Lambda itself kills the invocation. In
//! each case the receiver still sees each batch's stable `MessageId`, and
//! ordering rules allow it.
//!
//! # When retries run out
//!
//! The event source mapping retries a failing batch a bounded number of
//! times and for a bounded record age, then sends the batch's metadata
//! (shard id, first and last sequence numbers, stream ARN; not the records)
//! to the on-failure destination (`StreamFailureQueue`). A reconciliation
//! step re-reads that sequence range from the stream while it is still
//! there (24 h) with [`stream_records::read_shard`] at
//! `ShardPosition::At(startSequenceNumber)` and hands it to the same
//! [`Fanout::handle`]: the range starts with the record the last attempt
//! reported, so the progress item of that attempt still applies and nothing
//! already sent is sent again. That reconciliation step is designed, not yet
//! built (see the report); until it is, the failure queue holds the
//! metadata for 14 days and the transactions stay in the table.
//!
//! # Configuration staleness
//!
//! Safe owners and endpoints are cached per container for
//! [`Settings::config_cache_ttl`] (`CONFIG_CACHE_SECONDS`, default 60): a
//! change in the config table is seen by every invocation that starts more
//! than that long after the write (plus DynamoDB's eventual consistency,
//! normally under a second). An unknown safe is cached as unowned for the
//! same time. Reads are batched once per invocation (`BatchGetItem` for the
//! missing safes, one `Query` per missing customer), never per record.
//!
//! # Order
//!
//! Within a batch, by safe time. An endpoint's batches are sent in plan order
//! within one FIFO group; after a send failure a retried batch may follow a
//! later one (the spec allows it), and once a batch of an endpoint has failed
//! for good, that endpoint's later batches in the invocation are held back
//! and replayed with it.

pub mod batches;
pub mod config_cache;
mod handler;
pub mod records;
#[cfg(feature = "stream-records")]
pub mod stream_records;

pub use handler::{Fanout, FanoutError, InitError, Outcome, Settings};
