//! A DynamoDB stream event source, played as Lambda's event source mapping
//! plays it: shard iterators, batches of at most `BatchSize`, partial batch
//! responses (the lowest failed sequence number is the checkpoint: what came
//! before it is done, it and what follows are retried), whole-batch retries
//! on function errors (with `BisectBatchOnFunctionError`, the failed batch
//! is split in two and each half invoked on its own, halving again while a
//! half fails), and when `MaximumRetryAttempts` (unbounded at -1) or
//! `MaximumRecordAgeInSeconds` (the age of the oldest record still failing,
//! unbounded at -1) runs out, the batch's description goes to the
//! on-failure destination and the shard moves on.

use crate::checkpoints::Checkpoints;
use crate::functions::Function;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, info, warn};

pub struct StreamSource {
    pub function: Arc<Function>,
    pub stream_arn: String,
    pub batch_size: usize,
    pub starting_position: String,
    /// `None`: retry until the records expire (`-1`).
    pub max_retries: Option<u32>,
    /// `None`: no age limit but the stream's retention (`-1`).
    pub max_record_age: Option<Duration>,
    pub bisect_on_error: bool,
    pub on_failure_queue_url: Option<String>,
    pub poll_interval: Duration,
}

#[derive(Default)]
struct Shard {
    iterator: Option<String>,
    /// Set once `GetRecords` says the shard is closed and drained.
    closed: bool,
    started: bool,
    /// Records read but not yet handled (the head is retried).
    pending: Vec<Record>,
    attempts: u32,
    limit: usize,
    /// Records of a batch that failed with a function error and is being
    /// replayed in halves: the halves stay within it.
    split_left: usize,
}

