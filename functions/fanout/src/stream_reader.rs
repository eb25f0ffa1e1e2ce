//! DynamoDB Streams records, read with the SDK, in the shape Lambda hands
//! them to the function (feature `stream-records`).
//!
//! The SDK's `Record` and Lambda's `EventRecord` are different shapes (a
//! JSON round trip of one does not parse as the other): the local runner and
//! the tests convert with [`lambda_record`] and read whole shards with
//! [`read_shard`] / [`read_all`].

use aws_lambda_events::dynamodb::{EventRecord, StreamRecord, StreamViewType};
use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use std::collections::HashMap;

/// A stream could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on stream {stream_arn}: {message}")]
pub struct StreamReadError {
    pub operation: &'static str,
    pub stream_arn: String,
    pub message: String,
    /// The records are gone for good (trimmed past the stream's 24 h, or
    /// the stream or shard no longer exists): retrying cannot help.
    pub gone: bool,
}

fn read_error<E, R>(
    operation: &'static str,
    stream_arn: &str,
    e: aws_sdk_dynamodbstreams::error::SdkError<E, R>,
) -> StreamReadError
where
    E: std::error::Error + aws_sdk_dynamodbstreams::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodbstreams::error::ProvideErrorMetadata;
    let gone = matches!(
        e.code(),
        Some("TrimmedDataAccessException" | "ResourceNotFoundException")
    );
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    StreamReadError {
        operation,
        stream_arn: stream_arn.to_owned(),
        message,
        gone,
    }
}

/// One SDK stream record as Lambda delivers it from `stream_arn`.
pub fn lambda_record(record: &Record, stream_arn: &str) -> EventRecord {
    let mut out = EventRecord::default();
    out.aws_region = record.aws_region().unwrap_or_default().to_owned();
    out.event_id = record.event_id().unwrap_or_default().to_owned();
    out.event_name = record
        .event_name()
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    out.event_source = record.event_source().map(str::to_owned);
    out.event_version = record.event_version().map(str::to_owned);
    out.event_source_arn = Some(stream_arn.to_owned());
    if let Some(change) = record.dynamodb() {
        let mut image = StreamRecord::default();
        let item = |m: Option<&HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
            m.cloned().map(serde_dynamo::Item::from).unwrap_or_default()
        };
        image.keys = item(change.keys());
        image.new_image = item(change.new_image());
        image.old_image = item(change.old_image());
        image.sequence_number = change.sequence_number().map(str::to_owned);
        image.size_bytes = change.size_bytes().unwrap_or_default();
        image.stream_view_type = change.stream_view_type().and_then(|v| match v.as_str() {
            "NEW_IMAGE" => Some(StreamViewType::NewImage),
            "OLD_IMAGE" => Some(StreamViewType::OldImage),
            "NEW_AND_OLD_IMAGES" => Some(StreamViewType::NewAndOldImages),
            "KEYS_ONLY" => Some(StreamViewType::KeysOnly),
            _ => None,
        });
        if let Some(at) = change.approximate_creation_date_time() {
            image.approximate_creation_date_time =
                chrono::DateTime::from_timestamp(at.secs(), at.subsec_nanos()).unwrap_or_default();
        }
        out.change = image;
    }
    out
}

/// Where to start reading a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardPosition<'a> {
    TrimHorizon,
    /// From this record on (a reconciliation re-reading a failed batch from
    /// its on-failure record's `startSequenceNumber`).
    At(&'a str),
    /// After this record (a runner following the stream).
    After(&'a str),
}

/// Every record of one shard from `from` to what is there now, in stream
/// order.
pub async fn read_shard(
    client: &Client,
    stream_arn: &str,
    shard_id: &str,
    from: ShardPosition<'_>,
) -> Result<Vec<EventRecord>, StreamReadError> {
    read(client, stream_arn, shard_id, from, None).await
}

/// Sequence numbers are decimal strings of varying length.
pub fn compare_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The records of one shard from `start` to `end` (both included), in
/// stream order: the range a stream's on-failure record describes.
pub async fn read_range(
    client: &Client,
    stream_arn: &str,
    shard_id: &str,
    start: &str,
    end: &str,
) -> Result<Vec<EventRecord>, StreamReadError> {
    read(
        client,
        stream_arn,
        shard_id,
        ShardPosition::At(start),
        Some(end),
    )
    .await
}

/// The records of one shard from `from` up to `end` (included), or to what
/// is there now.
async fn read(
    client: &Client,
    stream_arn: &str,
    shard_id: &str,
    from: ShardPosition<'_>,
    end: Option<&str>,
) -> Result<Vec<EventRecord>, StreamReadError> {
    let request = client
        .get_shard_iterator()
        .stream_arn(stream_arn)
        .shard_id(shard_id);
    let request = match from {
        ShardPosition::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        ShardPosition::At(seq) => request
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(seq),
        ShardPosition::After(seq) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(seq),
    };
    let mut iterator = request
        .send()
        .await
        .map_err(|e| read_error("GetShardIterator", stream_arn, e))?
        .shard_iterator()
        .map(str::to_owned);
    let mut records = Vec::new();
    while let Some(current) = iterator.take() {
        let page = client
            .get_records()
            .shard_iterator(current)
            .limit(1000)
            .send()
            .await
            .map_err(|e| read_error("GetRecords", stream_arn, e))?;
        if page.records().is_empty() {
            // An open shard always hands out a next iterator; stop at the
            // end of what is there now.
            break;
        }
        for r in page.records() {
            let seq = r
                .dynamodb()
                .and_then(|d| d.sequence_number())
                .unwrap_or_default();
            if end.is_some_and(|end| compare_sequence(seq, end).is_gt()) {
                return Ok(records);
            }
            records.push(lambda_record(r, stream_arn));
        }
        iterator = page.next_shard_iterator().map(str::to_owned);
    }
    Ok(records)
}

/// Every record of every shard of the stream, shard by shard.
pub async fn read_all(
    client: &Client,
    stream_arn: &str,
) -> Result<Vec<EventRecord>, StreamReadError> {
    let mut shard_ids: Vec<String> = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let described = client
            .describe_stream()
            .stream_arn(stream_arn)
            .set_exclusive_start_shard_id(start.take())
            .send()
            .await
            .map_err(|e| read_error("DescribeStream", stream_arn, e))?;
        let Some(description) = described.stream_description() else {
            break;
        };
        shard_ids.extend(
            description
                .shards()
                .iter()
                .filter_map(|s| s.shard_id().map(str::to_owned)),
        );
        match description.last_evaluated_shard_id() {
            Some(last) => start = Some(last.to_owned()),
            None => break,
        }
    }
    let mut records = Vec::new();
    for shard in shard_ids {
        records.extend(read_shard(client, stream_arn, &shard, ShardPosition::TrimHorizon).await?);
    }
    Ok(records)
}
