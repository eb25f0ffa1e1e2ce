//! Who may upload: the ingest key SafeSync presents, checked before the
//! body is read.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use platformsync_aws::apigw;
use platformsync_aws::ingest_key::{IngestKeys, KeyMatch};
use tracing::{error, info, warn};

use crate::answer::refuse;

/// `None` when the caller presented the ingest key (either version);
/// otherwise the answer: 401 for a missing or wrong key, 503 when the key
/// cannot be read now.
pub(crate) async fn authenticate(
    keys: &IngestKeys,
    req: &ApiGatewayV2httpRequest,
) -> Option<ApiGatewayV2httpResponse> {
    let Some(presented) = apigw::presented_key(req) else {
        warn!("upload without an ingest key");
        let hint = "present the ingest key as x-api-key or Authorization: Bearer";
        return Some(refuse(401, "unauthorized", hint, None));
    };
    match keys.verify(presented).await {
        Ok(KeyMatch::Current) => None,
        Ok(KeyMatch::Previous) => {
            // Accepted: the key was rotated and SafeSync has not switched
            // yet. It stops working at the next rotation.
            info!("upload with the previous ingest key (AWSPREVIOUS)");
            None
        }
        Ok(KeyMatch::None) => {
            warn!("upload with a wrong ingest key");
            let message = "the ingest key is not valid";
            Some(refuse(401, "unauthorized", message, None))
        }
        Err(e) => {
            error!(error = %e, "cannot read the ingest key");
            let message = "cannot verify the ingest key now; retry later";
            Some(refuse(503, "unavailable", message, None))
        }
    }
}
