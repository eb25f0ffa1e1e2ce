//! `expired list|show|replay` and `endpoint enable|disable|rotate-key`: the
//! parked batches of expired or disabled endpoints (and refused split
//! parts), and the endpoint switches that go with them.
//!
//! Parked batches live in the delivery ledger table
//! ([`platformsync_aws::parked`]), in the order they were parked, which is
//! the order they were queued in. A replay sends each back to the delivery
//! queue with its original body (so its original `MessageId`), in that
//! order, and removes it only once SQS accepted it; the first failure stops
//! the replay, so nothing after it overtakes it.

use anyhow::{Context, Result, bail};
use platformsync_aws::health::{HealthState, HealthStore};
use platformsync_aws::ledger::Ledger;
use platformsync_aws::parked::{Parked, ParkedStore};
use platformsync_domain::endpoint::{EndpointId, EndpointSettings};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ops::Ops;
use crate::table;
use crate::{Cmd, ExpiredCommand, KeyArgs};

/// A parked batch as listed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    endpoint_id: String,
    customer_id: String,
    /// The parked item's id (its place in the endpoint's order).
    id: String,
    message_id: String,
    reason: String,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    parked_at: String,
    /// Seconds since it was parked.
    age_seconds: i64,
    transactions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_message_id: Option<String>,
    /// Only in `show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_keys: Option<Vec<String>>,
}

fn age_seconds(parked_at: &str, now: OffsetDateTime) -> i64 {
    OffsetDateTime::parse(parked_at, &Rfc3339)
        .map(|t| (now - t).whole_seconds().max(0))
        .unwrap_or_default()
}

