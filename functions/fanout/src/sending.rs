//! Sending one plan: every message not recorded as sent, in plan order per
//! endpoint, bodies from the event or else from the transactions table;
//! what SQS refuses for good is parked; on a transient failure, save the
//! sent-progress and point the replay at the first record not handled.

use crate::decoding::{self, Record};
use crate::failure::{Failure, FanoutError, Sent};
use crate::parking;
use crate::planning;
use crate::ports::{ParkingPort, PlansPort, QueuePort, RoutingPort, TransactionsPort};
use crate::tally::Tally;
use crate::walk::{Walk, now_unix};
use platformsync_aws::delivery_queue::OutgoingBatch;
use platformsync_aws::fanout_plans::{Found, Parked, Plan};
use platformsync_domain::batch::BatchEntry;
use platformsync_domain::dedup::StorageKey;
use platformsync_domain::record::StoredTransaction;
use std::collections::{BTreeSet, HashMap};
use tracing::{error, warn};

/// Entries read back from the transactions table, and the keys that are
/// gone or unusable there with the reason.
type Rebuilt = (HashMap<String, BatchEntry>, HashMap<String, String>);

impl<R, P, K, T, Q> Walk<'_, R, P, K, T, Q>
where
    R: RoutingPort,
    P: PlansPort,
    K: ParkingPort,
    T: TransactionsPort,
    Q: QueuePort,
{
    /// Sends the plan's messages not yet recorded as sent. `covered`: the
    /// event's records the plan covers (a failure names the first of them
    /// not fully handled).
    pub(crate) async fn send_plan(
        &self,
        records: &[Record],
        covered: &[usize],
        found: Found,
        tally: &mut Tally,
    ) -> Result<(), Failure> {
        let Found { plan, sent, .. } = found;
        let first = covered[0];
        let mut sent: Vec<bool> = (0..plan.messages.len())
            .map(|i| sent.get(i).copied().unwrap_or(false))
            .collect();
        tally.already_sent += sent.iter().filter(|s| **s).count();
        let todo: Vec<usize> = (0..plan.messages.len()).filter(|&i| !sent[i]).collect();
        if todo.is_empty() {
            return Ok(());
        }

        // Bodies: from the event, else from the transactions table.
        let present: HashMap<&str, usize> = covered
            .iter()
            .filter_map(|&r| planning::key_of(&records[r]).map(|k| (k, r)))
            .collect();
        let absent: BTreeSet<&str> = todo
            .iter()
            .flat_map(|&m| plan.messages[m].items.iter())
            .map(|&item| plan.keys[item as usize].as_str())
            .filter(|key| !present.contains_key(key))
            .collect();
        let (rebuilt, unavailable) = if absent.is_empty() {
            Rebuilt::default()
        } else {
            self.before_deadline(first)?;
            let rebuilt = self
                .rebuild(&plan, &absent)
                .await
                .map_err(|error| Failure::at(first, error))?;
            tally.rebuilt += rebuilt.0.len();
            rebuilt
        };
        let mut entries: HashMap<&str, &BatchEntry> = HashMap::new();
        for (key, &r) in &present {
            if let Some(p) = records[r].pushable() {
                entries.insert(key, &p.entry);
            }
        }
        for (key, entry) in &rebuilt {
            entries.insert(key.as_str(), entry);
        }

        let mut outgoing: Vec<OutgoingBatch> = Vec::with_capacity(todo.len());
        let mut sendable: Vec<usize> = Vec::with_capacity(todo.len());
        let mut refused: Vec<(usize, String)> = Vec::new();
        for &m in &todo {
            match planning::render(&plan, m, &entries) {
                Ok(batch) => {
                    outgoing.push(batch);
                    sendable.push(m);
                }
                Err(why) => {
                    let detail = plan.messages[m]
                        .items
                        .iter()
                        .find_map(|&i| unavailable.get(&plan.keys[i as usize]))
                        .cloned()
                        .unwrap_or(why);
                    refused.push((m, detail));
                }
            }
        }
        let report = self.queue.send_before(&outgoing, self.deadline).await;
        drop(outgoing);
        tally.sqs_requests += report.requests;
        tally.retried_entries += report.retried_entries;
        for (&m, result) in sendable.iter().zip(report.outcomes) {
            match Sent::from(result) {
                Sent::Accepted => {
                    tally.messages_sent += 1;
                    sent[m] = true;
                }
                Sent::Refused(reason) => refused.push((m, reason)),
                Sent::Transient(e) => {
                    tally.failed_batches += 1;
                    let (endpoint, _) = &plan.endpoints[plan.messages[m].endpoint];
                    warn!(
                        endpoint = %endpoint,
                        message_id = %plan.messages[m].message_id,
                        error = %e,
                        "batch not sent; the stream batch will be retried from the plan"
                    );
                }
            }
        }
        if !refused.is_empty() && !self.near() {
            self.park_refused(&plan, &refused, &mut sent, tally).await;
        }
        if sent.iter().all(|s| *s) {
            return Ok(());
        }
        self.answer_unsent(records, first, &present, &plan, &sent, tally)
            .await
    }

    /// Parks messages that can never be sent; they then count as done. If
    /// parking fails they stay unsent, and the batch is retried.
    async fn park_refused(
        &self,
        plan: &Plan,
        refused: &[(usize, String)],
        sent: &mut [bool],
        tally: &mut Tally,
    ) {
        let parked: Vec<Parked> = refused
            .iter()
            .map(|(m, reason)| {
                error!(message_id = %plan.messages[*m].message_id, reason = %reason, "message refused for good: parked with its keys");
                parking::refused(plan, *m, reason)
            })
            .collect();
        match self.parking.park(&parked, now_unix()).await {
            Ok(()) => {
                tally.parked += parked.len();
                for (m, _) in refused {
                    sent[*m] = true;
                }
            }
            Err(source) => {
                tally.plan_write_failed = true;
                error!(error = %source, "could not park refused messages; retried with the batch");
            }
        }
    }

    /// Some messages are not sent: the failure names the first record of
    /// the event in one of them (records before it are done). Saves the
    /// sent-progress and makes the replay, which starts at that record,
    /// find the plan; if that pointer cannot be written, the whole event is
    /// reported (its replay starts where this one found the plan).
    async fn answer_unsent(
        &self,
        records: &[Record],
        first: usize,
        present: &HashMap<&str, usize>,
        plan: &Plan,
        sent: &[bool],
        tally: &mut Tally,
    ) -> Result<(), Failure> {
        // Unsent messages holding only records absent from the event belong
        // to a later part of a bisected batch, which finds this plan
        // through its pointer.
        let failed_at = (0..plan.messages.len())
            .filter(|&m| !sent[m])
            .flat_map(|m| plan.messages[m].items.iter())
            .filter_map(|&i| present.get(plan.keys[i as usize].as_str()).copied())
            .min();
        let Some(failed_at) = failed_at else {
            return Ok(());
        };
        let now = now_unix();
        if !self.near() {
            match self.plans.save_sent(&plan.key, sent, now).await {
                Ok(()) => tally.progress_saved = true,
                Err(e) => {
                    tally.progress_write_failed = true;
                    warn!(error = %e, "sent-progress not saved: the replay re-sends (same MessageIds)");
                }
            }
        }
        let key = planning::key_of(&records[failed_at]).unwrap_or_default();
        if failed_at != first {
            self.before_deadline(first)?;
            if let Err(source) = self.plans.point(key, &plan.key, now).await {
                let at = key.to_owned();
                return Err(Failure::at(first, FanoutError::WritePointer { at, source }));
            }
            tally.pointers_written += 1;
        }
        let batches = sent.iter().filter(|s| !**s).count();
        Err(Failure::at(failed_at, FanoutError::NotSent { batches }))
    }

    /// Entries of `keys` from the transactions table; keys missing or
    /// unusable there are returned with the reason (their messages are
    /// parked: nothing else can ever send them).
    async fn rebuild(&self, plan: &Plan, keys: &BTreeSet<&str>) -> Result<Rebuilt, FanoutError> {
        // Plan keys are `SERIAL|SORT KEY`; one that is not cannot be read
        // back, and is reported missing below.
        let wanted: Vec<(&str, StorageKey)> = keys
            .iter()
            .filter_map(|k| Some((*k, k.parse().ok()?)))
            .collect();
        let storage_keys: Vec<StorageKey> = wanted.iter().map(|(_, k)| k.clone()).collect();
        let mut stored = self
            .transactions
            .get_many(&storage_keys)
            .await
            .map_err(|source| FanoutError::Rebuild {
                plan: plan.key.clone(),
                keys: keys.len(),
                source,
            })?;
        let mut by_key: HashMap<&str, StoredTransaction> = wanted
            .iter()
            .filter_map(|(k, storage)| stored.remove(storage).map(|t| (*k, t)))
            .collect();
        let mut entries = HashMap::new();
        let mut missing = HashMap::new();
        for key in keys {
            match by_key.remove(key).map(decoding::pushable) {
                Some(Ok(p)) => {
                    entries.insert((*key).to_owned(), p.entry);
                }
                Some(Err(reason)) => {
                    missing.insert((*key).to_owned(), reason);
                }
                None => {
                    missing.insert(
                        (*key).to_owned(),
                        format!("transaction {key} is not in the transactions table"),
                    );
                }
            }
        }
        Ok((entries, missing))
    }
}
