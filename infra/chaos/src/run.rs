//! One chaos run: start the pipeline behind the fault proxy, upload the
//! load while the faults happen, stop the faults, wait for the drain, and
//! gather the figures.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use platformsync_faults::FaultProxy;
use platformsync_pipeline::{Pipeline, PipelineOptions};
use platformsync_receiver::FailureRates;
use serde::Serialize;
use tokio::sync::{Mutex, watch};

use crate::load::{Load, LoadOptions};
use crate::plan::{FaultOptions, FaultPlan};
use crate::verdict::{EndpointFigures, ExpectedEndpoint, analyse, recorded_on};

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub load: LoadOptions,
    pub faults: FaultOptions,
    /// After the faults stop and the last upload is in: how long to wait for
    /// everything to be delivered before calling the rest lost.
    pub drain_deadline_seconds: f64,
    /// Once everything is delivered: how long to keep watching for late
    /// repeats and duplicates.
    pub settle_seconds: f64,
    /// The runner's visibility timeout for received messages.
    pub visibility_timeout_seconds: u64,
    /// Print progress to stderr every this many seconds (0: never).
    pub progress_seconds: f64,
}

/// Uploads as SafeSync sent them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadFigures {
    pub uploads: usize,
    pub rereads: usize,
    pub items: usize,
    pub attempts: usize,
    /// Attempts re-sent after a 5xx or a connection error (runner down).
    pub retried_5xx: usize,
    pub retried_connection: usize,
    pub accepted: u64,
    pub duplicates: u64,
    pub held: u64,
    pub unowned: u64,
    pub rejected: u64,
    /// Uploads given up (any other status, or the deadline).
    pub failed: usize,
    pub last_upload_seconds: f64,
}

/// One kill as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct KillDone {
    pub at_seconds: f64,
    pub restarted_after_seconds: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub stage: String,
    pub endpoints: Vec<EndpointFigures>,
    pub uploads: UploadFigures,
    pub kills: Vec<KillDone>,
    /// Restarts of the runner that failed (and were tried again).
    pub restart_failures: usize,
    pub outage: Option<(String, f64, f64)>,
    /// AWS calls failed by the proxy, per service and operation, and calls
    /// seen in total.
    pub aws_failed: BTreeMap<String, u64>,
    pub aws_calls: u64,
    pub aws_bursts: usize,
    pub aws_burst_seconds: f64,
    pub receiver_rates: FailureRates,
    /// Notices per endpoint id and kind (the SNS topic's subscription queue).
    pub notices: BTreeMap<String, BTreeMap<String, usize>>,
    /// Peak depth (visible + in flight) per queue.
    pub peak_queue_depths: BTreeMap<String, i64>,
    pub faults_stopped_seconds: f64,
    /// All delivered at (seconds from the start of the load), if it happened.
    pub drained_seconds: Option<f64>,
    pub drain_deadline_seconds: f64,
    pub total_seconds: f64,
}

impl Outcome {
    pub fn lost(&self) -> usize {
        self.endpoints.iter().map(|e| e.lost).sum()
    }

    /// Whether the run shows a failure: anything lost, delivered under two
    /// MessageIds, leaked, unexpected, or a MessageId reused for other
    /// content.
    pub fn failed(&self) -> bool {
        self.endpoints.iter().any(EndpointFigures::failed)
    }

    /// Seconds from the last injected failure to everything delivered.
    pub fn drain_after_last_failure(&self) -> Option<f64> {
        self.drained_seconds
            .map(|d| (d - self.faults_stopped_seconds).max(0.0))
    }
}

/// Per-service endpoint variables the runner's SDK clients honour; each one
/// set gets a fault proxy of its own.
const PER_SERVICE: [&str; 7] = [
    "DYNAMODB",
    "DYNAMODB_STREAMS",
    "DYNAMODBSTREAMS",
    "SQS",
    "SNS",
    "SECRETS_MANAGER",
    "CLOUDWATCH",
];

