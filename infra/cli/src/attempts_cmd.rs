//! `attempts --endpoint E [--batch M]`: every POST push made to an endpoint
//! in the last 30 days (time, outcome, latency, the endpoint's redacted
//! answer; [`platformsync_aws::ledger::Ledger::attempts`], which reads the
//! failed POSTs' records and the delivered batches' ledger items): what
//! support reads to a customer on the phone. The parts of a split batch are listed under their
//! own MessageIds with the batch they are part of (`--batch <batch>` shows
//! them with the batch's own attempts).

use anyhow::{Context, Result};
use platformsync_aws::ledger::Ledger;
use platformsync_domain::endpoint::EndpointId;

use crate::ops::Ops;
use crate::table;
use crate::{Io, Target};

pub(crate) async fn run(
    target: &Target,
    endpoint: &str,
    batch: Option<&str>,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    let endpoint = EndpointId::parse(endpoint).map_err(anyhow::Error::msg)?;
    let batch = batch
        .map(|b| uuid::Uuid::parse_str(b).with_context(|| format!("--batch {b}: not a MessageId")))
        .transpose()?;
    let ops = Ops::connect(target).await;
    let ledger = Ledger::new(ops.dynamodb.clone(), ops.names.ledger_table.clone());
    let attempts = ledger.attempts(&endpoint, batch).await?;
    if json {
        return table::json(io.out, &attempts);
    }
    if attempts.is_empty() {
        writeln!(
            io.out,
            "no attempts recorded for {endpoint} in the last 30 days"
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = attempts
        .iter()
        .map(|a| {
            vec![
                a.at.clone(),
                a.message_id.to_string(),
                a.attempt.to_string(),
                a.outcome.clone(),
                format!("{} ms", a.latency_ms),
                a.transactions.to_string(),
                a.parent_message_id
                    .map_or_else(|| "-".into(), |p| p.to_string()),
                a.error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table::print(
        io.out,
        &[
            "AT", "BATCH", "ATTEMPT", "OUTCOME", "LATENCY", "TX", "PART OF", "ERROR",
        ],
        &rows,
    )
}
