use std::sync::atomic::Ordering;
use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use platformsync_aws::api_keys::{ApiKeyStore, Verified};
use platformsync_aws::apigw;
use platformsync_aws::assignments::AssignmentStore;
use platformsync_aws::config::{Function, Reader};
use platformsync_aws::metrics::Metrics;
use platformsync_aws::{Calls, SdkConfig};
use platformsync_domain::endpoint::CustomerId;
use platformsync_domain::types::MessageKind;
use secrecy::SecretString;
use tracing::{Instrument, error, info, info_span, warn};

use crate::paging::{self, Match, Page};
use crate::ranges::key_ranges;
use crate::request::{self, Paging, PullRequest};
use crate::response;
use crate::settings::{InitError, Settings};
use crate::store::TransactionRanges;
use crate::token::{self, PageToken};

/// What this container's reads of the transactions table cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub queries: u64,
    /// Items DynamoDB evaluated (read units follow their size).
    pub evaluated: u64,
    pub returned: u64,
    /// Read units DynamoDB reported (`ConsumedCapacity`), if it did.
    pub read_units: f64,
}

/// The pull API: its clients (built once per container) and settings.
#[derive(Debug)]
pub struct PullApi {
    keys: ApiKeyStore,
    assignments: AssignmentStore,
    transactions: TransactionRanges,
}

/// A refusal: status, code, message.
type Refusal = (u16, &'static str, String);

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    (status, code, message.into())
}

