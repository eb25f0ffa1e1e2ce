//! Step 6, applying the policy's decision ([`policy::on_attempt`]): the
//! endpoint's state saved first (conditional on its version, only when
//! something material changed), then the queue (acknowledge and record,
//! retry after the delay, or park), then the notices the state claimed.

use std::time::Duration;

use platformsync_aws::health::{Saved, Versioned};
use platformsync_aws::notifier::NotificationKind;
use platformsync_delivery::incident::{EndpointState, rfc3339};
use tracing::{error, info, warn};

use crate::attempting::Tried;
use crate::flow::{Batch, Flow, now};
use crate::outcome::Outcome;
use crate::policy::{self, AttemptResult, Effects, Next, Notice};
use crate::ports::{NoticeInput, Ports};

fn notification_kind(notice: Notice) -> NotificationKind {
    match notice {
        Notice::Failing => NotificationKind::Failing,
        Notice::Expired => NotificationKind::Expired,
        Notice::Recovered => NotificationKind::Recovered,
    }
}

impl<P: Ports> Flow<P> {
    /// The policy's decision on this attempt's `result` (a split's end
    /// counts as the attempt's result), applied to the state.
    pub(crate) fn decide(
        &self,
        b: &Batch<'_>,
        h: &mut Versioned,
        tried: &Tried,
        result: &AttemptResult,
    ) -> Effects {
        policy::on_attempt(
            &mut h.state,
            &b.message_id,
            tried.started_at,
            result,
            now(),
            tried.seed,
            &self.rules,
        )
    }

    /// The effects applied; `stored` is the state as it was read, to skip a
    /// write that would change nothing material.
    pub(crate) async fn apply(
        &self,
        b: &Batch<'_>,
        h: &mut Versioned,
        stored: &EndpointState,
        effects: &Effects,
        tried: &Tried,
        split: Option<(usize, usize)>,
    ) -> Outcome {
        let saved = if policy::needs_save(stored, &h.state, now(), policy::DELIVERED_AT_REFRESH) {
            self.save(b, h).await
        } else {
            true
        };
        let mut record_pending = tried.record_pending;
        if record_pending && effects.next != Next::Acknowledge {
            self.record_tried(b, tried).await;
            record_pending = false;
        }
        let attempt = tried.attempt;
        let outcome = match effects.next {
            Next::Acknowledge => {
                self.record_delivered(b, tried, split.is_some(), record_pending)
                    .await;
                match split {
                    Some((delivered, refused)) => Outcome::Split { delivered, refused },
                    None => Outcome::Delivered,
                }
            }
            Next::RetryIn(delay) => self.retry(b, delay).await,
            Next::Park(reason) => {
                let error = h.state.last_error.clone();
                let outcome = self
                    .park(b, reason, attempt, error.as_deref(), h)
                    .await
                    .unwrap_or(Outcome::HandedBack);
                if effects.park_rest {
                    warn!(
                        failing_since = ?h.state.failing_since.map(rfc3339),
                        "the endpoint's incident outlasted the window: its queued batches are parked"
                    );
                }
                outcome
            }
            Next::Split => self.retry(b, Duration::from_secs(1)).await,
        };
        if saved {
            self.notices(b, h, effects, attempt).await;
        }
        if let Some((_, refused)) = split
            && refused > 0
        {
            self.notice(b, h, NotificationKind::Refused, attempt, Some(refused))
                .await;
        }
        outcome
    }

    /// Saves the state; on a conflict (another invocation wrote since), the
    /// newer state is kept and this attempt's notices are not sent.
    pub(crate) async fn save(&self, b: &Batch<'_>, h: &mut Versioned) -> bool {
        match self
            .ports
            .save(b.endpoint(), b.customer(), &h.state, h.version)
            .await
        {
            Ok(Saved::Written { version }) => {
                h.version = version;
                true
            }
            Ok(Saved::Conflict) => {
                warn!("the endpoint's health changed under this invocation: reloading it");
                if let Ok(fresh) = self.ports.load(b.endpoint()).await {
                    *h = fresh;
                }
                false
            }
            Err(e) => {
                error!(error = %e, "could not save the endpoint's health");
                false
            }
        }
    }

    async fn notices(&self, b: &Batch<'_>, h: &mut Versioned, effects: &Effects, attempts: u32) {
        for notice in &effects.notices {
            let kind = notification_kind(*notice);
            if !self.notice(b, h, kind, attempts, None).await {
                // Un-claim it, so the incident's next attempt tries again.
                let mut released = false;
                if let Some(incident) = &mut h.state.incident {
                    match notice {
                        Notice::Failing => incident.failing_notified = false,
                        Notice::Expired => incident.expired_notified = false,
                        Notice::Recovered => {}
                    }
                    released = true;
                }
                if released {
                    self.save(b, h).await;
                }
            }
        }
    }

    async fn notice(
        &self,
        b: &Batch<'_>,
        h: &Versioned,
        kind: NotificationKind,
        attempts: u32,
        refused: Option<usize>,
    ) -> bool {
        let incident = h.state.incident.as_ref();
        let input = NoticeInput {
            kind,
            customer_id: b.customer().clone(),
            endpoint_id: b.endpoint().clone(),
            incident_id: incident.map(|i| i.id()).unwrap_or_default(),
            failing_since: h
                .state
                .failing_since
                .or(incident.map(|i| i.opened_at))
                .map(rfc3339)
                .unwrap_or_default(),
            message_id: b.message_id.clone(),
            last_error: h
                .state
                .last_error
                .clone()
                .filter(|_| kind != NotificationKind::Recovered),
            attempts,
            refused,
        };
        match self.ports.notify(&input).await {
            Ok(()) => {
                info!(kind = kind.as_str(), "notification sent");
                true
            }
            Err(e) => {
                error!(kind = kind.as_str(), error = %e, "notification failed");
                false
            }
        }
    }

    pub(crate) async fn retry(&self, b: &Batch<'_>, delay: Duration) -> Outcome {
        if let Err(e) = self.ports.retry_in(b.receipt, delay).await {
            error!(error = %e, "could not schedule the retry; it comes back after the queue's visibility timeout");
        }
        info!(retry_in_s = delay.as_secs(), "retry scheduled");
        Outcome::Retrying { delay }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;

    #[tokio::test]
    async fn expiry_parks_the_head_and_everything_after_it() {
        let f = flow(Memory::default());
        let mut s = EndpointState {
            failing_since: Some(now() - time::Duration::hours(2)),
            consecutive_failures: 9,
            incident: Some(platformsync_delivery::incident::Incident::opened(now())),
            ..Default::default()
        };
        s.incident.as_mut().unwrap().failing_notified = true;
        f.ports.set_state("ep", s);
        f.ports.answer(failed());
        let envs: Vec<Envelope> = (0..4).map(|i| envelope(i, 1)).collect();
        let out = f.run(&envs, deadline()).await;
        assert!(
            out.iter()
                .all(|(_, o)| *o == Outcome::Parked { reason: "expired" }),
            "{out:?}"
        );
        assert_eq!(f.ports.posts().len(), 1, "only the head was attempted");
        assert_eq!(f.ports.notice_kinds(), ["expired"]);
        let parked: Vec<String> = f.ports.parked().into_iter().map(|p| p.0).collect();
        let ids: Vec<String> = (0..4)
            .map(|i| uuid::Uuid::from_u128(i + 1).to_string())
            .collect();
        assert_eq!(parked, ids, "parked in queue order");
    }
}
