//! `replay --endpoint E --from T1 --to T2`: re-sends an endpoint's
//! transactions of a safe-local time window from the transactions table (a
//! customer lost data on their side, or an outage outlasted every window).
//!
//! - **What**: every safe the endpoint's customer owned at some time (dated
//!   assignments; the safe's undated owner otherwise) is read with one
//!   `Query` on `SerialNumber`, `SortKey` in `[T1, T2)`; a transaction goes
//!   when its customer owned the safe at its time, it is pushable
//!   (`Deliverable` or `Released`) and the endpoint wants it (message type,
//!   whitelist), exactly as the fan-out routes.
//! - **Skipping delivered**: the ledger's delivered batches of the endpoint
//!   (keys resolved through the fan-out's plans) are left out, unless
//!   `--force`.
//! - **Batches**: in safe then time order, split by kind, at most the
//!   endpoint's `MaxBatchSize`. Each chunk's `MessageId` is derived from the
//!   backfill's identity (endpoint, window, `--force`) and the chunk's first
//!   and last keys: a chunk rebuilt after an interruption is the same
//!   message (SQS's dedup id within 5 minutes, the push ledger after).
//! - **Resumable without repeats**: after each chunk is queued, a checkpoint
//!   item (config table, `BACKFILL#<backfill id>` / `CHECKPOINT`: the last
//!   queued key, counts; kept 30 days) records it; a re-run continues after
//!   it. `--restart` ignores it (a new request for the same window).

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result, bail};
use platformsync_aws::config_table::BackfillCheckpoint;
use platformsync_aws::fanout_plans::PlanStore;
use platformsync_aws::ledger::Ledger;
use platformsync_aws::transactions::TransactionStore;
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchEntry, BatchMessage};
use platformsync_domain::endpoint::{EndpointId, EndpointSettings};
use platformsync_domain::record::StoredTransaction;
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::types::MessageKind;
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::ops::{Ops, sdk_error};
use crate::progress::Progress;
use crate::table;
use crate::{Cmd, ReplayArgs};

/// How long a checkpoint is kept (a backfill is resumed within hours).
const CHECKPOINT_DAYS: i64 = 30;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    endpoint_id: String,
    backfill_id: String,
    from: String,
    to: String,
    force: bool,
    dry_run: bool,
    /// Transactions of the window the endpoint wants.
    in_window: usize,
    /// Left out: the ledger shows them delivered (0 with --force).
    skipped_delivered: usize,
    /// Left out: queued by an earlier run of this backfill (checkpoint).
    skipped_checkpoint: usize,
    queued_transactions: usize,
    queued_batches: Vec<String>,
    /// Stopped early by `--max-batches` (run again to continue).
    stopped_early: bool,
}

fn backfill_id(endpoint: &str, from: &str, to: &str, force: bool) -> String {
    let digest = Sha256::digest(format!("{endpoint}\n{from}\n{to}\n{force}").as_bytes());
    hex::encode(&digest[..12])
}

/// The chunk's MessageId: a function of the backfill and the chunk's keys.
fn chunk_message_id(backfill: &str, keys: &[String]) -> uuid::Uuid {
    let mut h = Sha256::new();
    h.update(b"backfill\n");
    h.update(backfill.as_bytes());
    for k in keys {
        h.update(b"\n");
        h.update(k.as_bytes());
    }
    let digest = h.finalize();
    let mut first16 = [0u8; 16];
    first16.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(first16).into_uuid()
}

