//! `manifest --customer C --day D`: the daily reconciliation manifest. Per
//! safe, for the safe-local day D: how many transactions were delivered to
//! the customer (to at least one of its endpoints, by the delivery ledger,
//! keys resolved through the fan-out's plans) and their total per currency
//! (the sum of `UnitValue x Count` over their denominations, exact
//! decimals), so the customer can check its books against ours.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use platformsync_aws::fanout_plans::PlanStore;
use platformsync_aws::ledger::Ledger;
use platformsync_aws::transactions::TransactionStore;
use platformsync_domain::dedup::StorageKey;
use platformsync_domain::endpoint::{CustomerId, EndpointId};
use platformsync_domain::serial::SerialNumber;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Cmd;
use crate::ops::Ops;
use crate::progress::Progress;
use crate::table;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SafeDay {
    serial_number: String,
    day: String,
    transactions: u64,
    /// Currency -> total, as exact decimal text.
    totals: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Manifest {
    customer_id: String,
    day: String,
    endpoints: Vec<String>,
    safes: Vec<SafeDay>,
}

#[derive(Deserialize)]
struct Denomination<'a> {
    #[serde(rename = "UnitValue", borrow)]
    unit_value: &'a RawValue,
    #[serde(rename = "Count", borrow)]
    count: &'a RawValue,
    #[serde(rename = "Currency")]
    currency: String,
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(rename = "Denominations", borrow, default)]
    denominations: Vec<Denomination<'a>>,
}

/// Currency -> sum of UnitValue x Count of one stored payload.
fn totals(payload: &str) -> Result<Vec<(String, Decimal)>> {
    let p: Payload = serde_json::from_str(payload).context("stored payload")?;
    p.denominations
        .iter()
        .map(|d| {
            let unit: Decimal = d.unit_value.get().parse().context("UnitValue")?;
            let count: Decimal = d.count.get().parse().context("Count")?;
            Ok((d.currency.clone(), unit * count))
        })
        .collect()
}

pub(crate) async fn run(cmd: Cmd<'_, '_>, customer: &str, day: &str) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let customer = CustomerId::parse(customer).map_err(anyhow::Error::msg)?;
    let day = crate::commands::assignment_bound(day).context("--day")?[..10].to_owned();
    let ops = Ops::connect(target).await;
    let mut endpoints: Vec<String> = ops
        .config
        .endpoints_of(&customer)
        .await?
        .into_iter()
        .map(|e| e.endpoint_id.to_string())
        .collect();
    endpoints.sort();
    let ledger = Ledger::new(ops.dynamodb.clone(), ops.names.ledger_table.clone()).with_plans(
        PlanStore::new(ops.dynamodb.clone(), ops.names.config_table.clone()),
    );
    // Delivered to at least one endpoint, of the day (the sort key starts
    // with the safe-local time): each transaction once.
    let mut keys: BTreeSet<StorageKey> = BTreeSet::new();
    for e in &endpoints {
        let e = EndpointId::parse(e).map_err(anyhow::Error::msg)?;
        for batch in ledger.delivered(&e).await? {
            for key in batch.transaction_keys {
                if let Some((serial, sort)) = key.split_once('|')
                    && sort.starts_with(&day)
                {
                    let partition = SerialNumber::parse(serial)
                        .with_context(|| format!("delivered transaction {key}"))?;
                    keys.insert(StorageKey {
                        partition,
                        sort: sort.to_owned(),
                    });
                }
            }
        }
    }
    let keys: Vec<StorageKey> = keys.into_iter().collect();
    let progress = Progress::new(keys.len() as u64, "transactions", json);
    let store = TransactionStore::new(ops.dynamodb.clone(), ops.names.transactions_table.clone());
    let mut per_safe: BTreeMap<String, (u64, BTreeMap<String, Decimal>)> = BTreeMap::new();
    for chunk in keys.chunks(100) {
        let found = store.get_many(chunk).await?;
        for key in chunk {
            let t = found
                .get(key)
                .with_context(|| format!("delivered transaction {key} is not stored"))?;
            let entry = per_safe
                .entry(key.partition.as_str().to_owned())
                .or_default();
            entry.0 += 1;
            for (currency, amount) in
                totals(&t.payload).with_context(|| format!("transaction {key}"))?
            {
                *entry.1.entry(currency).or_default() += amount;
            }
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    let manifest = Manifest {
        customer_id: customer.to_string(),
        day: day.clone(),
        endpoints,
        safes: per_safe
            .into_iter()
            .map(|(serial, (n, totals))| SafeDay {
                serial_number: serial,
                day: day.clone(),
                transactions: n,
                totals: totals
                    .into_iter()
                    .map(|(c, v)| (c, v.normalize().to_string()))
                    .collect(),
            })
            .collect(),
    };
    if json {
        return table::json(io.out, &manifest);
    }
    let rows: Vec<Vec<String>> = manifest
        .safes
        .iter()
        .map(|s| {
            vec![
                s.serial_number.clone(),
                s.day.clone(),
                s.transactions.to_string(),
                s.totals
                    .iter()
                    .map(|(c, v)| format!("{v} {c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    table::print(io.out, &["SAFE", "DAY", "DELIVERED", "TOTALS"], &rows)
}
