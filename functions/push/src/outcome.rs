//! What became of one message: what the edge acknowledges and counts.

use std::time::Duration;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered 200; recorded in the ledger.
    Delivered,
    /// The ledger already had it: acknowledged without posting.
    AlreadyDelivered,
    /// Kept aside (parked) for operations to replay.
    Parked { reason: &'static str },
    /// Split; its parts were delivered or (refused ones) parked.
    Split { delivered: usize, refused: usize },
    /// Not a batch: moved to the dead-letter queue.
    DeadLettered { reason: &'static str },
    /// The attempt failed; the message comes back after this delay.
    Retrying { delay: Duration },
    /// Something of ours failed: no attempt counted, back after this delay.
    Deferred { delay: Duration },
    /// Not processed (an earlier batch of its endpoint stopped, or too little
    /// time was left): visible again at once, order kept by the FIFO group.
    HandedBack,
}

impl Outcome {
    /// Acknowledged outcomes are deleted from the queue.
    pub fn is_acknowledged(&self) -> bool {
        matches!(
            self,
            Outcome::Delivered
                | Outcome::AlreadyDelivered
                | Outcome::Parked { .. }
                | Outcome::Split { .. }
                | Outcome::DeadLettered { .. }
        )
    }

    pub fn metric(&self) -> &'static str {
        match self {
            Outcome::Delivered => "Delivered",
            Outcome::AlreadyDelivered => "AlreadyDelivered",
            // Alarmed: operations replay parked batches.
            Outcome::Parked { .. } => "Parked",
            Outcome::Split { .. } => "Split",
            Outcome::DeadLettered {
                reason: "retention",
            } => "RetentionGuard",
            Outcome::DeadLettered { .. } => "Malformed",
            Outcome::Retrying { .. } => "FailedAttempts",
            // Alarmed: our own AWS dependencies are failing.
            Outcome::Deferred { .. } => "OurFailures",
            Outcome::HandedBack => "HandedBack",
        }
    }
}
