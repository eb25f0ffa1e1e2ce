//! `make demo`: a simulated SafeSync day through the whole pipeline on this
//! machine, and what the customer's endpoints received.
//!
//! Needs the local stack (make demo starts it) and the built binaries.

use platformsync_cli::simulate::{DayOptions, day};
use platformsync_pipeline::{Pipeline, PipelineOptions, percentile};
use std::collections::HashMap;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;

/// A record's identity across the upload and the push: kind, safe, safe time.
fn identity(kind: &str, record: &serde_json::Value) -> String {
    format!(
        "{kind}|{}|{}",
        record["SerialNumber"]
            .as_str()
            .unwrap_or_default()
            .to_uppercase(),
        record["TransactionDateTime"].as_str().unwrap_or_default()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = std::env::current_dir()?;
    let state = root.join(".local").join("demo").join("pipeline");
    let stage = std::env::var("PLATFORMSYNC_STAGE").unwrap_or_else(|_| "demo".into());
    println!("Starting the pipeline (stage {stage}): runner, receiver, template.yaml resources...");
    let pipeline = Pipeline::start(PipelineOptions::new(&root, &state, &stage)).await?;
    let result = run(&pipeline).await;
    pipeline.stop().await;
    let all_delivered = result?;
    if !all_delivered {
        anyhow::bail!(
            "not everything was delivered in time; see {}/runner/runner.log",
            state.display()
        );
    }
    Ok(())
}

async fn run(p: &Pipeline) -> anyhow::Result<bool> {
    let simulated = day(&DayOptions::new(20261126));
    p.register(
        "demo",
        &simulated.serials,
        &[
            (
                "demo-all",
                "/all",
                &["--message-types", "Transactions,AuditTransactions"],
            ),
            ("demo-cashin", "/cashin", &["--whitelist", "CashIn"]),
        ],
    )
    .await?;
    println!(
        "Registered customer demo with {} safes; endpoints demo-all (everything) and demo-cashin (CashIn only) on {}",
        simulated.serials.len(),
        p.receiver.url()
    );

    let (mut accepted, mut duplicates, mut held, mut rejected) = (0, 0, 0, 0);
    let mut sent_at: HashMap<String, time::OffsetDateTime> = HashMap::new();
    for upload in &simulated.uploads {
        let result = p.upload(upload.body.clone()).await?;
        anyhow::ensure!(
            result.status == 200,
            "upload answered {}: {}",
            result.status,
            result.body
        );
        let count = |k: &str| result.body[k].as_u64().unwrap_or(0);
        accepted += count("Accepted");
        duplicates += count("Duplicates");
        held += count("Held");
        rejected += result.body["Rejected"].as_array().map_or(0, Vec::len) as u64;
        let body: serde_json::Value = serde_json::from_slice(&upload.body)?;
        for kind in ["Transactions", "AuditTransactions"] {
            for record in body[kind].as_array().into_iter().flatten() {
                sent_at
                    .entry(identity(kind, record))
                    .or_insert(result.sent_at);
            }
        }
    }
    let expected = &simulated.expected;
    let expected_all = expected.valid as u64;
    let expected_cashin = expected.by_type.get("CashIn").copied().unwrap_or(0) as u64;
    println!(
        "Uploaded {} items in {} uploads; waiting for delivery...",
        expected.items,
        simulated.uploads.len()
    );

    let delivered = |p: &Pipeline, path: &str| {
        let summary = p.receiver.summary();
        summary
            .paths
            .get(path)
            .map_or(0, |c| c.transactions + c.audit_transactions)
    };
    let done = p
        .wait_until(Duration::from_secs(240), |p| {
            delivered(p, "/all") >= expected_all && delivered(p, "/cashin") >= expected_cashin
        })
        .await;

    let mut latencies = Vec::new();
    for batch in p.receiver.received() {
        let Ok(received_at) = time::OffsetDateTime::parse(&batch.received_at, &Rfc3339) else {
            continue;
        };
        for record in batch.values() {
            if let Some(sent) = sent_at.get(&identity(&batch.kind, &record)) {
                latencies.push((received_at - *sent).as_seconds_f64());
            }
        }
    }
    let p50 = percentile(&mut latencies, 50.0).unwrap_or(f64::NAN);
    let p99 = percentile(&mut latencies, 99.0).unwrap_or(f64::NAN);
    let summary = p.receiver.summary();
    let batches = |path: &str| summary.paths.get(path).map_or(0, |c| c.batches);

    println!();
    println!(
        "PlatformSync demo: one simulated day, {} safes",
        simulated.serials.len()
    );
    println!("  {:<34} {:>8}", "uploaded items", expected.items);
    println!("  {:<34} {:>8}", "accepted", accepted);
    println!("  {:<34} {:>8}", "duplicates", duplicates);
    println!("  {:<34} {:>8}", "held", held);
    println!("  {:<34} {:>8}", "rejected", rejected);
    println!(
        "  {:<34} {:>8}   of {} expected, in {} batches",
        "delivered to demo-all",
        delivered(p, "/all"),
        expected_all,
        batches("/all")
    );
    println!(
        "  {:<34} {:>8}   of {} expected, in {} batches",
        "delivered to demo-cashin (CashIn)",
        delivered(p, "/cashin"),
        expected_cashin,
        batches("/cashin")
    );
    println!(
        "  {:<34} {:>8}",
        "repeated POSTs dropped by receiver", summary.duplicates_dropped
    );
    println!("  {:<34} {:>7.2}s", "latency upload -> receipt, p50", p50);
    println!("  {:<34} {:>7.2}s", "latency upload -> receipt, p99", p99);
    println!();
    println!(
        "{}",
        if done {
            "Every valid transaction was delivered."
        } else {
            "NOT everything was delivered in time."
        }
    );
    Ok(done)
}
