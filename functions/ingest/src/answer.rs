//! The answer's policy: what SafeSync is told about each item, and whether
//! it must re-send the upload.
//!
//! Anything that could not be stored (or a reject that could not be kept)
//! makes the answer a 503 listing every item's status, so SafeSync re-sends
//! the whole upload and what was stored becomes a duplicate; otherwise 200
//! with counts. A repeat inside the upload shares its first occurrence's
//! fate.

use std::fmt::Display;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use platformsync_aws::apigw;
use platformsync_aws::metrics::Metrics;
use platformsync_domain::upload::ItemRef;

use crate::response::{
    ErrorBody, ErrorResponse, ItemStatus, ItemStatusEntry, RejectedItem, SequenceGap,
    UploadResponse,
};

/// Every item's fate, tallied as the flow learns it.
#[derive(Debug)]
pub(crate) struct Answer {
    response: UploadResponse,
    statuses: Vec<(ItemRef, ItemStatus)>,
}

impl Answer {
    pub fn new(upload_id: &str) -> Self {
        Self {
            response: UploadResponse {
                upload_id: upload_id.to_owned(),
                ..UploadResponse::default()
            },
            statuses: Vec::new(),
        }
    }

    pub fn rejected(&mut self, item: ItemRef, reason: String) {
        self.response.rejected.push(entry(item, reason));
        self.statuses.push((item, ItemStatus::Rejected));
    }

    /// A rejected item whose raw text could not be kept for support: SafeSync
    /// must send it again, or nobody can see what was wrong with it.
    pub fn reject_not_kept(&mut self, item: ItemRef, error: &impl Display) {
        self.response.failed.push(entry(
            item,
            format!("rejected, and could not be kept for support: {error}"),
        ));
    }

    pub fn stored(&mut self, item: ItemRef, held: bool) {
        let status = if held {
            self.response.held += 1;
            ItemStatus::Held
        } else {
            self.response.accepted += 1;
            ItemStatus::Accepted
        };
        self.statuses.push((item, status));
    }

    pub fn duplicate(&mut self, item: ItemRef) {
        self.response.duplicates += 1;
        self.statuses.push((item, ItemStatus::Duplicate));
    }

    pub fn not_stored(&mut self, item: ItemRef, error: &impl Display) {
        self.response.failed.push(entry(
            item,
            format!("not stored ({error}); re-send the upload"),
        ));
        self.statuses.push((item, ItemStatus::Failed));
    }

    /// A later occurrence of a key already in this upload: a duplicate when
    /// its first occurrence was stored or already there, failed with it.
    pub fn repeat(&mut self, item: ItemRef, first_failed: Option<&impl Display>) {
        match first_failed {
            Some(error) => self.not_stored(item, error),
            None => self.duplicate(item),
        }
    }

    /// The answer and its HTTP status; per-item statuses only on a 503.
    pub fn finish(
        mut self,
        unowned: Option<usize>,
        sequence_gaps: Vec<SequenceGap>,
    ) -> (u16, UploadResponse) {
        self.response.unowned = unowned;
        self.response.sequence_gaps = sequence_gaps;
        if self.response.failed.is_empty() {
            return (200, self.response);
        }
        self.statuses.sort_by_key(|(item, _)| *item);
        self.response.items = self
            .statuses
            .into_iter()
            .map(|(item, status)| ItemStatusEntry {
                index: item.index,
                kind: item.kind.wire_name(),
                status,
            })
            .collect();
        (503, self.response)
    }
}

fn entry(item: ItemRef, reason: String) -> RejectedItem {
    RejectedItem {
        index: item.index,
        kind: item.kind.wire_name(),
        reason,
    }
}

/// An upload refused as a whole, before anything is stored.
pub(crate) fn refuse(
    status: u16,
    code: &'static str,
    message: &str,
    upload_id: Option<&str>,
) -> ApiGatewayV2httpResponse {
    apigw::json(
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

/// The answer's counts as EMF metrics (each alarmed or graphed).
pub(crate) fn record_metrics(response: &UploadResponse, store_duration: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use platformsync_domain::types::MessageKind;

    fn item(index: usize) -> ItemRef {
        ItemRef {
            kind: MessageKind::Transactions,
            index,
        }
    }

    #[test]
    fn all_stored_is_a_200_without_per_item_statuses() {
        let mut a = Answer::new("u");
        a.stored(item(0), false);
        a.stored(item(1), true);
        a.repeat(item(2), None::<&String>);
        a.rejected(item(3), "bad".into());
        let (status, r) = a.finish(Some(0), Vec::new());
        assert_eq!(status, 200);
        assert_eq!((r.accepted, r.held, r.duplicates), (1, 1, 1));
        assert_eq!(r.rejected.len(), 1);
        assert!(r.items.is_empty());
    }

    #[test]
    fn anything_not_stored_is_a_503_listing_every_item_in_order() {
        let mut a = Answer::new("u");
        a.not_stored(item(1), &"throttled");
        a.stored(item(0), false);
        a.repeat(item(2), Some(&"throttled"));
        let (status, r) = a.finish(None, Vec::new());
        assert_eq!(status, 503);
        assert_eq!(r.failed.len(), 2);
        assert_eq!(
            r.failed[0].reason,
            "not stored (throttled); re-send the upload"
        );
        let listed: Vec<_> = r.items.iter().map(|i| (i.index, i.status)).collect();
        assert_eq!(
            listed,
            vec![
                (0, ItemStatus::Accepted),
                (1, ItemStatus::Failed),
                (2, ItemStatus::Failed)
            ]
        );
    }

    #[test]
    fn a_reject_that_cannot_be_kept_makes_a_503() {
        let mut a = Answer::new("u");
        a.rejected(item(0), "bad".into());
        a.reject_not_kept(item(0), &"AccessDenied");
        let (status, r) = a.finish(None, Vec::new());
        assert_eq!(status, 503);
        assert_eq!(r.items[0].status, ItemStatus::Rejected);
    }
}
