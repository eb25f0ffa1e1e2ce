//! What a partially failed fan-out invocation already sent, so its replay
//! does not send it again.
//!
//! Lambda replays a stream batch from the first record the fan-out reports
//! as failed. Records after it that were already sent would be planned into
//! different batches on the replay (different dedup ids, so SQS would not
//! drop them) and pushed twice. Before answering with a failure, the fan-out
//! writes one item to the config table listing the (record, endpoint) pairs
//! already sent from that record on; the replay reads it (one consistent
//! `GetItem` keyed by its first record) and skips those pairs.
//!
//! | PK | SK | attributes |
//! |---|---|---|
//! | `FANOUT#<sequence number of the first failed record>` | `DONE` | `Sent`: string set of `<sequence number>\|<endpoint id>`; `ExpiresAt`: now + 48 h (stream records live 24 h) |

use crate::StoreError;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tracing::warn;

/// How long a progress item is kept: twice the stream's retention.
pub const PROGRESS_TTL: Duration = Duration::from_secs(48 * 3600);

/// Room for the `Sent` set, below DynamoDB's 400 KB item limit. With stream
/// batches of 1,000 records and a few endpoints per customer it is never
/// reached; beyond it, pairs are left out (a later duplicate, never a loss).
pub const MAX_SENT_BYTES: usize = 350_000;

/// A record (by its stream sequence number) sent to one endpoint.
pub type SentPair = (String, String);

pub fn key(first_sequence: &str) -> (String, String) {
    (format!("FANOUT#{first_sequence}"), "DONE".to_owned())
}

/// What [`FanoutProgress::save`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Saved {
    pub pairs: usize,
    /// Pairs left out to stay within the item size limit.
    pub left_out: usize,
}

#[derive(Debug, Clone)]
pub struct FanoutProgress {
    client: Client,
    table: String,
}

impl FanoutProgress {
    /// Progress items live in the config table.
    pub fn new(client: Client, config_table: impl Into<String>) -> Self {
        Self {
            client,
            table: config_table.into(),
        }
    }

    /// The pairs sent by earlier attempts at a batch starting with
    /// `first_sequence`; empty when there were none. Strongly consistent: the
    /// replay may follow the write by milliseconds.
    pub async fn load(&self, first_sequence: &str) -> Result<BTreeSet<SentPair>, StoreError> {
        let (pk, sk) = key(first_sequence);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .consistent_read(true)
            .projection_expression("Sent")
            .send()
            .await
            .map_err(|e| StoreError::sdk("GetItem", &self.table, e))?;
        let Some(AttributeValue::Ss(entries)) = out.item.as_ref().and_then(|i| i.get("Sent"))
        else {
            return Ok(BTreeSet::new());
        };
        let mut pairs = BTreeSet::new();
        for entry in entries {
            match entry.split_once('|') {
                Some((seq, endpoint)) if !seq.is_empty() && !endpoint.is_empty() => {
                    pairs.insert((seq.to_owned(), endpoint.to_owned()));
                }
                // Written only by `save`; a bad entry costs at most a duplicate.
                _ => warn!(entry = %entry, "ignoring a malformed fan-out progress entry"),
            }
        }
        Ok(pairs)
    }

    /// Records `pairs` as sent, for a replay starting at `first_failed`.
    /// Overwrites an earlier item for the same record: pass the union of
    /// what was loaded and what was sent since.
    pub async fn save(
        &self,
        first_failed: &str,
        pairs: &BTreeSet<SentPair>,
        now_unix: i64,
    ) -> Result<Saved, StoreError> {
        let mut entries = Vec::with_capacity(pairs.len());
        let mut bytes = 0usize;
        for (seq, endpoint) in pairs {
            let entry = format!("{seq}|{endpoint}");
            if bytes + entry.len() > MAX_SENT_BYTES {
                break;
            }
            bytes += entry.len();
            entries.push(entry);
        }
        let saved = Saved {
            pairs: entries.len(),
            left_out: pairs.len() - entries.len(),
        };
        if entries.is_empty() {
            // A string set cannot be empty; nothing to remember anyway.
            return Ok(saved);
        }
        let (pk, sk) = key(first_failed);
        let expires = now_unix.saturating_add(PROGRESS_TTL.as_secs() as i64);
        let item = HashMap::from([
            ("PK".to_owned(), AttributeValue::S(pk)),
            ("SK".to_owned(), AttributeValue::S(sk)),
            ("Sent".to_owned(), AttributeValue::Ss(entries)),
            (
                "ExpiresAt".to_owned(),
                AttributeValue::N(expires.to_string()),
            ),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::sdk("PutItem", &self.table, e))?;
        Ok(saved)
    }
}