pub async fn run(
    src: StreamSource,
    streams: aws_sdk_dynamodbstreams::Client,
    sqs: aws_sdk_sqs::Client,
    checkpoints: Arc<Checkpoints>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut shards: HashMap<String, Shard> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut busy = false;
        match list_shards(&streams, &src.stream_arn).await {
            Ok(list) => {
                for (shard_id, parent) in list {
                    if finished.contains(&shard_id) {
                        continue;
                    }
                    // A child shard waits until its parent is drained, so a
                    // key's records are handled in order.
                    if parent
                        .as_ref()
                        .is_some_and(|p| !finished.contains(p) && shards.contains_key(p))
                    {
                        continue;
                    }
                    let state = shards.entry(shard_id.clone()).or_insert_with(|| Shard {
                        limit: src.batch_size,
                        ..Shard::default()
                    });
                    match step(&src, &streams, &sqs, &checkpoints, &shard_id, state).await {
                        Ok(worked) => busy |= worked,
                        Err(e) => {
                            warn!(shard = %shard_id, error = %e, "stream poll failed; retrying")
                        }
                    }
                    if state.closed {
                        finished.insert(shard_id);
                    }
                }
            }
            Err(e) => {
                warn!(stream = %src.stream_arn, error = %e, "describe stream failed; retrying")
            }
        }
        if !busy {
            tokio::select! {
                _ = tokio::time::sleep(src.poll_interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn list_shards(
    streams: &aws_sdk_dynamodbstreams::Client,
    arn: &str,
) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let d = streams
            .describe_stream()
            .stream_arn(arn)
            .set_exclusive_start_shard_id(start.clone())
            .send()
            .await?;
        let desc = d
            .stream_description()
            .ok_or_else(|| anyhow::anyhow!("no stream description"))?;
        for s in desc.shards() {
            if let Some(id) = s.shard_id() {
                out.push((id.to_owned(), s.parent_shard_id().map(str::to_owned)));
            }
        }
        start = desc.last_evaluated_shard_id().map(str::to_owned);
        if start.is_none() {
            return Ok(out);
        }
    }
}

/// One poll or one invocation for a shard; `true` if it did work.
async fn step(
    src: &StreamSource,
    streams: &aws_sdk_dynamodbstreams::Client,
    sqs: &aws_sdk_sqs::Client,
    checkpoints: &Checkpoints,
    shard_id: &str,
    shard: &mut Shard,
) -> anyhow::Result<bool> {
    if shard.pending.is_empty() {
        if shard.started && shard.iterator.is_none() {
            shard.closed = true;
            return Ok(false);
        }
        let iterator = match shard.iterator.take() {
            Some(it) => it,
            None => first_iterator(src, streams, checkpoints, shard_id).await?,
        };
        shard.started = true;
        let out = streams
            .get_records()
            .shard_iterator(iterator)
            .limit(src.batch_size.min(1000) as i32)
            .send()
            .await?;
        shard.iterator = out.next_shard_iterator().map(str::to_owned);
        shard.pending = out.records().to_vec();
        if shard.pending.is_empty() {
            return Ok(false);
        }
    }
    let limit = if shard.split_left > 0 {
        shard.limit.min(shard.split_left)
    } else {
        shard.limit
    };
    let take = limit.min(shard.pending.len());
    let batch = &shard.pending[..take];
    let mut event = aws_lambda_events::dynamodb::Event::default();
    event.records = batch
        .iter()
        .map(|r| fanout::stream_reader::lambda_record(r, &src.stream_arn))
        .collect();
    let outcome = src.function.stream(event).await;
    let handled = match outcome {
        Ok(response) => {
            let failed: Option<&str> = response
                .batch_item_failures
                .iter()
                .filter_map(|f| f.item_identifier.as_deref())
                .min_by(|a, b| compare_sequence(a, b));
            match failed {
                None => take,
                // The checkpoint: everything before the lowest failure is done.
                Some(seq) => batch
                    .iter()
                    .position(|r| sequence(r) == Some(seq))
                    .unwrap_or(0),
            }
        }
        Err(e) => {
            error!(function = %src.function.logical_id, error = %e, "function error: the batch is retried");
            if src.bisect_on_error && take > 1 {
                // Lambda splits the failed batch in two and invokes each
                // half on its own; a failing half is split again.
                shard.split_left = shard.split_left.max(take);
                shard.limit = take.div_ceil(2);
            }
            0
        }
    };
    if handled > 0 {
        let last = sequence(&shard.pending[handled - 1])
            .unwrap_or_default()
            .to_owned();
        shard.pending.drain(..handled);
        checkpoints
            .advance(&src.stream_arn, shard_id, &last)
            .await?;
        shard.attempts = 0;
        shard.split_left = shard.split_left.saturating_sub(handled);
    }
    if handled < take {
        shard.attempts += 1;
        let age = shard
            .pending
            .first()
            .and_then(|r| r.dynamodb()?.approximate_creation_date_time())
            .and_then(|t| {
                let created =
                    std::time::UNIX_EPOCH + Duration::from_secs_f64(t.as_secs_f64().max(0.0));
                std::time::SystemTime::now().duration_since(created).ok()
            });
        if gives_up(shard.attempts, src.max_retries, age, src.max_record_age) {
            let failed: Vec<Record> = shard.pending.drain(..take - handled).collect();
            let condition = if src.max_retries.is_some_and(|max| shard.attempts > max) {
                "RetryAttemptsExhausted"
            } else {
                "RecordAgeExceeded"
            };
            send_to_failure_destination(src, sqs, shard_id, &failed, shard.attempts, condition)
                .await;
            if let Some(last) = failed.last().and_then(sequence) {
                checkpoints.advance(&src.stream_arn, shard_id, last).await?;
            }
            shard.attempts = 0;
            shard.limit = src.batch_size;
            shard.split_left = shard.split_left.saturating_sub(take - handled);
        } else {
            let backoff = Duration::from_millis(200 * u64::from(shard.attempts.min(25)));
            tokio::time::sleep(backoff).await;
        }
    }
    if shard.split_left == 0 {
        shard.limit = src.batch_size;
    }
    Ok(true)
}

/// Whether Lambda stops retrying a failing batch: after `max_retries`
/// retries (`None`: never by count), or once its oldest failing record is
/// older than `max_age` (`None`: never by age; the stream's retention
/// ends it).
fn gives_up(
    attempts: u32,
    max_retries: Option<u32>,
    age: Option<Duration>,
    max_age: Option<Duration>,
) -> bool {
    max_retries.is_some_and(|max| attempts > max)
        || matches!((age, max_age), (Some(age), Some(max)) if age > max)
}

async fn first_iterator(
    src: &StreamSource,
    streams: &aws_sdk_dynamodbstreams::Client,
    checkpoints: &Checkpoints,
    shard_id: &str,
) -> anyhow::Result<String> {
    let req = streams
        .get_shard_iterator()
        .stream_arn(&src.stream_arn)
        .shard_id(shard_id);
    let req = match checkpoints.get(&src.stream_arn, shard_id).await {
        Some(seq) => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(seq),
        None if src.starting_position == "LATEST" => {
            req.shard_iterator_type(ShardIteratorType::Latest)
        }
        None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
    };
    let out = req.send().await?;
    out.shard_iterator()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no shard iterator for {shard_id}"))
}

fn sequence(r: &Record) -> Option<&str> {
    r.dynamodb().and_then(|d| d.sequence_number())
}

/// Sequence numbers are decimal strings of varying length.
fn compare_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// What Lambda sends to a stream's on-failure destination: where the
/// skipped records are, not the records themselves.
async fn send_to_failure_destination(
    src: &StreamSource,
    sqs: &aws_sdk_sqs::Client,
    shard_id: &str,
    failed: &[Record],
    attempts: u32,
    condition: &str,
) {
    let (Some(first), Some(last)) = (
        failed.first().and_then(sequence),
        failed.last().and_then(sequence),
    ) else {
        return;
    };
    let body = serde_json::json!({
        "version": "1.0",
        "requestContext": {
            "condition": condition,
            "approximateInvokeCount": attempts,
            "functionArn": src.function.logical_id,
        },
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first,
            "endSequenceNumber": last,
            "batchSize": failed.len(),
            "streamArn": src.stream_arn,
        }
    });
    warn!(shard = %shard_id, first, last, records = failed.len(), "retries exhausted: batch sent to the on-failure destination");
    let Some(url) = &src.on_failure_queue_url else {
        error!("no on-failure destination configured: the batch is skipped");
        return;
    };
    if let Err(e) = sqs
        .send_message()
        .queue_url(url)
        .message_body(body.to_string())
        .send()
        .await
    {
        error!(error = %e, "could not send to the on-failure destination");
    } else {
        info!("on-failure record sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_end_by_count_or_by_record_age_and_minus_one_means_never() {
        let h = Duration::from_secs(3600);
        // -1 / -1: retried until the stream trims the records.
        assert!(!gives_up(1_000_000, None, Some(23 * h), None));
        // Unbounded count, 12 h age: only the age ends it.
        assert!(!gives_up(10_000, None, Some(11 * h), Some(12 * h)));
        assert!(gives_up(1, None, Some(13 * h), Some(12 * h)));
        // A count: ends after that many retries, whatever the age.
        assert!(!gives_up(200, Some(200), Some(h), None));
        assert!(gives_up(201, Some(200), Some(h), None));
        assert!(
            !gives_up(3, None, None, Some(h)),
            "age unknown: keep trying"
        );
    }

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert!(compare_sequence("900", "1000").is_lt());
        assert!(compare_sequence("1001", "1000").is_gt());
        assert!(compare_sequence("1000", "1000").is_eq());
    }
}
