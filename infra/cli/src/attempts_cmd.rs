//! `attempts --endpoint E [--batch M]`: every POST push made to an endpoint
//! (time, outcome, latency, the endpoint's redacted answer), kept 30 days
//! ([`platformsync_aws::ledger::Ledger::attempts`]): what support reads to a
//! customer on the phone. The parts of a split batch are listed under their
//! own MessageIds with the batch they are part of (`--batch <batch>` shows
//! them with the batch's own attempts).

use anyhow::Result;
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
    let ops = Ops::connect(target).await;
    let ledger = Ledger::new(ops.dynamodb.clone(), ops.names.ledger_table.clone());
    let attempts = ledger.attempts(endpoint.as_str(), batch).await?;
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
                a.message_id.clone(),
                a.attempt.to_string(),
                a.outcome.clone(),
                format!("{} ms", a.latency_ms),
                a.transactions.to_string(),
                a.parent_message_id.clone().unwrap_or_else(|| "-".into()),
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
