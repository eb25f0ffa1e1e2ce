//! End-to-end load run of the ingest function against the local stack.
//!
//! Ingests 10,000 transactions (10 uploads of 1,000, 50 safes) at write
//! concurrency 1, 8 and 32 and, in the same run, writes the same items with
//! bare SDK conditional puts at the same concurrency; prints both rates and
//! their ratio. Each round gets fresh tables (a new stage), so every write is
//! a first write. Run with `make bench-ingest` (it starts its own stack).

use futures_util::{StreamExt, stream};
use platformsync_domain::testdata;
use platformsync_domain::upload::parse_upload;
use platformsync_tests::{Stack, apigw};
use std::time::Instant;

const TRANSACTIONS: usize = 10_000;
const PER_UPLOAD: usize = 1_000;

#[tokio::main]
async fn main() {
    let all: serde_json::Value =
        serde_json::from_slice(&testdata::upload_json(TRANSACTIONS, 50, 11)).unwrap();
    let items = all["Transactions"].as_array().unwrap();
    let uploads: Vec<Vec<u8>> = items
        .chunks(PER_UPLOAD)
        .map(|c| serde_json::to_vec(&serde_json::json!({ "Transactions": c })).unwrap())
        .collect();

    println!(
        "ingest load: {TRANSACTIONS} transactions, {} uploads of {PER_UPLOAD}, moto server",
        uploads.len()
    );
    println!(
        "{:>11} {:>16} {:>16} {:>7}",
        "concurrency", "ingest tx/s", "bare puts tx/s", "ratio"
    );
    for concurrency in [1usize, 8, 32] {
        // Ingest, through the handler as Lambda calls it.
        let stack = Stack::deploy().await;
        let mut ingest_settings = stack.ingest_settings();
        ingest_settings.write_concurrency = concurrency;
        let ingest = ingest::Ingest::new(&stack.config, ingest_settings);
        let key = stack.ingest_key().await;
        let started = Instant::now();
        let mut accepted = 0;
        for body in &uploads {
            let resp = ingest
                .handle(apigw::post("/v1/uploads", body, Some(&key)))
                .await;
            let r = apigw::json(&resp);
            assert_eq!(resp.status_code, 200, "{r}");
            accepted += r["Accepted"].as_u64().unwrap();
        }
        let ingest_rate = TRANSACTIONS as f64 / started.elapsed().as_secs_f64();
        assert_eq!(accepted, TRANSACTIONS as u64);

        // The floor: the same stored items, bare conditional puts.
        let bare = Stack::deploy().await;
        let store = bare.transaction_store();
        let now = time::OffsetDateTime::now_utc();
        let records: Vec<_> = uploads
            .iter()
            .flat_map(|body| {
                let parsed = parse_upload(body).unwrap();
                ingest::plan::plan(&parsed, "bench", now, &Default::default()).writes
            })
            .map(|w| w.record)
            .collect();
        let started = Instant::now();
        let stored = stream::iter(&records)
            .map(|r| store.insert_new(r))
            .buffer_unordered(concurrency)
            .filter(|r| std::future::ready(r.is_ok()))
            .count()
            .await;
        let bare_rate = TRANSACTIONS as f64 / started.elapsed().as_secs_f64();
        assert_eq!(stored, TRANSACTIONS);
        println!(
            "{concurrency:>11} {ingest_rate:>16.0} {bare_rate:>16.0} {:>7.2}",
            ingest_rate / bare_rate
        );
    }
}
