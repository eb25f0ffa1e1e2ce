//! Why (part of) a stream batch was not fanned out, and what each failure
//! means for the answer: every failure here is transient (Lambda retries the
//! batch from the record named, from the plan); poison never reaches this
//! module, it is parked ([`crate::parking`]).

use platformsync_aws::StoreError;
use platformsync_aws::delivery_queue::SendFailure;
use platformsync_domain::endpoint::CustomerId;
use std::sync::Arc;

/// Names the record, customer or endpoint involved; never a payload.
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

impl FanoutError {
    /// A plan, pointer or parked record could not be written: counted
    /// (`PlanWriteFailed`, alarmed) besides failing the batch.
    pub fn is_write_failure(&self) -> bool {
        matches!(
            self,
            FanoutError::WritePlan { .. }
                | FanoutError::WritePointer { .. }
                | FanoutError::Park { .. }
        )
    }
}

/// Where the walk stopped: the index (in the event) of the first record not
/// fully handled, and why.
#[derive(Debug)]
pub(crate) struct Failure {
    pub record: usize,
    pub error: FanoutError,
}

impl Failure {
    pub fn at(record: usize, error: FanoutError) -> Self {
        Self { record, error }
    }
}

/// What became of one message the queue was asked to send.
#[derive(Debug)]
pub(crate) enum Sent {
    Accepted,
    /// The message itself can never be sent (SQS blames the entry, or it is
    /// too large): parked with its keys, so the walk goes on.
    Refused(String),
    /// Throttling, 5xx, our own configuration, the deadline, or blocked
    /// behind an earlier message of its endpoint: the batch is retried.
    Transient(SendFailure),
}

impl From<Result<(), SendFailure>> for Sent {
    fn from(result: Result<(), SendFailure>) -> Self {
        match result {
            Ok(()) => Sent::Accepted,
            Err(e) if e.is_permanent() => Sent::Refused(e.to_string()),
            Err(e) => Sent::Transient(e),
        }
    }
}
