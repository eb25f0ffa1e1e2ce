//! What one invocation did: the counts behind its log line, its metrics
//! (every count of records not pushed is alarmed in `template.yaml`) and
//! the record Lambda retries from.

use platformsync_aws::metrics::Metrics;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
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

impl Tally {
    /// One EMF line of the fan-out's metrics.
    pub fn record_metrics(&self, duration: Duration) {
        let mut m = Metrics::for_function("fanout");
        m.count("Records", self.records)
            .count("Pushable", self.pushable)
            .count("Skipped", self.skipped)
            .count("Unreadable", self.unreadable)
            .count("Unowned", self.unowned)
            .count("InvalidOwner", self.invalid_owner)
            .count("Oversized", self.oversized)
            .count("Parked", self.parked)
            .count("PlansCreated", self.plans_created)
            .count("PlansFound", self.plans_found)
            .count("AlreadySent", self.already_sent)
            .count("Batches", self.batches)
            .count("Rebuilt", self.rebuilt)
            .count("MessagesSent", self.messages_sent)
            .count("SqsRequests", self.sqs_requests)
            .count("RetriedEntries", self.retried_entries)
            .count("FailedBatches", self.failed_batches)
            .count("ConfigSafesRead", self.safes_read)
            .count("ConfigCustomersRead", self.customers_read)
            .count("PartialFailures", usize::from(self.first_failed.is_some()))
            .count("PlanWriteFailed", usize::from(self.plan_write_failed))
            .count(
                "ProgressWriteFailed",
                usize::from(self.progress_write_failed),
            )
            .millis("Duration", duration.as_millis());
        m.flush();
    }
}
