//! Upload parsing throughput against a plain `serde_json::Value` parse.
//!
//! (a) `parse_upload` + quality check + dedup key for every item;
//! (b) `serde_json::from_slice::<Value>` on the same bytes.
//! After criterion's report, prints both means and their ratio (target: a/b <= 1.5).

use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use platformsync_domain::quality::{QualityPolicy, check};
use platformsync_domain::testdata;
use platformsync_domain::upload::parse_upload;

/// (total time, iterations) per benchmark, from criterion's own measurement calls.
static TOTALS: Mutex<[(Duration, u64); 2]> = Mutex::new([(Duration::ZERO, 0); 2]);

fn record(slot: usize, iters: u64, elapsed: Duration) {
    if let Ok(mut totals) = TOTALS.lock() {
        totals[slot].0 += elapsed;
        totals[slot].1 += iters;
    }
}

fn ingest(body: &[u8], now: time::OffsetDateTime, policy: &QualityPolicy) -> usize {
    let parsed = match parse_upload(body) {
        Ok(p) => p,
        Err(_) => return 0,
    };
    let mut held = 0;
    for outcome in &parsed.items {
        if let Ok(item) = &outcome.result {
            held += check(item, now, policy).len();
            black_box(item.dedup_key());
        }
    }
    held + parsed.items.len()
}

fn benches(c: &mut Criterion) {
    let body = testdata::upload_json(1000, 7, 2024);
    let now = time::OffsetDateTime::now_utc();
    let policy = QualityPolicy::default();
    assert_eq!(
        ingest(&body, now, &policy),
        1000,
        "generated data must be clean"
    );

    let mut group = c.benchmark_group("upload_1000");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse_upload+quality+dedup", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(ingest(black_box(&body), now, &policy));
            }
            let elapsed = start.elapsed();
            record(0, iters, elapsed);
            elapsed
        })
    });
    group.bench_function("serde_json::Value", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let v: serde_json::Value =
                    serde_json::from_slice(black_box(&body)).unwrap_or_default();
                black_box(v);
            }
            let elapsed = start.elapsed();
            record(1, iters, elapsed);
            elapsed
        })
    });
    // Breakdown only: the parser alone, without checks and keys.
    group.bench_function("parse_upload only", |b| {
        b.iter(|| black_box(parse_upload(black_box(&body)).map(|p| p.items.len())))
    });
    group.finish();
    println!("body: {} bytes, 1000 transactions, 7 safes", body.len());
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    let totals = TOTALS.lock().map(|t| *t).unwrap_or_default();
    let mean = |(total, iters): (Duration, u64)| total.as_secs_f64() / iters.max(1) as f64;
    let (ours, value) = (mean(totals[0]), mean(totals[1]));
    if value > 0.0 {
        println!(
            "mean parse_upload+quality+dedup: {:.1} us; mean serde_json::Value: {:.1} us; ratio {:.2}x (target <= 1.5x)",
            ours * 1e6,
            value * 1e6,
            ours / value
        );
    }
}