/// "3d 4h", "12m 5s": an age people read.
pub(crate) fn human_age(secs: i64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

fn listed(p: &Parked, now: OffsetDateTime, keys: bool) -> Listed {
    Listed {
        endpoint_id: p.endpoint_id.clone(),
        customer_id: p.customer_id.clone(),
        id: p.id.clone(),
        message_id: p.message_id.clone(),
        reason: p.reason.clone(),
        attempts: p.attempts,
        last_error: p.last_error.clone(),
        parked_at: p.parked_at.clone(),
        age_seconds: age_seconds(&p.parked_at, now),
        transactions: p.transaction_keys.len(),
        parent_message_id: p.parent_message_id.clone(),
        transaction_keys: keys.then(|| p.transaction_keys.clone()),
    }
}

fn parked_store(ops: &Ops) -> ParkedStore {
    ParkedStore::new(ops.dynamodb.clone(), ops.names.ledger_table.clone())
}

fn health_store(ops: &Ops) -> HealthStore {
    HealthStore::new(ops.dynamodb.clone(), ops.names.config_table.clone())
}

/// Every registered endpoint, by customer then id.
async fn all_endpoints(ops: &Ops) -> Result<Vec<EndpointSettings>> {
    let mut customers = ops.config.customers().await?;
    customers.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    let mut all = Vec::new();
    for c in customers {
        let mut endpoints = ops.config.endpoints_of(&c.customer_id).await?;
        endpoints.sort_by(|a, b| a.endpoint_id.cmp(&b.endpoint_id));
        all.extend(endpoints);
    }
    Ok(all)
}

/// The endpoints a command is about: one (`--endpoint`) or all.
async fn endpoint_ids(ops: &Ops, endpoint: Option<&str>) -> Result<Vec<EndpointId>> {
    match endpoint {
        Some(e) => Ok(vec![typed(e)?]),
        None => Ok(all_endpoints(ops)
            .await?
            .into_iter()
            .map(|e| e.endpoint_id)
            .collect()),
    }
}

pub(crate) async fn expired(cmd: Cmd<'_, '_>, command: ExpiredCommand) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let ops = Ops::connect(target).await;
    let store = parked_store(&ops);
    let now = OffsetDateTime::now_utc();
    match command {
        ExpiredCommand::List { endpoint } => {
            let mut rows = Vec::new();
            for id in endpoint_ids(&ops, endpoint.as_deref()).await? {
                rows.extend(store.list(&id).await?.iter().map(|p| listed(p, now, false)));
            }
            table::list(
                io.out,
                json,
                &rows,
                &[
                    "ENDPOINT",
                    "ID",
                    "MESSAGE",
                    "REASON",
                    "AGE",
                    "ATTEMPTS",
                    "TX",
                    "LAST ERROR",
                ],
                |r| {
                    vec![
                        r.endpoint_id.clone(),
                        r.id.clone(),
                        r.message_id.clone(),
                        r.reason.clone(),
                        human_age(r.age_seconds),
                        r.attempts.to_string(),
                        r.transactions.to_string(),
                        r.last_error.clone().unwrap_or_else(|| "-".into()),
                    ]
                },
            )
        }
        ExpiredCommand::Show { endpoint, id } => {
            let parked = store.list(&typed(&endpoint)?).await?;
            let p = parked
                .iter()
                .find(|p| p.id == id || p.message_id == id)
                .with_context(|| format!("endpoint {endpoint} has no parked batch {id}"))?;
            let shown = listed(p, now, true);
            if json {
                return table::json(io.out, &shown);
            }
            let rows = vec![
                vec!["Endpoint".into(), shown.endpoint_id.clone()],
                vec!["Customer".into(), shown.customer_id.clone()],
                vec!["Id".into(), shown.id.clone()],
                vec!["MessageId".into(), shown.message_id.clone()],
                vec!["Reason".into(), shown.reason.clone()],
                vec!["Attempts".into(), shown.attempts.to_string()],
                vec![
                    "LastError".into(),
                    shown.last_error.clone().unwrap_or_else(|| "-".into()),
                ],
                vec![
                    "ParkedAt".into(),
                    format!("{} ({} ago)", shown.parked_at, human_age(shown.age_seconds)),
                ],
                vec!["Transactions".into(), shown.transactions.to_string()],
            ];
            table::print(io.out, &["FIELD", "VALUE"], &rows)?;
            for key in &p.transaction_keys {
                writeln!(io.out, "  {key}")?;
            }
            Ok(())
        }
        ExpiredCommand::Replay {
            endpoint,
            id,
            all,
            force,
            dry_run,
        } => {
            if endpoint.is_none() && !all {
                bail!("say which: --endpoint E (optionally --id ID) or --all");
            }
            let mut report = Vec::new();
            for e in endpoint_ids(&ops, endpoint.as_deref()).await? {
                let parked = store.list(&e).await?;
                if parked.is_empty() {
                    continue;
                }
                let chosen: Vec<&Parked> = match &id {
                    Some(id) => {
                        let at = parked
                            .iter()
                            .position(|p| &p.id == id || &p.message_id == id)
                            .with_context(|| format!("endpoint {e} has no parked batch {id}"))?;
                        // Order: a batch replayed ahead of older parked ones
                        // would reach the endpoint before them.
                        if at > 0 && !force {
                            bail!(
                                "{id} is not endpoint {e}'s oldest parked batch ({} older): \
                                 replaying it alone would overtake them; replay the endpoint \
                                 (--endpoint {e}) or add --force",
                                at
                            );
                        }
                        vec![&parked[at]]
                    }
                    None => parked.iter().collect(),
                };
                if !force {
                    refuse_if_stopped(&ops, &e).await?;
                }
                let queue_url = ops.delivery_queue_url().await?;
                let mut queued = Vec::new();
                for (done, p) in chosen.iter().enumerate() {
                    if dry_run {
                        queued.push(p.message_id.clone());
                        continue;
                    }
                    if let Err(err) = store.replay_one(p, &ops.sqs, &queue_url).await {
                        // Stop at the first failure: nothing may overtake it.
                        return Err(anyhow::Error::new(err).context(format!(
                            "replay of {e} stopped after {done} of {} batches at {}; run it again to continue",
                            chosen.len(),
                            p.message_id
                        )));
                    }
                    if !json {
                        writeln!(
                            io.err,
                            "queued {} ({} of {})",
                            p.message_id,
                            done + 1,
                            chosen.len()
                        )?;
                    }
                    queued.push(p.message_id.clone());
                }
                report.push(serde_json::json!({
                    "EndpointId": e,
                    "Queued": queued,
                    "DryRun": dry_run,
                }));
            }
            if json {
                return table::json(io.out, &report);
            }
            let total: usize = report
                .iter()
                .map(|r| r["Queued"].as_array().map_or(0, Vec::len))
                .sum();
            writeln!(
                io.out,
                "{} {total} parked batch(es) of {} endpoint(s), in their original order and MessageId",
                if dry_run { "would replay" } else { "replayed" },
                report.len()
            )?;
            Ok(())
        }
    }
}

