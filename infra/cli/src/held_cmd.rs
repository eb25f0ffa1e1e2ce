//! `held list|show|release|discard`: transactions held by a data-quality
//! check, and staff's decision on each ([`platformsync_aws::held`]).
//!
//! `release` and `discard` are one conditional update each (`Held` →
//! `Released`/`Discarded`, who and why on the item): a transaction is
//! decided once; the fan-out pushes the release's stream record, once.

use anyhow::{Context, Result, bail};
use platformsync_aws::held::{Decided, HeldStore};
use platformsync_domain::dedup::StorageKey;
use platformsync_domain::record::{
    DeliveryStatus, HeldTransaction, HoldDecision, HoldNote, rfc3339,
};
use platformsync_domain::serial::SerialNumber;
use serde::Serialize;
use time::OffsetDateTime;

use crate::ops::Ops;
use crate::table;
use crate::{Cmd, DecideArgs, HeldCommand, Io};

fn store(ops: &Ops) -> HeldStore {
    HeldStore::new(ops.dynamodb.clone(), ops.names.transactions_table.clone())
}

/// `SERIAL|SORTKEY` into the transaction's key.
fn split_key(key: &str) -> Result<StorageKey> {
    key.parse()
        .map_err(|e| anyhow::anyhow!("{e}, as `held list` prints it"))
}

/// A held (or decided) transaction as `--json` prints it; `Payload` only
/// for `show`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HeldView<'a> {
    serial_number: &'a str,
    sort_key: &'a str,
    /// `SERIAL|SORTKEY`.
    key: String,
    kind: &'static str,
    transaction_type: &'static str,
    status: &'static str,
    hold_reasons: &'a [HoldNote],
    received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
}

fn time_text(at: OffsetDateTime) -> String {
    rfc3339(at).unwrap_or_else(|_| at.to_string())
}

impl<'a> HeldView<'a> {
    fn of(held: &'a HeldTransaction, with_payload: bool) -> Self {
        let t = &held.transaction;
        HeldView {
            serial_number: t.serial_number.as_str(),
            sort_key: &t.sort_key,
            key: t.key(),
            kind: t.kind().wire_name(),
            transaction_type: t.type_name(),
            status: t.status.name(),
            hold_reasons: &t.hold_reasons,
            received_at: time_text(t.received_at),
            decided_by: held.decision.as_ref().map(|d| d.by.as_str()),
            decided_at: held.decision.as_ref().map(|d| time_text(d.at)),
            decision_reason: held.decision.as_ref().map(|d| d.reason.as_str()),
            payload: with_payload.then_some(t.payload.as_str()),
        }
    }
}

fn reasons(t: &HeldView<'_>) -> String {
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

pub(crate) async fn run(cmd: Cmd<'_, '_>, command: HeldCommand) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let ops = Ops::connect(target).await;
    let held = store(&ops);
    match command {
        HeldCommand::List { safe } => {
            let safes = safe
                .iter()
                .map(|s| SerialNumber::parse(s).with_context(|| format!("--safe {s:?}")))
                .collect::<Result<Vec<_>>>()?;
            let found = held.list(&safes).await?;
            let list: Vec<HeldView<'_>> = found.iter().map(|t| HeldView::of(t, false)).collect();
            table::list(
                io.out,
                json,
                &list,
                &["KEY", "KIND", "TYPE", "RECEIVED", "REASONS"],
                |t| {
                    vec![
                        t.key.clone(),
                        t.kind.to_owned(),
                        t.transaction_type.to_owned(),
                        t.received_at.clone(),
                        reasons(t),
                    ]
                },
            )
        }
        HeldCommand::Show { key } => {
            let found = held
                .get(&split_key(&key)?)
                .await?
                .with_context(|| format!("no transaction {key}"))?;
            let t = HeldView::of(&found, true);
            if json {
                return table::json(io.out, &t);
            }
            let rows = vec![
                vec!["Key".into(), t.key.clone()],
                vec!["Status".into(), t.status.to_owned()],
                vec!["Kind".into(), t.kind.to_owned()],
                vec!["Type".into(), t.transaction_type.to_owned()],
                vec!["Received".into(), t.received_at.clone()],
                vec!["Reasons".into(), reasons(&t)],
                vec![
                    "Decided".into(),
                    match (&t.decided_by, &t.decided_at) {
                        (Some(by), Some(at)) => {
                            format!("{at} by {by}: {}", t.decision_reason.unwrap_or_default())
                        }
                        _ => "-".into(),
                    },
                ],
                vec!["Payload".into(), t.payload.unwrap_or_default().to_owned()],
            ];
            table::print(io.out, &["FIELD", "VALUE"], &rows)
        }
        HeldCommand::Release(args) => decide(&held, args, HoldDecision::Release, json, io).await,
        HeldCommand::Discard(args) => decide(&held, args, HoldDecision::Discard, json, io).await,
    }
}

async fn decide(
    held: &HeldStore,
    args: DecideArgs,
    decision: HoldDecision,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    let DecideArgs {
        key,
        by,
        reason,
        dry_run,
    } = args;
    let at = split_key(&key)?;
    let by = operator(by)?;
    if reason.trim().is_empty() {
        bail!("say why: --reason TEXT (kept with the transaction)");
    }
    let verb = match decision {
        HoldDecision::Release => "released",
        HoldDecision::Discard => "discarded",
    };
    if dry_run {
        let t = held
            .get(&at)
            .await?
            .with_context(|| format!("no transaction {key}"))?;
        if t.transaction.status != DeliveryStatus::Held {
            bail!("{key} is not held (it is {})", t.transaction.status);
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
        .decide(&at, decision, &by, &reason, OffsetDateTime::now_utc())
        .await?
    {
        Decided::Done => {}
        Decided::NotHeld(status) => bail!("{key} is not held (it is {status}): nothing done"),
        Decided::Missing => bail!("no transaction {key}"),
    }
    if json {
        return table::json(
            io.out,
            &serde_json::json!({"Key": key, "Status": decision.status().name(), "DecidedBy": by}),
        );
    }
    writeln!(
        io.out,
        "{verb} {key} (by {by}){}",
        match decision {
            HoldDecision::Release => ": the fan-out pushes it to its owner's endpoints",
            HoldDecision::Discard => ": never pushed; the decision is kept with the transaction",
        }
    )?;
    Ok(())
}