impl PullApi {
    pub fn new(sdk: &SdkConfig, settings: Settings) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            keys: ApiKeyStore::new(dynamodb.clone(), &settings.config_table),
            assignments: AssignmentStore::new(dynamodb.clone(), &settings.config_table),
            transactions: TransactionRanges::new(dynamodb, &settings.transactions_table),
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let reader = Reader::from_env(Function::PullApi);
        let settings = Settings::load(&reader)?;
        let sdk = platformsync_aws::sdk_config_for(&Calls::from_knobs(&reader)?).await;
        Ok(Self::new(&sdk, settings))
    }

    /// The reads made so far by this instance.
    pub fn stats(&self) -> Stats {
        let c = &self.transactions.counters;
        Stats {
            queries: c.queries.load(Ordering::Relaxed),
            evaluated: c.evaluated.load(Ordering::Relaxed),
            returned: c.returned.load(Ordering::Relaxed),
            read_units: c.capacity_centiunits.load(Ordering::Relaxed) as f64 / 100.0,
        }
    }

    /// Handles one request; never fails: every outcome is an HTTP answer.
    pub async fn handle(&self, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let request_id = req.request_context.request_id.clone().unwrap_or_default();
        let span = info_span!("pull", request_id = %request_id);
        async {
            let started = Instant::now();
            let before = self.stats();
            let resp = match self.process(&req).await {
                Ok(body) => apigw::json_text(200, body),
                Err((status, code, message)) => apigw::error(status, code, message),
            };
            let after = self.stats();
            let queries = after.queries - before.queries;
            let evaluated = after.evaluated - before.evaluated;
            info!(
                status = resp.status_code,
                queries,
                evaluated,
                duration_ms = started.elapsed().as_millis() as u64,
                "pull handled"
            );
            let mut m = Metrics::for_function("pull-api");
            m.count("Queries", queries as usize)
                .count("ItemsEvaluated", evaluated as usize)
                .millis("Duration", started.elapsed().as_millis());
            m.flush();
            resp
        }
        .instrument(span)
        .await
    }

    async fn process(&self, req: &ApiGatewayV2httpRequest) -> Result<String, Refusal> {
        let kind = match apigw::path(req) {
            "/v1/transactions" => MessageKind::Transactions,
            "/v1/audit-transactions" => MessageKind::AuditTransactions,
            _ => {
                return Err(refuse(
                    404,
                    "not_found",
                    "no such route; GET /v1/transactions or /v1/audit-transactions",
                ));
            }
        };
        if apigw::method(req) != ::http::Method::GET {
            return Err(refuse(405, "method_not_allowed", "use GET"));
        }
        let customer = self.authenticate(req).await?;
        let parsed = request::parse(kind, apigw::query(req))
            .map_err(|e| refuse(400, "invalid_request", e.to_string()))?;
        let (filters, page_no, size, token_in) = self.position(&parsed, &customer, kind)?;

        let periods = self
            .assignments
            .periods_of(&customer, filters.serial.as_ref())
            .await
            .map_err(|e| {
                error!(error = %e, "cannot read the customer's safes");
                refuse(
                    503,
                    "unavailable",
                    "cannot read your safes now; retry later",
                )
            })?;
        let m = Match {
            kind: kind.wire_name().to_owned(),
            types: filters.types.clone(),
        };
        let (total, page) = match &token_in {
            Some(t) => {
                let ranges = key_ranges(&periods, &filters, Some(&t.cursor));
                let page = paging::after_cursor(&self.transactions, &ranges, &m, size).await;
                page.map(|p| (t.total, p))
            }
            None => {
                let ranges = key_ranges(&periods, &filters, None);
                paging::by_number(&self.transactions, &ranges, &m, page_no, size).await
            }
        }
        .map_err(|e| {
            error!(error = %e, "cannot read transactions");
            refuse(
                503,
                "unavailable",
                "cannot read transactions now; retry later",
            )
        })?;
        let Page { items, more_after } = page;
        let next = more_after.map(|cursor| {
            token::encode(&PageToken {
                customer_id: customer.clone(),
                kind: kind.wire_name().to_owned(),
                filters: filters.clone(),
                page_size: size,
                page: page_no.saturating_add(1),
                // Counted for the first page; later pages keep it.
                total,
                cursor,
            })
        });
        Ok(response::page(
            kind.wire_name(),
            total,
            page_no,
            size,
            items.iter().map(|(_, row)| row.payload.as_str()),
            next.as_deref(),
        ))
    }

    /// The customer whose key was presented.
    async fn authenticate(&self, req: &ApiGatewayV2httpRequest) -> Result<CustomerId, Refusal> {
        let unauthorized = || {
            refuse(
                401,
                "unauthorized",
                "present your API key as x-api-key or Authorization: Bearer",
            )
        };
        let Some(presented) =
            apigw::presented_key(req).map(|k| SecretString::from(k.trim().to_owned()))
        else {
            warn!("pull without an API key");
            return Err(unauthorized());
        };
        match self.keys.verify(&presented).await {
            Ok(Verified::Customer(c)) => {
                info!(customer = %c, "authenticated");
                Ok(c)
            }
            Ok(Verified::Refused) => {
                warn!("pull with an unknown, wrong or revoked API key");
                Err(unauthorized())
            }
            Err(e) => {
                error!(error = %e, "cannot read API keys");
                Err(refuse(
                    503,
                    "unavailable",
                    "cannot verify the API key now; retry later",
                ))
            }
        }
    }

    /// Filters, page number, page size and the token (if any), checked
    /// against each other.
    #[allow(clippy::type_complexity)]
    fn position(
        &self,
        parsed: &PullRequest,
        customer: &CustomerId,
        kind: MessageKind,
    ) -> Result<(request::Filters, u32, u32, Option<PageToken>), Refusal> {
        match &parsed.paging {
            Paging::Number { page, size } => Ok((parsed.filters.clone(), *page, *size, None)),
            Paging::Token(raw) => {
                let t = token::decode(raw, customer, kind.wire_name())
                    .map_err(|e| refuse(400, "invalid_page_token", e.to_string()))?;
                let differs = (parsed.given.filters && parsed.filters != t.filters)
                    || parsed.given.size.is_some_and(|s| s != t.page_size)
                    || parsed.given.page.is_some_and(|p| p != t.page);
                if differs {
                    return Err(refuse(
                        400,
                        "invalid_page_token",
                        "PageToken continues the query it was issued for: repeat its filters, Page and PageSize, or leave them out",
                    ));
                }
                Ok((t.filters.clone(), t.page, t.page_size, Some(t)))
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
        fn check(api: &PullApi, req: ApiGatewayV2httpRequest) {
            let fut = api.handle(req);
            assert_send(&fut);
        }
        let _ = check;
    }
}
