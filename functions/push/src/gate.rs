//! Steps 2 and 3: the endpoint's incident state (read once per group), its
//! settings, and the gate ([`policy::gate`]): a disabled or expired
//! endpoint's batch is parked without a POST, and while the endpoint is
//! resuming, a new batch is parked behind the replayed backlog.

use std::sync::Arc;

use platformsync_aws::health::Versioned;
use platformsync_domain::endpoint::EndpointSettings;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::bookkeeping::Known;
use crate::flow::{Batch, Flow, now};
use crate::outcome::Outcome;
use crate::policy::{self, Gate};
use crate::ports::Ports;

impl<P: Ports> Flow<P> {
    /// The endpoint's incident state: the group's, else the event's read,
    /// else loaded.
    pub(crate) async fn incident_state<'h>(
        &self,
        b: &Batch<'_>,
        health: &'h mut Option<Versioned>,
        known: &Known,
    ) -> Result<&'h mut Versioned, Outcome> {
        if health.is_none()
            && let Some(known) = known.health.get(b.endpoint())
        {
            *health = Some(known.clone());
        }
        if health.is_none() {
            match self.ports.load(b.endpoint()).await {
                Ok(loaded) => *health = Some(loaded),
                Err(e) => return Err(self.ours(b, "loading the endpoint's health", &e).await),
            }
        }
        health.as_mut().ok_or(Outcome::HandedBack)
    }

    /// The endpoint's settings (`None`: not configured) and when the
    /// attempt starts, or the outcome of a batch parked at the gate.
    pub(crate) async fn gate(
        &self,
        b: &Batch<'_>,
        h: &mut Versioned,
    ) -> Result<(Option<Arc<EndpointSettings>>, OffsetDateTime), Outcome> {
        let settings = match self
            .ports
            .endpoint(&b.meta.customer_id, &b.meta.endpoint_id)
            .await
        {
            Ok(settings) => settings,
            Err(e) => return Err(self.ours(b, "reading the endpoint's settings", &e).await),
        };
        let disabled = settings.as_ref().is_some_and(|s| !s.enabled);
        let started_at = now();
        // A resuming endpoint: new batches wait behind the replayed backlog.
        // Parking can lose a race with the replay loop (it finished, or an
        // operator enabled again): the state is reloaded and decided again.
        for _ in 0..3 {
            let place = policy::backlog(h.resuming, b.env.replayed);
            let Gate::Park(reason) = policy::gate(&h.state, disabled, place, started_at) else {
                return Ok((settings, started_at));
            };
            let attempts = h.state.attempts_of(&b.message_id);
            let last_error = h.state.last_error.clone();
            match self
                .park(b, reason, attempts, last_error.as_deref(), h)
                .await
            {
                Some(outcome) => return Err(outcome),
                // The replay loop finished meanwhile (`h` reloaded): the
                // backlog is delivered, this batch goes on.
                None => info!("the endpoint stopped resuming: deciding again"),
            }
        }
        // Still to be parked after three lost races: never attempt it ahead
        // of a backlog; it comes back at once, its group's order kept.
        warn!("the endpoint's resuming state kept changing: handed back");
        Err(Outcome::HandedBack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Envelope;
    use crate::testing::*;

    #[tokio::test]
    async fn an_expired_endpoint_parks_at_once_without_posting() {
        let f = flow(Memory::default());
        f.ports.set_state("ep", expired_state());
        let envs: Vec<Envelope> = (0..3).map(|i| envelope(i, 1)).collect();
        let out = f.run(&envs, deadline()).await;
        assert!(
            out.iter()
                .all(|(_, o)| *o == Outcome::Parked { reason: "expired" })
        );
        assert!(f.ports.posts().is_empty());
        assert_eq!(f.ports.deleted().len(), 3);
        assert!(
            f.ports.notice_kinds().is_empty(),
            "expired was told once already"
        );
    }

    #[tokio::test]
    async fn a_disabled_endpoint_is_parked_not_attempted() {
        let f = flow(Memory::default());
        let mut settings = (*f.ports.endpoints.lock().unwrap()["ep"]).clone();
        settings.enabled = false;
        f.ports
            .endpoints
            .lock()
            .unwrap()
            .insert("ep".into(), Arc::new(settings));
        let envs = [envelope(0, 1)];
        let out = f.run(&envs, deadline()).await;
        assert_eq!(out[0].1, Outcome::Parked { reason: "disabled" });
        assert!(f.ports.posts().is_empty());
    }

    /// Resuming: new batches are parked behind the backlog (counted on the
    /// health item), replayed ones delivered, in event order.
    #[tokio::test]
    async fn a_resuming_endpoint_parks_new_batches_and_delivers_replayed_ones() {
        let f = flow(Memory::default());
        f.ports.set_resuming("ep", true);
        let envs = [replayed(0), envelope(1, 1), replayed(2), envelope(3, 1)];
        let out = f.run(&envs, deadline()).await;
        let outcomes: Vec<_> = out.iter().map(|(_, o)| o.clone()).collect();
        let behind = Outcome::Parked { reason: "resuming" };
        assert_eq!(
            outcomes,
            [
                Outcome::Delivered,
                behind.clone(),
                Outcome::Delivered,
                behind
            ]
        );
        let posted: Vec<String> = f.ports.posts().into_iter().map(|p| p.0).collect();
        let id = |i: u128| uuid::Uuid::from_u128(i + 1).to_string();
        assert_eq!(posted, [id(0), id(2)]);
        let parked: Vec<String> = f.ports.parked().into_iter().map(|p| p.0).collect();
        assert_eq!(parked, [id(1), id(3)], "in queue order");
        let health = f.ports.health.lock().unwrap()["ep"].clone();
        assert_eq!(health.parked_seq, 2, "each park counted for the flip");
        assert!(health.resuming, "push never ends the resuming");
    }

    /// Not resuming: a replayed batch and a new one are both delivered.
    #[tokio::test]
    async fn without_resuming_replayed_and_new_batches_are_delivered() {
        let f = flow(Memory::default());
        let envs = [replayed(0), envelope(1, 1)];
        let out = f.run(&envs, deadline()).await;
        assert!(out.iter().all(|(_, o)| *o == Outcome::Delivered), "{out:?}");
    }
}