/// Batches replayed to a disabled or still expired endpoint are parked
/// again at once: say what to do instead.
async fn refuse_if_stopped(ops: &Ops, endpoint: &EndpointId) -> Result<()> {
    let settings = ops.find_endpoint(endpoint).await?;
    if !settings.enabled {
        bail!(
            "endpoint {endpoint} is disabled: `platformsync endpoint enable --endpoint {endpoint}` \
             enables it and replays its parked batches (or add --force)"
        );
    }
    let health = health_store(ops).get(endpoint).await?;
    if health.state == HealthState::Expired {
        bail!(
            "endpoint {endpoint} is still expired (no successful probe yet): \
             `platformsync endpoint enable --endpoint {endpoint}` resumes it and replays, \
             or wait for its probe (or add --force)"
        );
    }
    Ok(())
}

/// `endpoint disable`: the push function parks the endpoint's batches
/// (within its settings cache time, `CONFIG_CACHE_SECONDS`, 30 s): nothing
/// is lost, nothing is posted.
pub(crate) async fn disable(cmd: Cmd<'_, '_>, endpoint: &str, dry_run: bool) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let endpoint = &typed(endpoint)?;
    let ops = Ops::connect(target).await;
    let mut settings = ops.find_endpoint(endpoint).await?;
    let was = settings.enabled;
    if !dry_run && was {
        settings.enabled = false;
        ops.config.put_endpoint(&settings).await?;
    }
    if json {
        return table::json(
            io.out,
            &serde_json::json!({"EndpointId": endpoint, "Enabled": false, "WasEnabled": was, "DryRun": dry_run}),
        );
    }
    writeln!(
        io.out,
        "endpoint {endpoint} {}: its batches are parked (kept, in order) within 30 s \
         (the push function's settings cache); `endpoint enable` resumes in order",
        if dry_run {
            "would be disabled"
        } else {
            "disabled"
        }
    )?;
    Ok(())
}

/// How long `endpoint enable` waits for the last replayed batch to be
/// handled by push, plus [`DRAIN_PER_BATCH`] for each batch replayed in the
/// pass, before it leaves the endpoint resuming (run it again to finish:
/// nothing is lost, new batches keep parking behind the backlog, and the
/// `Parked` alarm fires for them).
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// A large backlog takes push a while: each replayed batch adds this much to
/// the wait (a 1,000-batch backlog waits up to about 50 minutes).
const DRAIN_PER_BATCH: std::time::Duration = std::time::Duration::from_secs(3);

/// Most passes of the replay loop (each: replay what is parked, or wait for
/// the replayed batches to be handled, or flip).
const MAX_PASSES: usize = 200;

/// One pass of the replay loop, decided from what it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Batches are parked: queue them (behind what was replayed before).
    Replay,
    /// Nothing parked, but the last replayed batch is not handled yet: a new
    /// batch queued ahead of it may still arrive and be parked behind.
    Drain,
    /// Nothing parked, everything replayed handled: enabled, unless push
    /// parked a batch since (the conditional write fails, the loop goes on).
    Flip,
}

fn step(parked: usize, awaiting_replayed: bool) -> Step {
    match (parked, awaiting_replayed) {
        (1.., _) => Step::Replay,
        (0, true) => Step::Drain,
        (0, false) => Step::Flip,
    }
}

/// An endpoint id from a flag.
fn typed(endpoint: &str) -> Result<EndpointId> {
    EndpointId::parse(endpoint).map_err(anyhow::Error::msg)
}

fn batch_id(message_id: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(message_id).with_context(|| format!("{message_id}: not a MessageId"))
}

