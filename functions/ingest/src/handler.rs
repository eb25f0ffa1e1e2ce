//! One upload, as [`Ingest::handle`] walks it: route, authenticate, read the
//! body, parse, plan, store, answer. Settings, clients, the answer's policy
//! and the journal tracking live beside it.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use platformsync_aws::apigw;
use platformsync_aws::config::{Function, Reader};
use platformsync_aws::transactions::Insertion;
use platformsync_aws::{Calls, SdkConfig};
use platformsync_domain::record::RejectRecord;
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::upload::{UploadError, parse_upload};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tracing::{Instrument, error, info, info_span, warn};

use crate::answer::{self, Answer, refuse};
use crate::auth;
use crate::budget::{Budget, FUNCTION_TIMEOUT};
use crate::clients::Clients;
use crate::plan::{self, Plan};
use crate::response::UploadResponse;
use crate::sequences;
use crate::settings::{InitError, Settings};
use crate::writes;

/// The ingest function: its clients (built once per container) and settings.
#[derive(Debug)]
pub struct Ingest {
    clients: Clients,
    settings: Settings,
}

impl Ingest {
    pub fn new(sdk: &SdkConfig, settings: Settings) -> Self {
        Self {
            clients: Clients::new(sdk, &settings),
            settings,
        }
    }

    /// Another least time between two key look-ups caused by a key that
    /// matched neither version (default one second).
    pub fn with_key_refetch_interval(mut self, interval: Duration) -> Self {
        self.clients.keys = self.clients.keys.with_refetch_interval(interval);
        self
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let reader = Reader::from_env(Function::Ingest);
        let settings = Settings::load(&reader)?;
        let sdk = platformsync_aws::sdk_config_for(&Calls::from_knobs(&reader)?).await;
        Ok(Self::new(&sdk, settings))
    }

    /// Handles one request with the function's full timeout ahead (tests,
    /// the local runner); see [`Ingest::handle_before`].
    pub async fn handle(&self, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        self.handle_before(req, Instant::now() + FUNCTION_TIMEOUT)
            .await
    }

    /// Handles one request; never fails: every outcome is an HTTP answer,
    /// ours and not a timeout's, given before `deadline` (the Lambda
    /// deadline): writes still running `DEADLINE_MARGIN_SECONDS` before it
    /// are answered "not stored, re-send" (503).
    pub async fn handle_before(
        &self,
        req: ApiGatewayV2httpRequest,
        deadline: Instant,
    ) -> ApiGatewayV2httpResponse {
        let budget = Budget::before(deadline, self.settings.deadline_margin);
        let upload_id = uuid::Uuid::new_v4().to_string();
        let request_id = req.request_context.request_id.clone().unwrap_or_default();
        let span = info_span!("upload", upload_id = %upload_id, request_id = %request_id);
        async {
            let started = Instant::now();
            let resp = self.process(&req, &upload_id, budget).await;
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
        budget: Budget,
    ) -> ApiGatewayV2httpResponse {
        if apigw::path(req) != "/v1/uploads" {
            let hint = "no such route; SafeSync posts to /v1/uploads";
            return refuse(404, "not_found", hint, None);
        }
        if apigw::method(req) != ::http::Method::POST {
            return refuse(405, "method_not_allowed", "use POST", None);
        }
        if let Some(resp) = auth::authenticate(&self.clients.keys, req).await {
            return resp;
        }
        let body = match apigw::body_bytes(req) {
            Ok(body) => body,
            Err(e) => {
                let message = format!("body is not valid base64: {e}");
                return refuse(400, "invalid_body", &message, Some(upload_id));
            }
        };
        let limit = self.settings.max_body_bytes;
        if body.len() > limit {
            let message = format!(
                "body is {} bytes, over the {limit} byte limit; split the upload",
                body.len()
            );
            return refuse(413, "too_large", &message, Some(upload_id));
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
        let (status, response) = self.store(upload_id, &plan, budget).await;
        answer::record_metrics(&response, started.elapsed());
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
        apigw::json(status, &response)
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
        let raw = String::from_utf8_lossy(body);
        let record = RejectRecord::new(
            upload_id,
            "Body".to_owned(),
            error.code(),
            error.to_string(),
            &raw,
            now,
        );
        if let Err(e) = self.clients.rejects.put_all(&[record]).await {
            warn!(error = %e, "could not keep the refused body in the rejects table");
        }
    }

    /// Keeps the rejects, writes each new item once, and tallies the answer.
    async fn store(&self, upload_id: &str, plan: &Plan, budget: Budget) -> (u16, UploadResponse) {
        let mut answer = Answer::new(upload_id);

        let records: Vec<RejectRecord> = plan.rejects.iter().map(|r| r.record.clone()).collect();
        let kept = budget.write(self.clients.rejects.put_all(&records)).await;
        for reject in &plan.rejects {
            answer.rejected(reject.item, reject.reason.clone());
        }
        if let Err(e) = &kept {
            error!(error = %e, "could not keep rejected items");
            for reject in &plan.rejects {
                answer.reject_not_kept(reject.item, e);
            }
        }

        let results = writes::write_all(
            &self.clients.transactions,
            plan,
            budget,
            self.settings.write_concurrency,
        )
        .await;
        let mut new_serials = Vec::new();
        for (write, result) in plan.writes.iter().zip(&results) {
            match result {
                Ok(Insertion::Stored) => {
                    new_serials.push(&write.record.serial_number);
                    answer.stored(write.item, write.is_held());
                }
                Ok(Insertion::Duplicate) => answer.duplicate(write.item),
                Err(e) => {
                    warn!(item = %write.item, error = %e, "item not stored");
                    answer.not_stored(write.item, e);
                }
            }
        }
        for repeat in &plan.repeats {
            answer.repeat(repeat.item, results[repeat.first_write].as_ref().err());
        }

        // Advisory: an answer without them beats no answer.
        let unowned = budget
            .advise(self.count_unowned(&new_serials))
            .await
            .flatten();
        let gaps = budget
            .advise(sequences::track(&self.clients.config, plan))
            .await
            .unwrap_or_default();
        answer.finish(unowned, gaps)
    }

    /// How many of the newly stored transactions belong to safes no customer
    /// owns. Advisory: `None` if the registry cannot be read.
    async fn count_unowned(&self, serials: &[&SerialNumber]) -> Option<usize> {
        let distinct: Vec<SerialNumber> = serials
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        match self.clients.config.safe_owners(&distinct).await {
            Ok(owners) => Some(serials.iter().filter(|s| !owners.contains_key(**s)).count()),
            Err(e) => {
                warn!(error = %e, "could not read the safe registry");
                None
            }
        }
    }
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
