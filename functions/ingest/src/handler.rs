use crate::http;
use crate::plan::{self, Plan};
use crate::response::{
    ErrorBody, ErrorResponse, ItemStatus, ItemStatusEntry, RejectedItem, SequenceGap,
    UploadResponse,
};
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use futures_util::{StreamExt, stream};
use platformsync_aws::config_table::{ConfigStore, SequenceRecord};
use platformsync_aws::env::{self, EnvError};
use platformsync_aws::ingest_key::{IngestKeys, KeyMatch};
use platformsync_aws::metrics::Metrics;
use platformsync_aws::rejects::RejectStore;
use platformsync_aws::transactions::{Insertion, TransactionStore};
use platformsync_aws::{SdkConfig, StoreError};
use platformsync_domain::quality::QualityPolicy;
use platformsync_domain::record::RejectRecord;
use platformsync_domain::sequence::Progress;
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::upload::{ItemRef, UploadError, parse_upload};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tracing::{Instrument, error, info, info_span, warn};

/// A synchronous Lambda invocation's request payload is at most 6 MB; a body
/// over it gets 413 before any work.
///
/// On AWS this answer is never seen: Lambda refuses an invocation whose event
/// is over 6 MB before the function runs (the event is the body plus
/// headers, base64 adding a third for binary bodies), and API Gateway HTTP
/// API then answers SafeSync `413 Request Entity Too Large` with its own
/// body `{"message":"Request Entity Too Large"}` (docs/upload.md). Only the
/// local runner and in-process callers see this one.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// How the function is configured (from `template.yaml`'s environment).
#[derive(Debug, Clone)]
pub struct Settings {
    pub transactions_table: String,
    pub config_table: String,
    pub rejects_table: String,
    /// ARN or name of the secret holding the key SafeSync presents.
    pub ingest_key_secret: String,
    /// Conditional puts in flight at once.
    pub write_concurrency: usize,
    pub max_body_bytes: usize,
    pub quality: QualityPolicy,
}

