//! One endpoint's batches, in order: each waits for the one before it; the
//! first that is not acknowledged stops the group and hands the rest back
//! (FIFO: they must not overtake it); the acknowledged ones are deleted as
//! soon as the group is done.

use std::collections::HashMap;
use std::time::Instant;

use platformsync_aws::health::Versioned;
use tracing::{info, warn};

use crate::bookkeeping::Known;
use crate::flow::{Envelope, Flow};
use crate::outcome::Outcome;
use crate::ports::Ports;

/// Messages grouped by FIFO group, groups in order of first appearance,
/// messages in event order. A message without a group is its own group.
pub fn group_in_order(records: &[Envelope]) -> Vec<Vec<&Envelope>> {
    let mut groups: Vec<Vec<&Envelope>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for message in records {
        match message.group.as_deref().filter(|g| !g.is_empty()) {
            Some(group) => match index.get(group) {
                Some(&i) => groups[i].push(message),
                None => {
                    index.insert(group, groups.len());
                    groups.push(vec![message]);
                }
            },
            None => groups.push(vec![message]),
        }
    }
    groups
}

impl<P: Ports> Flow<P> {
    /// One endpoint's messages in order, stopping at the first that is not
    /// acknowledged; the acknowledged ones are deleted at once.
    pub(crate) async fn group<'a>(
        &self,
        messages: Vec<&'a Envelope>,
        known: &Known,
        deadline: Instant,
    ) -> Vec<(&'a Envelope, Outcome)> {
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut health: Option<Versioned> = None;
        for (i, message) in messages.iter().enumerate() {
            let time_left = deadline.saturating_duration_since(Instant::now());
            let outcome = if time_left < self.needs() {
                info!(
                    left_ms = time_left.as_millis() as u64,
                    "too little time left for a whole attempt"
                );
                Outcome::HandedBack
            } else {
                self.one(message, &mut health, known, deadline).await
            };
            let stop = !outcome.is_acknowledged();
            let handed_back = outcome == Outcome::HandedBack;
            outcomes.push((*message, outcome));
            if stop {
                // FIFO: the rest of this endpoint's batches must not overtake
                // the one that stopped. Make them visible at once; the group
                // stays locked by the stopped one while it is invisible.
                let start = if handed_back { i } else { i + 1 };
                let rest = &messages[start..];
                let receipts: Vec<&str> =
                    rest.iter().filter_map(|m| m.receipt.as_deref()).collect();
                if !receipts.is_empty()
                    && let Err(e) = self.ports.release(&receipts).await
                {
                    // They come back after the queue's visibility timeout.
                    warn!(error = %e, count = receipts.len(), "could not hand back unprocessed batches");
                }
                outcomes.extend(
                    rest[usize::from(handed_back)..]
                        .iter()
                        .map(|m| (*m, Outcome::HandedBack)),
                );
                break;
            }
        }
        // Each endpoint on its own clock: acknowledged now, not when the
        // invocation's slowest endpoint is done.
        let done: Vec<&str> = outcomes
            .iter()
            .filter(|(_, o)| o.is_acknowledged())
            .filter_map(|(m, _)| m.receipt.as_deref())
            .collect();
        if !done.is_empty()
            && let Err(e) = self.ports.delete(&done).await
        {
            // The invocation's answer acknowledges them anyway.
            warn!(error = %e, "could not delete delivered batches early");
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_failed_head_holds_its_group_and_the_rest_is_handed_back() {
        let f = flow(Memory::default());
        f.ports.answer(failed());
        let envs: Vec<Envelope> = (0..3).map(|i| envelope(i, 2)).collect();
        let out = f.run(&envs, deadline()).await;
        let outcomes: Vec<_> = out.iter().map(|(_, o)| o.clone()).collect();
        assert!(
            matches!(outcomes[0], Outcome::Retrying { delay } if delay <= Duration::from_secs(3))
        );
        assert_eq!(outcomes[1..], [Outcome::HandedBack, Outcome::HandedBack]);
        assert_eq!(f.ports.posts().len(), 1);
        assert!(f.ports.deleted().is_empty());
        assert_eq!(f.ports.state("ep").consecutive_failures, 1);
        assert!(
            f.ports.notice_kinds().is_empty(),
            "one failure is no incident notice"
        );
    }

    #[tokio::test]
    async fn delivered_batches_are_deleted_when_their_group_is_done() {
        let f = flow(Memory::default());
        let envs: Vec<Envelope> = (0..3).map(|i| envelope(i, 2)).collect();
        let out = f.run(&envs, deadline()).await;
        assert!(out.iter().all(|(_, o)| *o == Outcome::Delivered));
        assert_eq!(f.ports.deleted(), ["r-0", "r-1", "r-2"]);
    }

    #[test]
    fn groups_keep_event_order() {
        let e = |id: &str, g: Option<&str>| Envelope {
            id: id.into(),
            group: g.map(str::to_owned),
            ..Default::default()
        };
        let records = vec![
            e("a1", Some("a")),
            e("b1", Some("b")),
            e("a2", Some("a")),
            e("x", None),
            e("b2", Some("b")),
        ];
        let ids: Vec<Vec<&str>> = group_in_order(&records)
            .iter()
            .map(|g| g.iter().map(|m| m.id.as_str()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["a1", "a2"], vec!["b1", "b2"], vec!["x"]]);
    }
}
