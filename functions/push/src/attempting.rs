//! Step 4, the attempt: started on the endpoint's state (a late start
//! credited to its window), one POST through [`crate::attempt`] — or, for a
//! split an earlier invocation started, its refusal again — logged, and put
//! on record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use platformsync_aws::health::Versioned;
use platformsync_delivery::retry::seed_for;
use platformsync_domain::endpoint::EndpointSettings;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::attempt::Posted;
use crate::flow::{Batch, Flow};
use crate::outcome::Outcome;
use crate::policy::AttemptResult;
use crate::ports::{Outgoing, Ports};

/// One attempt, as the policy and the records need it.
pub(crate) struct Tried {
    pub result: AttemptResult,
    /// The batch's attempt number (the state counts them).
    pub attempt: u32,
    pub started_at: OffsetDateTime,
    pub latency: Duration,
    /// A real POST that delivered: not on record yet; it becomes part of
    /// the batch's ledger write (one write, not two).
    pub record_pending: bool,
    /// The retry jitter's seed and the batch's first attempt, from the state
    /// before this result is applied to it.
    pub seed: u64,
    pub first_attempt_at: OffsetDateTime,
}

impl<P: Ports> Flow<P> {
    /// The attempt; `Err` when our own side failed before posting.
    pub(crate) async fn attempt(
        &self,
        b: &Batch<'_>,
        h: &mut Versioned,
        settings: Option<&Arc<EndpointSettings>>,
        started_at: OffsetDateTime,
        deadline: Instant,
    ) -> Result<Tried, Outcome> {
        let credited =
            h.state
                .start_attempt(&b.message_id, started_at, self.rules.lateness_tolerance);
        if !credited.is_zero() {
            warn!(
                credited_s = credited.as_secs(),
                "retry started late: the delay was ours, credited to the endpoint's window"
            );
        }
        let timer = Instant::now();
        let splitting = h.state.refusals_of(&b.message_id) >= self.rules.split_after_refusals;
        let result = match (settings, splitting) {
            (None, _) => AttemptResult::Failed {
                error: "endpoint is not configured (deleted?)".into(),
                retry_after: None,
            },
            (Some(settings), false) => {
                let outgoing = Outgoing {
                    message_id: b.meta.message_id,
                    kind: b.meta.kind,
                    payloads: &b.payloads,
                };
                match self.ports.post(settings, &outgoing, deadline).await {
                    Posted::Answer(result) => result,
                    Posted::Ours(e) => return Err(self.ours(b, "before posting", &e).await),
                }
            }
            // A split that an earlier invocation started: resume it.
            (Some(_), true) => AttemptResult::Refused {
                error: h.state.last_error.clone().unwrap_or_default(),
            },
        };
        let attempt = h.state.attempts_of(&b.message_id);
        match &result {
            AttemptResult::Delivered => info!(
                attempt,
                transactions = b.keys.len(),
                duration_ms = timer.elapsed().as_millis() as u64,
                "delivered"
            ),
            AttemptResult::Failed { error, .. } | AttemptResult::Refused { error } => warn!(
                attempt,
                error = %error,
                duration_ms = timer.elapsed().as_millis() as u64,
                "attempt failed"
            ),
        }
        // A real POST (not a resumed split): on record for `platformsync
        // attempts`. A failed one now, before anything else; a delivered
        // one in the batch's ledger item.
        let latency = timer.elapsed();
        let posted = settings.is_some() && !splitting;
        let record_first = !matches!(result, AttemptResult::Delivered);
        let tried = Tried {
            attempt,
            started_at,
            latency,
            record_pending: posted && !record_first,
            seed: seed_for(&b.message_id, h.state.consecutive_failures),
            first_attempt_at: h
                .state
                .head
                .as_ref()
                .map_or(started_at, |head| head.first_attempt_at),
            result,
        };
        if posted && record_first {
            self.record_tried(b, &tried).await;
        }
        Ok(tried)
    }
}