impl Settings {
    pub fn from_env() -> Result<Self, EnvError> {
        let defaults = QualityPolicy::default();
        // 0 (the default): no maximum age for RetrievedOn.
        let max_age_hours: i64 = env::parsed_or("RETRIEVED_ON_MAX_AGE_HOURS", 0)?;
        let quality = QualityPolicy {
            future_margin: time::Duration::seconds(env::parsed_or(
                "FUTURE_MARGIN_SECONDS",
                defaults.future_margin.whole_seconds(),
            )?),
            retrieved_max_age: (max_age_hours > 0).then(|| time::Duration::hours(max_age_hours)),
            ..defaults
        };
        Ok(Self {
            transactions_table: env::required("TRANSACTIONS_TABLE")?,
            config_table: env::required("CONFIG_TABLE")?,
            rejects_table: env::required("REJECTS_TABLE")?,
            ingest_key_secret: env::required("INGEST_KEY_SECRET_ARN")?,
            write_concurrency: env::parsed_or("WRITE_CONCURRENCY", 32usize)?.clamp(1, 256),
            max_body_bytes: MAX_BODY_BYTES,
            quality,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Env(#[from] EnvError),
}

/// The ingest function: its clients (built once per container) and settings.
#[derive(Debug)]
pub struct Ingest {
    transactions: TransactionStore,
    rejects: RejectStore,
    config: ConfigStore,
    keys: IngestKeys,
    settings: Settings,
}

/// Attempts per DynamoDB call: throttling is retried by the SDK's standard
/// mode with exponential backoff and jitter before an item counts as failed.
const SDK_MAX_ATTEMPTS: u32 = 8;

impl Ingest {
    pub fn new(sdk: &SdkConfig, settings: Settings) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            transactions: TransactionStore::new(dynamodb.clone(), &settings.transactions_table),
            rejects: RejectStore::new(dynamodb.clone(), &settings.rejects_table),
            config: ConfigStore::new(dynamodb, &settings.config_table),
            keys: IngestKeys::new(
                aws_sdk_secretsmanager::Client::new(sdk),
                &settings.ingest_key_secret,
                platformsync_aws::ingest_key::MAX_TTL,
            ),
            settings,
        }
    }

    /// Another least time between two key look-ups caused by a key that
    /// matched neither version (default one second).
    pub fn with_key_refetch_interval(mut self, interval: Duration) -> Self {
        self.keys = self.keys.with_refetch_interval(interval);
        self
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let settings = Settings::from_env()?;
        let sdk = platformsync_aws::sdk_config_with_retries(SDK_MAX_ATTEMPTS).await;
        Ok(Self::new(&sdk, settings))
    }

    /// Handles one request; never fails: every outcome is an HTTP answer.
    pub async fn handle(&self, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let upload_id = uuid::Uuid::new_v4().to_string();
        let request_id = req.request_context.request_id.clone().unwrap_or_default();
        let span = info_span!("upload", upload_id = %upload_id, request_id = %request_id);
        async {
            let started = Instant::now();
            let resp = self.process(&req, &upload_id).await;
            info!(
                status = resp.status_code,
                duration_ms = started.elapsed().as_millis() as u64,
                "upload handled"
            );
            resp
        }
        .instrument(span)
        .await
    }

    async fn process(
        &self,
        req: &ApiGatewayV2httpRequest,
        upload_id: &str,
    ) -> ApiGatewayV2httpResponse {
        if http::path(req) != "/v1/uploads" {
            return refuse(
                404,
                "not_found",
                "no such route; SafeSync posts to /v1/uploads",
                None,
            );
        }
        if http::method(req) != ::http::Method::POST {
            return refuse(405, "method_not_allowed", "use POST", None);
        }
        if let Some(resp) = self.authenticate(req).await {
            return resp;
        }
        let body = match http::body_bytes(req) {
            Ok(body) => body,
            Err(e) => {
                return refuse(
                    400,
                    "invalid_body",
                    &format!("body is not valid base64: {e}"),
                    Some(upload_id),
                );
            }
        };
        if body.len() > self.settings.max_body_bytes {
            return refuse(
                413,
                "too_large",
                &format!(
                    "body is {} bytes, over the {} byte limit; split the upload",
                    body.len(),
                    self.settings.max_body_bytes
                ),
                Some(upload_id),
            );
        }
        let now = OffsetDateTime::now_utc();
        let parsed = match parse_upload(&body) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.keep_refused_body(upload_id, &body, &e, now).await;
                return refuse(400, e.code(), &e.to_string(), Some(upload_id));
            }
        };
        let plan = plan::plan(&parsed, upload_id, now, &self.settings.quality);
        let started = Instant::now();
        let response = self.store(upload_id, &plan).await;
        self.record_metrics(&response, started.elapsed());
        info!(
            items = parsed.items.len(),
            accepted = response.accepted,
            duplicates = response.duplicates,
            held = response.held,
            rejected = response.rejected.len(),
            failed = response.failed.len(),
            unowned = response.unowned,
            sequence_gaps = response.sequence_gaps.len(),
            "upload stored"
        );
        let status = if response.failed.is_empty() { 200 } else { 503 };
        http::json(status, &response)
    }

    /// `None` when the caller presented the ingest key.
    async fn authenticate(
        &self,
        req: &ApiGatewayV2httpRequest,
    ) -> Option<ApiGatewayV2httpResponse> {
        let Some(presented) = http::presented_key(req) else {
            warn!("upload without an ingest key");
            return Some(refuse(
                401,
                "unauthorized",
                "present the ingest key as x-api-key or Authorization: Bearer",
                None,
            ));
        };
        match self.keys.verify(presented).await {
            Ok(KeyMatch::Current) => None,
            Ok(KeyMatch::Previous) => {
                // Accepted: the key was rotated and SafeSync has not switched
                // yet. It stops working at the next rotation.
                info!("upload with the previous ingest key (AWSPREVIOUS)");
                None
            }
            Ok(KeyMatch::None) => {
                warn!("upload with a wrong ingest key");
                Some(refuse(
                    401,
                    "unauthorized",
                    "the ingest key is not valid",
                    None,
                ))
            }
            Err(e) => {
                error!(error = %e, "cannot read the ingest key");
                Some(refuse(
                    503,
                    "unavailable",
                    "cannot verify the ingest key now; retry later",
                    None,
                ))
            }
        }
    }

