//! The contract SafeSync sees (documented in README and docs/upload-*.json).

pub use platformsync_aws::apigw::ErrorBody;
use serde::Serialize;

/// The answer to an upload that was read (200, or 503 when some items could
/// not be stored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadResponse {
    pub upload_id: String,
    /// New transactions stored for delivery.
    pub accepted: usize,
    /// Transactions already stored (earlier upload, or twice in this one).
    pub duplicates: usize,
    /// New transactions stored but held for staff (data-quality checks).
    pub held: usize,
    /// Of the new transactions, those whose safe no customer owns: stored,
    /// not pushed. Absent when the safe registry could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unowned: Option<usize>,
    pub rejected: Vec<RejectedItem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sequence_gaps: Vec<SequenceGap>,
    /// Items that could not be stored after retries (then the status is 503).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<RejectedItem>,
    /// Every item's status, only on a 503, so SafeSync can see what happened
    /// to each before it re-sends the upload.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemStatusEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RejectedItem {
    pub index: usize,
    /// `Transactions` or `AuditTransactions`: which array `Index` is in.
    pub kind: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SequenceGap {
    pub serial_number: String,
    pub from: u64,
    pub to: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ItemStatus {
    Accepted,
    Held,
    Duplicate,
    Rejected,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ItemStatusEntry {
    pub index: usize,
    pub kind: &'static str,
    pub status: ItemStatus,
}

/// An upload refused as a whole (400, 401, 413, 503 before storing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    pub error: ErrorBody,
}