/// Whether push has handled the replayed batch `message_id` (delivered,
/// refused, or parked again), waiting up to `wait`. Only evidence of this
/// replay counts: a batch is replayed only when the ledger has no delivery
/// or refusal for it (see [`replayable`]), so one found now is push's work.
async fn handled(
    ledger: &Ledger,
    store: &ParkedStore,
    endpoint: &EndpointId,
    message_id: &str,
    wait: std::time::Duration,
) -> Result<bool> {
    let until = std::time::Instant::now() + wait;
    loop {
        let lookup = ledger.lookup(endpoint, batch_id(message_id)?).await?;
        if lookup.delivered || lookup.refused {
            return Ok(true);
        }
        if store
            .list(endpoint)
            .await?
            .iter()
            .any(|p| p.message_id == message_id)
        {
            return Ok(true);
        }
        if std::time::Instant::now() >= until {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// What the replay loop replays: batches parked because the endpoint was
/// disabled, expired or resuming. Parts the customer refused stay parked for
/// an explicit `expired replay` once the customer has fixed what it refused
/// (replaying them here would post them again and count against the
/// endpoint). A batch the ledger already has (delivered or refused, its
/// parked copy not removed after an earlier replay) is removed, not queued:
/// re-queuing it would give the drain check evidence of nothing.
async fn replayable(
    ledger: &Ledger,
    store: &ParkedStore,
    endpoint: &EndpointId,
) -> Result<Vec<platformsync_aws::parked::Parked>> {
    let mut out = Vec::new();
    for p in store.list(endpoint).await? {
        if p.reason == "refused" {
            continue;
        }
        let seen = ledger.lookup(endpoint, batch_id(&p.message_id)?).await?;
        if seen.delivered || seen.refused {
            store.remove(&p).await?;
            continue;
        }
        out.push(p);
    }
    Ok(out)
}

/// `endpoint enable`: the endpoint resumes (its incident resumed: an expired
/// window starts afresh) and its parked batches are replayed in order,
/// while push parks new batches behind them; when none are left and the
/// replayed ones are handled, the endpoint is enabled with a write that
/// fails if push parked another batch meanwhile (then the loop goes on).
pub(crate) async fn enable(
    cmd: Cmd<'_, '_>,
    endpoint: &str,
    settle: u64,
    dry_run: bool,
) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let endpoint = &typed(endpoint)?;
    let ops = Ops::connect(target).await;
    let mut settings = ops.find_endpoint(endpoint).await?;
    let store = parked_store(&ops);
    // Refused parts are not the enable loop's (see `replayable`).
    let waiting: Vec<_> = store
        .list(endpoint)
        .await?
        .into_iter()
        .filter(|p| p.reason != "refused")
        .collect();
    if dry_run {
        if json {
            return table::json(
                io.out,
                &serde_json::json!({"EndpointId": endpoint, "DryRun": true,
                    "WouldReplay": waiting.iter().map(|p| &p.message_id).collect::<Vec<_>>()}),
            );
        }
        writeln!(
            io.out,
            "would enable {endpoint}, resume its incident and replay {} parked batch(es)",
            waiting.len()
        )?;
        return Ok(());
    }
    let health = health_store(&ops);
    let ledger = Ledger::new(ops.dynamodb.clone(), ops.names.ledger_table.clone());
    // Resuming before enabled: a push that sees the endpoint enabled sees
    // it resuming too, and parks new batches behind the backlog.
    let was_expired = health
        .start_resuming(endpoint, &settings.customer_id)
        .await?;
    if !settings.enabled {
        settings.enabled = true;
        ops.config.put_endpoint(&settings).await?;
        // A push instance that still has "disabled" cached parks (in order)
        // what arrives; the loop below replays that too.
        if settle > 0 {
            if !json {
                writeln!(
                    io.err,
                    "waiting {settle} s for the push function's settings cache"
                )?;
            }
            tokio::time::sleep(std::time::Duration::from_secs(settle)).await;
        }
    }
    let queue_url = ops.delivery_queue_url().await?;
    let mut queued = Vec::new();
    // The last batch queued by the latest pass, and how many that pass queued.
    let mut awaiting: Option<(String, u32)> = None;
    let mut resumed = false;
    let mut stopped: Option<&str> = None;
    for _ in 0..MAX_PASSES {
        // Read before listing: a batch parked after this fails the flip.
        let seen = health.load(endpoint).await?;
        if !seen.resuming {
            resumed = true;
            break;
        }
        // Disabled again, or expired again: what is replayed would only be
        // parked again. Stop; the endpoint stays resuming until the next
        // enable (new batches keep waiting behind, nothing is lost).
        let still_enabled = ops
            .config
            .endpoint(&settings.customer_id, &settings.endpoint_id)
            .await?
            .is_some_and(|s| s.enabled);
        if !still_enabled || seen.state.is_expired() {
            stopped = Some(if still_enabled {
                "the endpoint expired again"
            } else {
                "the endpoint was disabled again"
            });
            break;
        }
        let parked = replayable(&ledger, &store, endpoint).await?;
        match step(parked.len(), awaiting.is_some()) {
            Step::Replay => {
                for (done, p) in parked.iter().enumerate() {
                    store
                        .replay_one(p, &ops.sqs, &queue_url)
                        .await
                        .with_context(|| {
                            format!(
                                "the replay stopped after {done} of {} batches (the endpoint \
                                 stays resuming: new batches wait behind): run \
                                 `platformsync endpoint enable --endpoint {endpoint}` again",
                                parked.len()
                            )
                        })?;
                    if !json {
                        writeln!(io.err, "queued {}", p.message_id)?;
                    }
                    queued.push(p.message_id.clone());
                }
                awaiting = parked
                    .last()
                    .map(|p| (p.message_id.clone(), parked.len() as u32));
            }
            Step::Drain => {
                let (id, batches) = awaiting.take().unwrap_or_default();
                let wait = DRAIN_WAIT + DRAIN_PER_BATCH * batches;
                if !handled(&ledger, &store, endpoint, &id, wait).await? {
                    break;
                }
            }
            Step::Flip => {
                if health.finish_resuming(endpoint, seen.parked_seq).await? {
                    resumed = true;
                    break;
                }
            }
        }
    }
    if json {
        return table::json(
            io.out,
            &serde_json::json!({"EndpointId": endpoint, "Enabled": true,
                "WasExpired": was_expired, "Replayed": queued, "Resuming": !resumed,
                "Stopped": stopped}),
        );
    }
    writeln!(
        io.out,
        "endpoint {endpoint} enabled{}; replayed {} parked batch(es) in order{}",
        if was_expired {
            " (its expired incident resumed)"
        } else {
            ""
        },
        queued.len(),
        if resumed {
            String::new()
        } else if let Some(why) = stopped {
            format!("; still resuming: {why}, run the command again once it is enabled and answers")
        } else {
            "; still resuming (the replayed batches are not all delivered yet: new \
             batches wait behind them): run the command again to finish"
                .to_owned()
        }
    )?;
    Ok(())
}

/// `endpoint rotate-key`: a new version of the endpoint's secret, from
/// standard input (or a file); the push function uses it within its key
/// cache time (at most 5 minutes; at once after a 401). Neither key is
/// printed.
pub(crate) async fn rotate_key(
    cmd: Cmd<'_, '_>,
    endpoint: &str,
    key: &KeyArgs,
    dry_run: bool,
) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let source = crate::ops::KeySource::of(key)?.unwrap_or(crate::ops::KeySource::Stdin);
    let endpoint = &typed(endpoint)?;
    let ops = Ops::connect(target).await;
    let settings = ops.find_endpoint(endpoint).await?;
    let new_key = io.read_key(&source)?;
    let secret = ops.names.endpoint_secret(&settings.endpoint_id);
    let version = if dry_run {
        String::new()
    } else {
        ops.store_key(&secret, endpoint, &new_key).await?
    };
    if json {
        return table::json(
            io.out,
            &serde_json::json!({"EndpointId": endpoint, "Secret": secret,
                "VersionId": version, "DryRun": dry_run, "InEffectWithinSeconds": 300}),
        );
    }
    writeln!(
        io.out,
        "{} the key of {endpoint} (secret {secret}{}): in effect within 5 minutes \
         (the push function's key cache; at once after the endpoint answers 401)",
        if dry_run { "would rotate" } else { "rotated" },
        if version.is_empty() {
            String::new()
        } else {
            format!(", version {version}")
        }
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replay loop's every situation: parked batches are replayed first
    /// (whether or not earlier replays are handled), an empty store with a
    /// replay outstanding waits for it, and only an empty, drained store
    /// tries the flip.
    #[test]
    fn the_replay_loop_replays_then_drains_then_flips() {
        assert_eq!(step(3, false), Step::Replay);
        assert_eq!(step(1, true), Step::Replay);
        assert_eq!(step(0, true), Step::Drain);
        assert_eq!(step(0, false), Step::Flip);
    }
}