    /// Keeps a refused body for support (best effort: SafeSync got a 400 and
    /// still holds the upload).
    async fn keep_refused_body(
        &self,
        upload_id: &str,
        body: &[u8],
        error: &UploadError,
        now: OffsetDateTime,
    ) {
        let record = RejectRecord::new(
            upload_id,
            "Body".to_owned(),
            error.code(),
            error.to_string(),
            &String::from_utf8_lossy(body),
            now,
        );
        if let Err(e) = self.rejects.put_all(&[record]).await {
            warn!(error = %e, "could not keep the refused body in the rejects table");
        }
    }

    async fn store(&self, upload_id: &str, plan: &Plan) -> UploadResponse {
        let mut response = UploadResponse {
            upload_id: upload_id.to_owned(),
            ..UploadResponse::default()
        };
        let mut statuses: Vec<(ItemRef, ItemStatus)> = Vec::new();

        let reject_records: Vec<RejectRecord> =
            plan.rejects.iter().map(|r| r.record.clone()).collect();
        let rejects_kept = self.rejects.put_all(&reject_records).await;
        for reject in &plan.rejects {
            response
                .rejected
                .push(entry(reject.item, reject.reason.clone()));
            statuses.push((reject.item, ItemStatus::Rejected));
        }
        if let Err(e) = &rejects_kept {
            error!(error = %e, "could not keep rejected items");
            for reject in &plan.rejects {
                response.failed.push(entry(
                    reject.item,
                    format!("rejected, and could not be kept for support: {e}"),
                ));
            }
        }

        // The futures are collected before they are streamed: a closure over
        // borrowed items inside the stream makes the handler future !Send
        // (rust-lang/rust#102211), and servers must be able to spawn it.
        let writes: Vec<_> = plan
            .writes
            .iter()
            .map(|w| self.transactions.insert_new(&w.record))
            .collect();
        let results: Vec<Result<Insertion, StoreError>> = stream::iter(writes)
            .buffered(self.settings.write_concurrency)
            .collect()
            .await;
        let mut new_serials = Vec::new();
        for (write, result) in plan.writes.iter().zip(&results) {
            let status = match result {
                Ok(Insertion::Stored) => {
                    new_serials.push(write.record.serial_number.as_str());
                    if write.is_held() {
                        response.held += 1;
                        ItemStatus::Held
                    } else {
                        response.accepted += 1;
                        ItemStatus::Accepted
                    }
                }
                Ok(Insertion::Duplicate) => {
                    response.duplicates += 1;
                    ItemStatus::Duplicate
                }
                Err(e) => {
                    warn!(item = %write.item, error = %e, "item not stored");
                    response.failed.push(entry(
                        write.item,
                        format!("not stored ({e}); re-send the upload"),
                    ));
                    ItemStatus::Failed
                }
            };
            statuses.push((write.item, status));
        }
        // A repeat within the upload shares the fate of its first occurrence:
        // a duplicate if that is stored, failed if that could not be.
        for repeat in &plan.repeats {
            if let Err(e) = &results[repeat.first_write] {
                response.failed.push(entry(
                    repeat.item,
                    format!("not stored ({e}); re-send the upload"),
                ));
                statuses.push((repeat.item, ItemStatus::Failed));
            } else {
                response.duplicates += 1;
                statuses.push((repeat.item, ItemStatus::Duplicate));
            }
        }

        response.unowned = self.count_unowned(&new_serials).await;
        response.sequence_gaps = self.track_sequences(plan).await;
        if !response.failed.is_empty() {
            statuses.sort_by_key(|(item, _)| *item);
            response.items = statuses
                .into_iter()
                .map(|(item, status)| ItemStatusEntry {
                    index: item.index,
                    kind: item.kind.wire_name(),
                    status,
                })
                .collect();
        }
        response
    }

