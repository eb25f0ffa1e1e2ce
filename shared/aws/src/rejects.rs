//! The rejects table: upload items that could not be parsed
//! ([`RejectRecord`]), kept raw with the reason for 30 days so support can
//! see exactly what SafeSync sent.

use crate::StoreError;
use crate::dynamo;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use platformsync_domain::record::RejectRecord;

#[derive(Debug, Clone)]
pub struct RejectStore {
    client: Client,
    table: String,
}

impl RejectStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Writes every record, 25 to a `BatchWriteItem`, retrying what DynamoDB
    /// leaves unprocessed with backoff.
    pub async fn put_all(&self, records: &[RejectRecord]) -> Result<(), StoreError> {
        for chunk in records.chunks(25) {
            let requests = chunk
                .iter()
                .map(|r| {
                    let item = dynamo::encode(&self.table, &r.item_ref, r)?;
                    let put = PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(|e| dynamo::malformed(&self.table, &r.item_ref, e))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            dynamo::batch_write(&self.client, &self.table, requests).await?;
        }
        Ok(())
    }

    /// Every reject of one upload (for tests and support tools).
    pub async fn for_upload(&self, upload_id: &str) -> Result<Vec<RejectRecord>, StoreError> {
        dynamo::query(
            &self.client,
            &self.table,
            "UploadId = :u",
            [(":u", dynamo::s(upload_id))],
            false,
            upload_id,
        )
        .await
    }
}
