//! `held list|show|release|discard`: transactions held by a data-quality
//! check, and staff's decision on each ([`platformsync_aws::held`]).
//!
//! `release` and `discard` are one conditional update each (`Held` →
//! `Released`/`Discarded`, who and why on the item): a transaction is
//! decided once; the fan-out pushes the release's stream record, once.

use anyhow::{Context, Result, bail};
use platformsync_aws::held::{Decided, HeldStore, HeldTransaction};
use platformsync_aws::transactions::DeliveryStatus;
use time::OffsetDateTime;

use crate::ops::Ops;
use crate::table;
use crate::{HeldCommand, Io, Target};

fn store(ops: &Ops) -> HeldStore {
    HeldStore::new(ops.dynamodb.clone(), ops.names.transactions_table.clone())
}

/// `SERIAL|SORTKEY` into its parts.
fn split_key(key: &str) -> Result<(&str, &str)> {
    key.split_once('|')
        .filter(|(s, k)| !s.is_empty() && !k.is_empty())
        .with_context(|| {
            format!("{key:?} is not a transaction key (SERIAL|SORTKEY, as `held list` prints it)")
        })
}

fn reasons(t: &HeldTransaction) -> String {
    t.hold_reasons
        .iter()
        .map(|r| format!("{}: {}", r.code, r.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Who decides: `--by`, else the login name (the audit record says who).
fn operator(by: Option<String>) -> Result<String> {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|b| !b.trim().is_empty())
        .context("say who decides: --by NAME")
}

pub(crate) async fn run(
    target: &Target,
    command: HeldCommand,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    let ops = Ops::connect(target).await;
    let held = store(&ops);
    match command {
        HeldCommand::List { safe } => {
            let safes: Vec<String> = safe.iter().map(|s| s.to_uppercase()).collect();
            let list = held.list(&safes).await?;
            if json {
                return table::json(io.out, &list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|t| {
                    vec![
                        t.key.clone(),
                        t.kind.clone(),
                        t.transaction_type.clone(),
                        t.received_at.clone(),
                        reasons(t),
                    ]
                })
                .collect();
            table::print(
                io.out,
                &["KEY", "KIND", "TYPE", "RECEIVED", "REASONS"],
                &rows,
            )
        }
        HeldCommand::Show { key } => {
            let (serial, sort) = split_key(&key)?;
            let t = held
                .get(serial, sort)
                .await?
                .with_context(|| format!("no transaction {key}"))?;
            if json {
                return table::json(io.out, &t);
            }
            let rows = vec![
                vec!["Key".into(), t.key.clone()],
                vec!["Status".into(), t.status.clone()],
                vec!["Kind".into(), t.kind.clone()],
                vec!["Type".into(), t.transaction_type.clone()],
                vec!["Received".into(), t.received_at.clone()],
                vec!["Reasons".into(), reasons(&t)],
                vec![
                    "Decided".into(),
                    match (&t.decided_by, &t.decided_at) {
                        (Some(by), Some(at)) => format!(
                            "{at} by {by}: {}",
                            t.decision_reason.clone().unwrap_or_default()
                        ),
                        _ => "-".into(),
                    },
                ],
                vec!["Payload".into(), t.payload.clone().unwrap_or_default()],
            ];
            table::print(io.out, &["FIELD", "VALUE"], &rows)
        }
        HeldCommand::Release {
            key,
            by,
            reason,
            dry_run,
        } => {
            decide(
                &held,
                &key,
                DeliveryStatus::Released,
                by,
                reason,
                dry_run,
                json,
                io,
            )
            .await
        }
        HeldCommand::Discard {
            key,
            by,
            reason,
            dry_run,
        } => {
            decide(
                &held,
                &key,
                DeliveryStatus::Discarded,
                by,
                reason,
                dry_run,
                json,
                io,
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn decide(
    held: &HeldStore,
    key: &str,
    to: DeliveryStatus,
    by: Option<String>,
    reason: String,
    dry_run: bool,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    let (serial, sort) = split_key(key)?;
    let by = operator(by)?;
    if reason.trim().is_empty() {
        bail!("say why: --reason TEXT (kept with the transaction)");
    }
    let verb = if to == DeliveryStatus::Released {
        "released"
    } else {
        "discarded"
    };
    if dry_run {
        let t = held
            .get(serial, sort)
            .await?
            .with_context(|| format!("no transaction {key}"))?;
        if t.status != "Held" {
            bail!("{key} is not held (it is {})", t.status);
        }
        if json {
            return table::json(
                io.out,
                &serde_json::json!({"Key": key, "DryRun": true, "Would": verb}),
            );
        }
        writeln!(io.out, "would have {verb} {key}")?;
        return Ok(());
    }
    match held
        .decide(serial, sort, to, &by, &reason, OffsetDateTime::now_utc())
        .await?
    {
        Decided::Done => {}
        Decided::NotHeld(status) => bail!("{key} is not held (it is {status}): nothing done"),
        Decided::Missing => bail!("no transaction {key}"),
    }
    if json {
        return table::json(
            io.out,
            &serde_json::json!({"Key": key, "Status": if to == DeliveryStatus::Released {"Released"} else {"Discarded"}, "DecidedBy": by}),
        );
    }
    writeln!(
        io.out,
        "{verb} {key} (by {by}){}",
        if to == DeliveryStatus::Released {
            ": the fan-out pushes it to its owner's endpoints"
        } else {
            ": never pushed; the decision is kept with the transaction"
        }
    )?;
    Ok(())
}