    /// How many of the newly stored transactions belong to safes no customer
    /// owns. Advisory: `None` if the registry cannot be read.
    async fn count_unowned(&self, serials: &[&str]) -> Option<usize> {
        let distinct: Vec<&str> = serials
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        match self.config.safe_owners(&distinct).await {
            Ok(owners) => Some(serials.iter().filter(|s| !owners.contains_key(**s)).count()),
            Err(e) => {
                warn!(error = %e, "could not read the safe registry");
                None
            }
        }
    }

    /// Updates each safe's journal progress; the gaps still open after this
    /// upload. Advisory: the items are stored whatever happens here.
    async fn track_sequences(&self, plan: &Plan) -> Vec<SequenceGap> {
        let per_safe: Vec<_> = plan
            .sequences
            .iter()
            .map(|(serial, numbers)| async move {
                match self.advance_sequence(serial, numbers).await {
                    Ok(progress) => progress
                        .gaps()
                        .into_iter()
                        .map(|g| SequenceGap {
                            serial_number: serial.to_string(),
                            from: g.from,
                            to: g.to,
                        })
                        .collect(),
                    Err(e) => {
                        warn!(serial = %serial, error = %e, "could not track the sequence");
                        Vec::new()
                    }
                }
            })
            .collect();
        let per_safe = stream::iter(per_safe)
            .buffered(8)
            .collect::<Vec<Vec<SequenceGap>>>()
            .await;
        per_safe.into_iter().flatten().collect()
    }

    async fn advance_sequence(
        &self,
        serial: &SerialNumber,
        numbers: &[u64],
    ) -> Result<Progress, StoreError> {
        let serial = serial.as_str();
        let mut delay = Duration::from_millis(20);
        for _ in 0..6 {
            let stored = self.config.sequence(serial).await?;
            let (mut progress, version) = match &stored {
                Some(r) => (
                    Progress {
                        contiguous: r.contiguous,
                        pending: r.pending.iter().copied().collect(),
                    },
                    r.version,
                ),
                None => (Progress::default(), 0),
            };
            if stored.is_some() {
                progress.observe(numbers.iter().copied());
            } else if let Some(first) = Progress::first_seen(numbers.iter().copied()) {
                progress = first;
            }
            let record = SequenceRecord {
                contiguous: progress.contiguous,
                pending: progress.pending.iter().copied().collect(),
                version: version + 1,
            };
            if self.config.put_sequence(serial, &record).await? {
                return Ok(progress);
            }
            // Another upload of the same safe won the race: read again.
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Err(StoreError::Service {
            operation: "PutItem",
            resource: self.config.table().to_owned(),
            message: "sequence progress kept changing under us".into(),
            retryable: true,
        })
    }

    fn record_metrics(&self, response: &UploadResponse, store_duration: Duration) {
        let mut m = Metrics::for_function("ingest");
        m.count("Accepted", response.accepted)
            .count("Duplicates", response.duplicates)
            .count("Held", response.held)
            .count("Rejected", response.rejected.len())
            .count("Failed", response.failed.len())
            .count("SequenceGaps", response.sequence_gaps.len())
            .millis("StoreDuration", store_duration.as_millis());
        if let Some(unowned) = response.unowned {
            m.count("Unowned", unowned);
        }
        m.flush();
    }
}

fn entry(item: ItemRef, reason: String) -> RejectedItem {
    RejectedItem {
        index: item.index,
        kind: item.kind.wire_name(),
        reason,
    }
}

fn refuse(
    status: u16,
    code: &'static str,
    message: &str,
    upload_id: Option<&str>,
) -> ApiGatewayV2httpResponse {
    http::json(
        status,
        &ErrorResponse {
            upload_id: upload_id.map(str::to_owned),
            error: ErrorBody {
                code,
                message: message.to_owned(),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The local runner and any tokio server must be able to spawn the
    /// handler: its future has to be `Send`.
    #[test]
    fn the_handler_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        fn check(ingest: &Ingest, req: ApiGatewayV2httpRequest) {
            let fut = ingest.handle(req);
            assert_send(&fut);
        }
        let _ = check;
    }
}
