//! `simulate`: sends a simulated SafeSync day to `POST <api>/v1/uploads`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use platformsync_domain::endpoint::CustomerId;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::ops::{KeySource, Ops};
use crate::simulate::{DayOptions, SimulatedDay, day};
use crate::table;
use crate::{Io, SimulateArgs, Target};

/// A 503 means "some items could not be stored: re-send the whole upload"
/// (what was stored becomes a duplicate); SafeSync retries, so does this.
const ATTEMPTS_ON_503: u32 = 3;

pub(crate) async fn run(
    target: &Target,
    args: SimulateArgs,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    if args.safes == 0 || args.uploads == 0 {
        bail!("--safes and --uploads must be at least 1");
    }
    if args.transactions == 0 && args.audits == Some(0) {
        bail!("nothing to send: --transactions and --audits are both 0");
    }
    let options = DayOptions {
        safes: args.safes,
        transactions: args.transactions,
        audits: args.audits,
        seed: args.seed,
        uploads: args.uploads,
        date: args.date.unwrap_or_else(crate::simulate::default_date),
    };
    let simulated = day(&options);

    if args.dry_run {
        return dry_run(&simulated, json, io);
    }
    let api = args
        .api
        .as_deref()
        .context("--api URL is required (or --dry-run)")?;
    let source = if args.key_stdin {
        KeySource::Stdin
    } else if let Some(path) = &args.key_file {
        KeySource::File(path.clone())
    } else if let Some(var) = &args.key_env {
        KeySource::Env(var.clone())
    } else {
        bail!("simulate needs the ingest key: --key-stdin, --key-file PATH or --key-env VAR");
    };
    let key = io.read_key(&source)?;
    let url = format!("{}/v1/uploads", api.trim_end_matches('/'));

    if let Some(customer) = &args.assign_to {
        let customer = CustomerId::parse(customer)?;
        let ops = Ops::connect(target).await;
        ops.config
            .customer(&customer)
            .await?
            .with_context(|| format!("--assign-to: customer {customer} does not exist"))?;
        if !json {
            writeln!(
                io.out,
                "Assigning {} safes to {customer}:",
                simulated.serials.len()
            )?;
        }
        let mut sink = Vec::new();
        let mut quiet = Io {
            out: if json { &mut sink } else { &mut *io.out },
            err: &mut *io.err,
            stdin: &mut std::io::empty(),
            interactive: false,
        };
        crate::commands::assign(&ops, &simulated.serials, &customer, None, false, &mut quiet)
            .await?;
    }

    // reqwest has no provider of its own (rustls-no-provider): ring, as
    // every client of ours. Already installed is fine.
    platformsync_tls::install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("cannot build the HTTP client")?;
    let n = simulated.uploads.len();
    if !json {
        writeln!(
            io.out,
            "Simulated day {}: {} safes ({}), {} uploads to {url}",
            simulated.date,
            simulated.serials.len(),
            simulated.serials.join(", "),
            n
        )?;
    }
    let mut results = Vec::new();
    let mut rows = Vec::new();
    let mut failed = None;
    let mut totals = [0u64; 5];
    for (i, upload) in simulated.uploads.iter().enumerate() {
        let sent_at = OffsetDateTime::now_utc();
        let started = Instant::now();
        let mut attempt = 0;
        let (status, body) = loop {
            attempt += 1;
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-api-key", key.expose_secret())
                .body(upload.body.clone())
                .send()
                .await
                .with_context(|| format!("upload {}/{n}: POST {url} failed", i + 1))?;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if status == 503 && attempt < ATTEMPTS_ON_503 {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                continue;
            }
            break (status, body);
        };
        let millis = started.elapsed().as_millis() as u64;
        let count = |name: &str| body.get(name).and_then(Value::as_u64).unwrap_or(0);
        let rejected = body
            .get("Rejected")
            .and_then(Value::as_array)
            .map_or(0, |r| r.len() as u64);
        let counts = [
            count("Accepted"),
            count("Duplicates"),
            count("Held"),
            count("Unowned"),
            rejected,
        ];
        for (t, c) in totals.iter_mut().zip(counts) {
            *t += c;
        }
        let e = &upload.expected;
        rows.push(vec![
            format!("{}/{n}", i + 1),
            e.items.to_string(),
            status.to_string(),
            counts[0].to_string(),
            counts[1].to_string(),
            counts[2].to_string(),
            body.get("Unowned")
                .map_or("-".into(), |_| counts[3].to_string()),
            counts[4].to_string(),
            format!("{}/{}/{}", e.accepted, e.duplicates, e.rejected),
            millis.to_string(),
        ]);
        results.push(json!({
            "Upload": i + 1,
            "SentAt": crate::rfc3339(sent_at),
            "Status": status,
            "Attempts": attempt,
            "Millis": millis,
            "Expected": e,
            "Response": body,
        }));
        if !(200..300).contains(&status) {
            failed = Some((i + 1, status, body.clone()));
            break;
        }
    }
    if json {
        table::json(
            io.out,
            &json!({
                "Date": simulated.date.to_string(),
                "Url": url,
                "Serials": simulated.serials,
                "Expected": simulated.expected,
                "Uploads": results,
            }),
        )?;
    } else {
        table::print(
            io.out,
            &[
                "UPLOAD",
                "ITEMS",
                "HTTP",
                "ACCEPTED",
                "DUPLICATES",
                "HELD",
                "UNOWNED",
                "REJECTED",
                "EXPECTED A/D/R",
                "MS",
            ],
            &rows,
        )?;
        let e = &simulated.expected;
        writeln!(
            io.out,
            "Total: {} accepted, {} duplicates, {} held, {} rejected; expected {} valid ({} transactions, {} audits), {} duplicates, {} malformed.",
            totals[0],
            totals[1],
            totals[2],
            totals[4],
            e.valid,
            e.valid_transactions,
            e.valid_audits,
            e.duplicates,
            e.malformed
        )?;
        if failed.is_none() && totals[0] < e.valid as u64 {
            writeln!(
                io.out,
                "(Fewer accepted than expected: items sent before are duplicates now; use another --seed or --date for new ones.)"
            )?;
        }
    }
    if let Some((i, status, body)) = failed {
        let message = body
            .pointer("/Error/Message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        bail!("upload {i}/{n} answered HTTP {status}: {message}");
    }
    Ok(())
}

fn dry_run(simulated: &SimulatedDay, json: bool, io: &mut Io<'_>) -> Result<()> {
    if json {
        let uploads: Vec<Value> = simulated
            .uploads
            .iter()
            .enumerate()
            .map(|(i, u)| json!({"Upload": i + 1, "Bytes": u.body.len(), "Expected": u.expected}))
            .collect();
        return table::json(
            io.out,
            &json!({
                "Date": simulated.date.to_string(),
                "Serials": simulated.serials,
                "Expected": simulated.expected,
                "Uploads": uploads,
            }),
        );
    }
    let e = &simulated.expected;
    writeln!(io.out, "Date:     {}", simulated.date)?;
    writeln!(io.out, "Safes:    {}", simulated.serials.join(" "))?;
    writeln!(
        io.out,
        "Expected: {} valid ({} transactions, {} audits), {} duplicates, {} malformed, {} items in {} uploads",
        e.valid,
        e.valid_transactions,
        e.valid_audits,
        e.duplicates,
        e.malformed,
        e.items,
        simulated.uploads.len()
    )?;
    let rows: Vec<Vec<String>> = e
        .by_type
        .iter()
        .map(|(t, n)| vec![t.clone(), n.to_string()])
        .collect();
    table::print(io.out, &["TYPE", "RECORDS"], &rows)?;
    writeln!(
        io.out,
        "Spellings: {}",
        e.spellings.iter().cloned().collect::<Vec<_>>().join(" ")
    )?;
    Ok(())
}