/// Runs the load under the faults. Needs `AWS_ENDPOINT_URL` (the local
/// stack) and the built binaries.
pub async fn run(o: &ChaosOptions) -> anyhow::Result<Outcome> {
    let upstream = std::env::var("AWS_ENDPOINT_URL")
        .context("AWS_ENDPOINT_URL is not set: start the local stack first (make chaos does)")?;
    let load = Arc::new(Load::generate(&o.load));
    let endpoints = load.endpoints();
    let plan = FaultPlan::new(&o.faults, endpoints.len())?;

    // A fault proxy in front of each emulator the runner talks to (one, or
    // the LocalStack pair: DynamoDB on moto through AWS_ENDPOINT_URL_DYNAMODB).
    // They start with no rules; deployment and registration go straight to
    // the emulators anyway (this process's SDK clients).
    let mut proxies = vec![(
        "AWS_ENDPOINT_URL".to_owned(),
        FaultProxy::start(&upstream).await?,
    )];
    for service in PER_SERVICE {
        let var = format!("AWS_ENDPOINT_URL_{service}");
        if let Ok(url) = std::env::var(&var)
            && !url.is_empty()
        {
            proxies.push((var, FaultProxy::start(&url).await?));
        }
    }
    let stage = format!("chaos{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut options = PipelineOptions::new(&o.root, o.state_dir.join(&stage), &stage);
    options.sqs_visibility_timeout = Duration::from_secs(o.visibility_timeout_seconds);
    // A knob of the functions: through the runner's --env, which wins over
    // the template's 180 s (the runner's process environment would not).
    options.function_env = vec![(
        "ATTEMPT_TIMEOUT_SECONDS".into(),
        o.faults.attempt_timeout_seconds.to_string(),
    )];
    options.runner_env = vec![
        // The runner's logs at warn: info lines for every batch would be
        // most of a long run's CPU and disk.
        ("RUST_LOG".into(), "warn".into()),
    ];
    options.runner_env.extend(
        proxies
            .iter()
            .map(|(var, proxy)| (var.clone(), proxy.url())),
    );
    let urls: Vec<String> = proxies
        .iter()
        .map(|(v, p)| format!("{v}={}", p.url()))
        .collect();
    eprintln!(
        "chaos: starting the pipeline (stage {stage}) behind the fault proxy: {}",
        urls.join(", ")
    );
    let proxies: Vec<FaultProxy> = proxies.into_iter().map(|(_, p)| p).collect();
    let mut pipeline = Pipeline::start(options).await?;
    let result = drive(o, &mut pipeline, &proxies, &load, &plan, &stage).await;
    pipeline.stop().await;
    drop(proxies);
    result
}

async fn drive(
    o: &ChaosOptions,
    p: &mut Pipeline,
    proxies: &[FaultProxy],
    load: &Arc<Load>,
    plan: &FaultPlan,
    stage: &str,
) -> anyhow::Result<Outcome> {
    let endpoints = load.endpoints();
    for c in &load.customers {
        let specs: Vec<(String, String, Vec<String>)> = c
            .endpoints
            .iter()
            .map(|e| (e.id.clone(), e.path.clone(), e.flags.clone()))
            .collect();
        let flags: Vec<Vec<&str>> = specs
            .iter()
            .map(|(_, _, f)| f.iter().map(String::as_str).collect())
            .collect();
        let args: Vec<(&str, &str, &[&str])> = specs
            .iter()
            .zip(&flags)
            .map(|((id, path, _), f)| (id.as_str(), path.as_str(), f.as_slice()))
            .collect();
        p.register(&c.id, &c.serials, &args).await?;
    }
    let sqs = aws_sdk_sqs::Client::new(&p.sdk);
    let inbox = subscribe_inbox(p, &sqs, stage).await?;
    let queues: Vec<(String, String)> = p
        .deployment
        .resources
        .iter()
        .filter(|(_, d)| d.kind == "AWS::SQS::Queue")
        .map(|(id, d)| (id.clone(), d.physical.reference.clone()))
        .chain(std::iter::once(("NoticesInbox".to_owned(), inbox.clone())))
        .collect();
    let mut peaks: BTreeMap<String, i64> = queues.iter().map(|(id, _)| (id.clone(), 0)).collect();

    eprintln!(
        "chaos: {} transactions from {} safes, {} customers, {} endpoints; {} uploads ({} re-reads); {} kills, {} AWS bursts, outage {:?}",
        load.txs.len(),
        load.serials.len(),
        load.customers.len(),
        endpoints.len(),
        load.uploads.len(),
        load.uploads.iter().filter(|u| u.reread > 0).count(),
        plan.kills.len(),
        plan.aws_bursts(),
        plan.outage
    );

    // Faults and load start together.
    let start = Instant::now();
    let elapsed = move || start.elapsed().as_secs_f64();
    p.receiver
        .set_failure_rates(plan.receiver.clone())
        .map_err(anyhow::Error::msg)?;
    let schedule = plan.aws.clone();
    let stop_schedule = Arc::new(AtomicBool::new(false));
    let player = {
        let controls = proxies
            .iter()
            .map(|p| platformsync_faults::FaultControl::new(&p.url()))
            .collect::<Result<Vec<_>, _>>()?;
        let stop = stop_schedule.clone();
        tokio::spawn(async move {
            let t0 = tokio::time::Instant::now();
            for step in schedule.steps {
                tokio::time::sleep_until(t0 + Duration::from_secs_f64(step.at_seconds)).await;
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                for control in &controls {
                    let _ = control.set_rules(&step.rules).await;
                }
            }
        })
    };
    let (api_tx, api_rx) = watch::channel(p.api_url.clone());
    let upload_figures = Arc::new(Mutex::new(UploadFigures::default()));
    let uploader_deadline = Arc::new(AtomicBool::new(false));
    let uploader = tokio::spawn(upload_all(
        load.clone(),
        api_rx,
        p.ingest_key.clone(),
        upload_figures.clone(),
        uploader_deadline.clone(),
        start,
    ));

    let expected = load.expected();
    let expected_endpoints: Vec<ExpectedEndpoint> = endpoints
        .iter()
        .map(|e| ExpectedEndpoint {
            id: e.id.clone(),
            customer: e.customer.clone(),
            path: e.path.clone(),
            identities: expected.get(&e.path).cloned().unwrap_or_default(),
        })
        .collect();

    let mut kills_done = Vec::new();
    let mut restart_failures = 0usize;
    let mut next_kill = 0usize;
    let mut outage_started = None;
    let mut faults_stopped: Option<f64> = None;
    let mut drained: Option<f64> = None;
    let mut last_sample = -10.0;
    let mut last_progress = 0.0;
    let mut last_check = -10.0;
    let mut deadline_from: Option<f64> = None;
    loop {
        let t = elapsed();
        if let Some(kill) = plan.kills.get(next_kill)
            && t >= kill.at_seconds
            && t < o.faults.chaos_seconds
            && faults_stopped.is_none()
        {
            next_kill += 1;
            p.kill_runner().await?;
            tokio::time::sleep(Duration::from_secs_f64(kill.down_seconds)).await;
            // A restart can fail while a burst throttles the calls the
            // runner makes at startup (GetQueueUrl): try again for a while.
            let mut tries = 0;
            loop {
                match p.start_runner().await {
                    Ok(()) => break,
                    Err(e) if tries < 10 => {
                        tries += 1;
                        restart_failures += 1;
                        eprintln!("chaos: runner restart failed ({e:#}); again in 3 s");
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    Err(e) => return Err(e.context("restarting the runner")),
                }
            }
            let _ = api_tx.send(p.api_url.clone());
            kills_done.push(KillDone {
                at_seconds: t,
                restarted_after_seconds: elapsed() - t,
            });
        }
        if let Some(outage) = &plan.outage
            && outage_started.is_none()
            && t >= outage.at_seconds
            && t < o.faults.chaos_seconds
            && faults_stopped.is_none()
        {
            let path = &endpoints[outage.endpoint].path;
            p.receiver
                .outage(path, Duration::from_secs_f64(outage.seconds), 503);
            outage_started = Some((endpoints[outage.endpoint].id.clone(), t, outage.seconds));
        }
        if faults_stopped.is_none() && t >= o.faults.chaos_seconds {
            stop_schedule.store(true, Ordering::SeqCst);
            player.abort();
            for proxy in proxies {
                proxy.set_rules(Vec::new());
            }
            p.receiver
                .set_failure_rates(FailureRates::default())
                .map_err(anyhow::Error::msg)?;
            for e in &endpoints {
                p.receiver.outage(&e.path, Duration::ZERO, 503);
            }
            // Every fault ends here (an outage still running is ended too).
            faults_stopped = Some(t);
            eprintln!("chaos: faults stopped at {t:.0} s; draining");
        }
        if t - last_sample >= 5.0 {
            last_sample = t;
            sample_depths(&sqs, &queues, &mut peaks).await;
        }
        let uploads_done = uploader.is_finished();
        // Everything delivered? The receiver's counts first (cheap); the
        // full analysis only when they add up, and not more than every 10 s.
        if uploads_done && drained.is_none() && t - last_check >= 10.0 {
            let summary = p.receiver.summary();
            let complete = expected_endpoints
                .iter()
                .all(|e| recorded_on(&summary, &e.path) >= e.identities.len() as u64);
            if complete {
                last_check = t;
                let figures = analyse(
                    &expected_endpoints,
                    &load.owner,
                    &p.receiver.received(),
                    &p.receiver.requests(),
                );
                if figures.iter().all(|f| f.lost == 0) {
                    drained = Some(t);
                    eprintln!("chaos: everything delivered at {t:.0} s");
                }
            }
        }
        if let Some(stopped) = faults_stopped
            && uploads_done
        {
            if drained.is_some() {
                eprintln!(
                    "chaos: watching {} s for late repeats and duplicates",
                    o.settle_seconds
                );
                break;
            }
            let from = *deadline_from.get_or_insert(t.max(stopped));
            if t - from > o.drain_deadline_seconds || uploader_deadline.load(Ordering::SeqCst) {
                eprintln!(
                    "chaos: drain deadline ({} s) passed",
                    o.drain_deadline_seconds
                );
                break;
            }
        }
        if let Some(stopped) = faults_stopped
            && !uploads_done
            && t - stopped > o.drain_deadline_seconds
        {
            eprintln!("chaos: the uploads did not finish within the drain deadline");
            uploader_deadline.store(true, Ordering::SeqCst);
        }
        if o.progress_seconds > 0.0 && t - last_progress >= o.progress_seconds {
            last_progress = t;
            let s = p.receiver.summary();
            let f = upload_figures.lock().await;
            eprintln!(
                "chaos: {t:.0} s: uploads {}/{} ({} attempts), kills {}/{}, recorded {} of {} expected, {} requests ({} failed on purpose)",
                f.uploads,
                load.uploads.len(),
                f.attempts,
                kills_done.len(),
                plan.kills.len(),
                s.transactions,
                expected.values().map(|v| v.len()).sum::<usize>(),
                p.receiver.requests().len(),
                s.injected_failures + s.created + s.dropped + s.outage_failures,
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    uploader_deadline.store(true, Ordering::SeqCst);
    if drained.is_some() {
        let settle_until = Instant::now() + Duration::from_secs_f64(o.settle_seconds);
        while Instant::now() < settle_until {
            sample_depths(&sqs, &queues, &mut peaks).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let _ = uploader.await;
    let figures = analyse(
        &expected_endpoints,
        &load.owner,
        &p.receiver.received(),
        &p.receiver.requests(),
    );
    let notices = read_notices(&sqs, &inbox).await;
    let mut aws_failed = BTreeMap::new();
    let mut aws_calls = 0;
    for c in proxies.iter().flat_map(|p| p.stats().calls) {
        aws_calls += c.calls;
        if c.failed > 0 {
            *aws_failed
                .entry(format!("{} {}", c.service, c.operation))
                .or_default() += c.failed;
        }
    }
    let uploads = upload_figures.lock().await.clone();
    Ok(Outcome {
        stage: stage.to_owned(),
        endpoints: figures,
        uploads,
        kills: kills_done,
        restart_failures,
        outage: outage_started,
        aws_failed,
        aws_calls,
        aws_bursts: plan.aws_bursts(),
        aws_burst_seconds: plan.aws_burst_seconds(),
        receiver_rates: plan.receiver.clone(),
        notices,
        peak_queue_depths: peaks,
        faults_stopped_seconds: faults_stopped.unwrap_or(o.faults.chaos_seconds),
        drained_seconds: drained,
        drain_deadline_seconds: o.drain_deadline_seconds,
        total_seconds: elapsed(),
    })
}

/// Sends every upload in order, as SafeSync would: a 5xx or a connection
/// error (the runner is down) is re-sent until accepted.
async fn upload_all(
    load: Arc<Load>,
    api: watch::Receiver<String>,
    key: String,
    figures: Arc<Mutex<UploadFigures>>,
    give_up: Arc<AtomicBool>,
    start: Instant,
) {
    platformsync_tls::install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default();
    for upload in &load.uploads {
        let body = load.body(upload);
        loop {
            if give_up.load(Ordering::SeqCst) {
                figures.lock().await.failed += 1;
                break;
            }
            let url = format!("{}/v1/uploads", api.borrow().as_str());
            figures.lock().await.attempts += 1;
            let sent = http
                .post(&url)
                .header("x-api-key", &key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(_) => {
                    figures.lock().await.retried_connection += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let answer: serde_json::Value = response.json().await.unwrap_or_default();
            if status >= 500 {
                figures.lock().await.retried_5xx += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let mut f = figures.lock().await;
            if status != 200 {
                eprintln!("chaos: upload answered {status}: {answer}");
                f.failed += 1;
                break;
            }
            let count = |k: &str| answer[k].as_u64().unwrap_or(0);
            f.uploads += 1;
            f.rereads += usize::from(upload.reread > 0);
            f.items += upload.items.len();
            f.accepted += count("Accepted");
            f.duplicates += count("Duplicates");
            f.held += count("Held");
            f.unowned += count("Unowned");
            f.rejected += answer["Rejected"].as_array().map_or(0, Vec::len) as u64;
            f.last_upload_seconds = start.elapsed().as_secs_f64();
            break;
        }
    }
}

/// An SQS queue subscribed to the notices topic, as a subscriber would.
async fn subscribe_inbox(
    p: &Pipeline,
    sqs: &aws_sdk_sqs::Client,
    stage: &str,
) -> anyhow::Result<String> {
    let url = sqs
        .create_queue()
        .queue_name(format!("{stage}-notices"))
        .send()
        .await?
        .queue_url
        .context("no queue URL")?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .context("no queue ARN")?;
    aws_sdk_sns::Client::new(&p.sdk)
        .subscribe()
        .topic_arn(p.reference("NotificationsTopic")?)
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await?;
    Ok(url)
}

async fn sample_depths(
    sqs: &aws_sdk_sqs::Client,
    queues: &[(String, String)],
    peaks: &mut BTreeMap<String, i64>,
) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    for (id, url) in queues {
        let got = tokio::time::timeout(
            Duration::from_secs(3),
            sqs.get_queue_attributes()
                .queue_url(url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .send(),
        )
        .await;
        let Ok(Ok(out)) = got else { continue };
        let attrs = out.attributes.unwrap_or_default();
        let n = |a: A| {
            attrs
                .get(&a)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let depth = n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible);
        let peak = peaks.entry(id.clone()).or_default();
        *peak = (*peak).max(depth);
    }
}

/// Notices per endpoint and kind, read off the subscription queue.
async fn read_notices(
    sqs: &aws_sdk_sqs::Client,
    inbox: &str,
) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut out: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut empty = 0;
    while empty < 2 {
        let Ok(got) = sqs
            .receive_message()
            .queue_url(inbox)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
        else {
            break;
        };
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        for m in messages {
            let attr = |name: &str| {
                m.message_attributes()
                    .and_then(|a| a.get(name))
                    .and_then(|v| v.string_value())
                    .unwrap_or("(none)")
                    .to_owned()
            };
            *out.entry(attr("endpoint"))
                .or_default()
                .entry(attr("kind"))
                .or_default() += 1;
            if let Some(handle) = m.receipt_handle() {
                let _ = sqs
                    .delete_message()
                    .queue_url(inbox)
                    .receipt_handle(handle)
                    .send()
                    .await;
            }
        }
    }
    out
}
