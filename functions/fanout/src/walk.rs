//! The walk of one stream batch (see the crate docs for the whole flow):
//! park the poison, then plan by plan — find the plan or make and write
//! one, point the replay at it, send it ([`crate::sending`]) — stopping at
//! the first failure, because a later plan would put an endpoint's later
//! messages ahead of the failed ones. All I/O goes through [`crate::ports`].

use crate::decoding::{Disposition, Record};
use crate::failure::{Failure, FanoutError};
use crate::parking;
use crate::planning;
use crate::ports::{ParkingPort, PlansPort, QueuePort, RoutingPort, TransactionsPort};
use crate::tally::Tally;
use platformsync_aws::StoreError;
use platformsync_aws::fanout_plans::{Created, Found, MAX_PLAN_BYTES, Parked, Plan};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{error, warn};

/// One invocation's walk: the ports it goes through and its deadline.
pub(crate) struct Walk<'a, R, P, K, T, Q> {
    pub routing: &'a R,
    pub plans: &'a P,
    pub parking: &'a K,
    pub transactions: &'a T,
    pub queue: &'a Q,
    /// Lambda's deadline (or the configured time budget).
    pub deadline: Instant,
    /// No request starts closer than this to the deadline.
    pub margin: Duration,
}

pub(crate) fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl<R, P, K, T, Q> Walk<'_, R, P, K, T, Q>
where
    R: RoutingPort,
    P: PlansPort,
    K: ParkingPort,
    T: TransactionsPort,
    Q: QueuePort,
{
    /// Fans out one stream batch; never fails: a failure is the tally's
    /// `first_failed`, the record Lambda retries from.
    pub async fn fan_out(&self, records: &[Record]) -> Tally {
        let mut tally = Tally {
            records: records.len(),
            ..Tally::default()
        };
        let mut poison: Vec<Parked> = Vec::new();
        for record in records {
            match &record.disposition {
                Disposition::Push(_) => tally.pushable += 1,
                Disposition::Skip(_) => tally.skipped += 1,
                Disposition::Unreadable(p) => {
                    tally.unreadable += 1;
                    error!(record = %record.id, reason = %p.reason, "poison stream record: parked, not pushed");
                    poison.push(parking::poison(record, p));
                }
            }
        }
        if let Some(Failure { record, error }) = self.walk(records, poison, &mut tally).await {
            tally.plan_write_failed |= error.is_write_failure();
            let id = records[record].id.clone();
            warn!(record = %id, error = %error, "not fully handled; Lambda retries from this record");
            tally.first_failed = Some(id);
        }
        tally
    }

    /// Whether a request started now could outlive the deadline.
    pub fn near(&self) -> bool {
        self.deadline.saturating_duration_since(Instant::now()) < self.margin
    }

    /// `Err(Deadline)` at `record` when no request may start.
    pub fn before_deadline(&self, record: usize) -> Result<(), Failure> {
        if self.near() {
            return Err(Failure::at(record, FanoutError::Deadline));
        }
        Ok(())
    }

    /// Parks the poison, then walks the pushable records plan by plan.
    async fn walk(
        &self,
        records: &[Record],
        poison: Vec<Parked>,
        tally: &mut Tally,
    ) -> Option<Failure> {
        if !poison.is_empty()
            && let Err(failure) = self.park(0, &poison, tally).await
        {
            return Some(failure);
        }
        let pushable: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].pushable().is_some())
            .collect();
        let mut i = 0;
        while i < pushable.len() {
            match self.one_plan(records, &pushable[i..], tally).await {
                Ok(covered) => i += covered,
                Err(failure) => return Some(failure),
            }
        }
        None
    }

    /// Finds or makes the plan starting at `pushable[0]`, points the rest
    /// of a shortened event at it, sends it; how many records it covered.
    async fn one_plan(
        &self,
        records: &[Record],
        pushable: &[usize],
        tally: &mut Tally,
    ) -> Result<usize, Failure> {
        let at = pushable[0];
        let key = planning::key_of(&records[at]).unwrap_or_default();
        self.before_deadline(at)?;
        let found = match self.plans.lookup(key, now_unix()).await {
            Ok(Some(found)) => {
                tally.plans_found += 1;
                found
            }
            Ok(None) => self.new_plan(records, pushable, tally).await?,
            Err(source) => {
                let key = key.to_owned();
                return Err(Failure::at(at, FanoutError::Lookup { key, source }));
            }
        };
        let covered = self.coverage(records, pushable, &found.plan, tally).await?;
        self.send_plan(records, &pushable[..covered], found, tally)
            .await?;
        Ok(covered)
    }

    /// Parks `parked` (failing at `record` if it cannot be written).
    pub async fn park(
        &self,
        record: usize,
        parked: &[Parked],
        tally: &mut Tally,
    ) -> Result<(), Failure> {
        self.before_deadline(record)?;
        self.parking
            .park(parked, now_unix())
            .await
            .map_err(|source| {
                let records = parked.len();
                Failure::at(record, FanoutError::Park { records, source })
            })?;
        tally.parked += parked.len();
        Ok(())
    }

    /// How many of `pushable` (from the first) `plan` covers, in order; and,
    /// when the event ends before the plan does, a pointer at the plan's
    /// next key, written before anything is sent, so the replay or the
    /// bisected half that starts there finds the plan.
    async fn coverage(
        &self,
        records: &[Record],
        pushable: &[usize],
        plan: &Plan,
        tally: &mut Tally,
    ) -> Result<usize, Failure> {
        let first = pushable[0];
        let first_key = planning::key_of(&records[first]).unwrap_or_default();
        let Some(start) = plan.position(first_key) else {
            // A pointer to a plan without the key: corrupt, never written so.
            let source = StoreError::Malformed {
                resource: "fan-out plans".into(),
                key: plan.key.clone(),
                message: "the plan found does not hold the key".into(),
            };
            let key = first_key.to_owned();
            return Err(Failure::at(first, FanoutError::Lookup { key, source }));
        };
        let covered = pushable
            .iter()
            .zip(&plan.keys[start..])
            .take_while(|(r, k)| planning::key_of(&records[**r]) == Some(k.as_str()))
            .count();
        let next = start + covered;
        if covered == pushable.len() && next < plan.keys.len() {
            self.before_deadline(first)?;
            let at = &plan.keys[next];
            if let Err(source) = self.plans.point(at, &plan.key, now_unix()).await {
                let at = at.clone();
                return Err(Failure::at(first, FanoutError::WritePointer { at, source }));
            }
            tally.pointers_written += 1;
        }
        Ok(covered)
    }

    /// Plans `pushable` (from the first record, as many as fit one plan
    /// item), parks what it leaves out, writes the plan. Nothing is sent
    /// before the plan is stored.
    async fn new_plan(
        &self,
        records: &[Record],
        pushable: &[usize],
        tally: &mut Tally,
    ) -> Result<Found, Failure> {
        let first = pushable[0];
        let fail = |error| Failure::at(first, error);
        let serials: BTreeSet<&str> = pushable
            .iter()
            .filter_map(|&r| records[r].pushable().map(|p| p.serial.as_str()))
            .collect();
        self.before_deadline(first)?;
        let (routing, reads) = self.routing.routing(&serials).await.map_err(|source| {
            let safes = serials.len();
            fail(FanoutError::Owners { safes, source })
        })?;
        tally.safes_read += reads.safes_read;
        tally.customers_read += reads.customers_read;
        let created_at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        // Halve until the plan item fits (many endpoints with small batches).
        let mut take = pushable.len();
        let planned = loop {
            let planned = planning::make_plan(records, &pushable[..take], &routing, &created_at)
                .map_err(fail)?;
            let fits = planned
                .plan
                .as_ref()
                .is_none_or(|p| p.encoded_bytes() <= MAX_PLAN_BYTES);
            if fits || take == 1 {
                break planned;
            }
            take = take.div_ceil(2);
        };
        let Some(plan) = planned.plan else {
            return Err(fail(FanoutError::Deadline));
        };
        if !planned.unowned.is_empty() {
            let safes: BTreeSet<&str> = planned
                .unowned
                .iter()
                .filter_map(|&i| records[i].pushable().map(|p| p.serial.as_str()))
                .collect();
            warn!(transactions = planned.unowned.len(), safes = ?safes, "transactions of safes no customer owns: kept, not pushed");
        }
        if !planned.parked.is_empty() {
            let parked: Vec<Parked> = planned
                .parked
                .iter()
                .map(|left| {
                    error!(record = %records[left.record].id, reason = %left.reason, "transaction parked, not pushed");
                    parking::left_out(records, left)
                })
                .collect();
            self.park(first, &parked, tally).await?;
        }
        self.before_deadline(first)?;
        match self.plans.create(&plan, now_unix()).await {
            Ok(Created::Written) => {
                tally.plans_created += 1;
                tally.unowned += planned.unowned.len();
                tally.invalid_owner += planned.invalid_owner;
                tally.oversized += planned.oversized;
                tally.batches += plan.messages.len();
                tally.transactions_batched += planned.transactions_batched;
                Ok(Found {
                    sent: Vec::new(),
                    plan,
                    via_pointer: false,
                })
            }
            Ok(Created::Existing(found)) => {
                tally.plans_found += 1;
                Ok(*found)
            }
            Err(source) => {
                let key = plan.key.clone();
                Err(fail(FanoutError::WritePlan { key, source }))
            }
        }
    }
}