/// Every transaction of the window the endpoint's customer owned and the
/// endpoint wants, in safe then time order.
async fn window(
    ops: &Ops,
    endpoint: &EndpointSettings,
    from: &str,
    to: &str,
) -> Result<Vec<StoredTransaction>> {
    let customer = &endpoint.customer_id;
    let mut serials: Vec<SerialNumber> = ops
        .config
        .safes()
        .await?
        .into_iter()
        .map(|s| s.serial_number)
        .collect();
    // Safes the customer owned once but no longer: their dated periods.
    serials.extend(
        ops.assignments
            .periods_of(customer, None)
            .await?
            .into_iter()
            .map(|p| p.serial_number),
    );
    serials.sort();
    serials.dedup();
    let store = TransactionStore::new(ops.dynamodb.clone(), ops.names.transactions_table.clone());
    let mut out = Vec::new();
    for serial in serials {
        let ownership = ops.assignments.ownership(&serial).await?;
        if !ownership.owners_ever().any(|c| c == customer) {
            continue;
        }
        for t in store.between(&serial, from, to).await? {
            // `to` is exclusive.
            if t.sort_key.as_str() >= to || !t.status.is_pushable() {
                continue;
            }
            if ownership.owner_at(&t.sort_key) != Some(customer) {
                continue;
            }
            // The endpoint's filters, but not `Enabled`: a backfill to a
            // disabled endpoint is parked by push like any batch.
            let mut wanting = endpoint.clone();
            wanting.enabled = true;
            if wanting.wants(t.kind(), t.type_name()) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

async fn checkpoint(ops: &Ops, id: &str) -> Result<Option<String>> {
    Ok(ops
        .config
        .backfill_checkpoint(id)
        .await?
        .map(|c| c.last_key))
}

async fn save_checkpoint(
    ops: &Ops,
    id: &str,
    endpoint: &EndpointId,
    last_key: &str,
    message_id: &str,
) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    let checkpoint = BackfillCheckpoint {
        endpoint_id: endpoint.clone(),
        last_key: last_key.to_owned(),
        last_message_id: message_id.to_owned(),
        updated_at: crate::rfc3339(now),
        expires_at: now.unix_timestamp() + CHECKPOINT_DAYS * 86_400,
    };
    ops.config.put_backfill_checkpoint(id, &checkpoint).await?;
    Ok(())
}

pub(crate) async fn run(cmd: Cmd<'_, '_>, args: ReplayArgs) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let from = crate::commands::assignment_bound(&args.from).context("--from")?;
    let to = crate::commands::assignment_bound(&args.to).context("--to")?;
    if from >= to {
        bail!("--from must be before --to (the window is [from, to))");
    }
    let ops = Ops::connect(target).await;
    let id = EndpointId::parse(&args.endpoint).map_err(anyhow::Error::msg)?;
    let endpoint = ops.find_endpoint(&id).await?;
    let id = backfill_id(endpoint.endpoint_id.as_str(), &from, &to, args.force);

    let mut txs = window(&ops, &endpoint, &from, &to).await?;
    let in_window = txs.len();
    let mut skipped_delivered = 0;
    if !args.force {
        let ledger = Ledger::new(ops.dynamodb.clone(), ops.names.ledger_table.clone()).with_plans(
            PlanStore::new(ops.dynamodb.clone(), ops.names.config_table.clone()),
        );
        let delivered: HashSet<String> = ledger
            .delivered(&endpoint.endpoint_id)
            .await?
            .into_iter()
            .flat_map(|b| b.transaction_keys)
            .collect();
        txs.retain(|t| {
            let keep = !delivered.contains(&t.key());
            if !keep {
                skipped_delivered += 1;
            }
            keep
        });
    }
    // Order: by safe, then time (the stream's order per safe); a resumed run
    // continues after the checkpoint's key in this order.
    txs.sort_by(|a, b| (&a.serial_number, &a.sort_key).cmp(&(&b.serial_number, &b.sort_key)));
    let resume_after = if args.restart {
        None
    } else {
        checkpoint(&ops, &id).await?
    };
    let mut skipped_checkpoint = 0;
    if let Some(after) = &resume_after {
        let before = txs.len();
        txs.retain(|t| t.key().as_str() > after.as_str());
        skipped_checkpoint = before - txs.len();
    }

    // Chunks: consecutive runs of one kind, at most MaxBatchSize each.
    let max = usize::from(endpoint.max_batch_size.max(1));
    // `MessageKind` orders `Transactions` first.
    let mut by_kind: BTreeMap<MessageKind, Vec<&StoredTransaction>> = BTreeMap::new();
    for t in &txs {
        by_kind.entry(t.kind()).or_default().push(t);
    }
    let chunks: Vec<Vec<&StoredTransaction>> = by_kind
        .values()
        .flat_map(|v| v.chunks(max).map(<[_]>::to_vec).collect::<Vec<_>>())
        .collect();
    let url = if args.dry_run {
        String::new()
    } else {
        ops.delivery_queue_url().await?
    };
    let created_at = crate::rfc3339(OffsetDateTime::now_utc());
    let mut report = Report {
        endpoint_id: endpoint.endpoint_id.to_string(),
        backfill_id: id.clone(),
        from: from.clone(),
        to: to.clone(),
        force: args.force,
        dry_run: args.dry_run,
        in_window,
        skipped_delivered,
        skipped_checkpoint,
        queued_transactions: 0,
        queued_batches: Vec::new(),
        stopped_early: false,
    };
    let progress = Progress::new(txs.len() as u64, "transactions", json);
    for chunk in &chunks {
        if args
            .max_batches
            .is_some_and(|m| report.queued_batches.len() >= m)
        {
            report.stopped_early = true;
            break;
        }
        let keys: Vec<String> = chunk.iter().map(|t| t.key()).collect();
        let message_id = chunk_message_id(&id, &keys);
        let kind = chunk[0].kind();
        let items = chunk
            .iter()
            .zip(&keys)
            .map(|(t, key)| {
                Ok(BatchEntry {
                    key: key.clone(),
                    payload: RawValue::from_string(t.payload.clone())
                        .with_context(|| format!("stored payload of {key} is not JSON"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let message = BatchMessage {
            version: BATCH_MESSAGE_VERSION,
            message_id,
            endpoint_id: endpoint.endpoint_id.clone(),
            customer_id: endpoint.customer_id.clone(),
            kind,
            created_at: created_at.clone(),
            items,
            // Not a planned message: the ledger keeps its keys.
            plan_ref: None,
        };
        if !args.dry_run {
            let body = serde_json::to_string(&message)?;
            ops.sqs
                .send_message()
                .queue_url(&url)
                .message_group_id(endpoint.endpoint_id.as_str())
                .message_deduplication_id(message_id.to_string())
                .message_body(body)
                .send()
                .await
                .map_err(|e| sdk_error(e, "SendMessage (backfill)"))
                .with_context(|| {
                    format!(
                        "backfill stopped after {} batch(es); run the same command again to continue",
                        report.queued_batches.len()
                    )
                })?;
            let last = keys.last().map(String::as_str).unwrap_or_default();
            save_checkpoint(
                &ops,
                &id,
                &endpoint.endpoint_id,
                last,
                &message_id.to_string(),
            )
            .await?;
        }
        report.queued_transactions += chunk.len();
        report.queued_batches.push(message_id.to_string());
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    if json {
        return table::json(io.out, &report);
    }
    writeln!(
        io.out,
        "{} {} transaction(s) in {} batch(es) to {} (window {} .. {}: {} wanted, {} already delivered{}, {} queued by an earlier run){}",
        if args.dry_run {
            "would queue"
        } else {
            "queued"
        },
        report.queued_transactions,
        report.queued_batches.len(),
        report.endpoint_id,
        from,
        to,
        in_window,
        skipped_delivered,
        if args.force {
            " (--force: not skipped)"
        } else {
            ""
        },
        skipped_checkpoint,
        if report.stopped_early {
            "; stopped early: run again to continue"
        } else {
            ""
        }
    )?;
    Ok(())
}
