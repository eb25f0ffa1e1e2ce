//! The stores and the key the function talks to, built once per container.

use platformsync_aws::SdkConfig;
use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::ingest_key::{self, IngestKeys};
use platformsync_aws::rejects::RejectStore;
use platformsync_aws::transactions::TransactionStore;

use crate::settings::Settings;

#[derive(Debug)]
pub(crate) struct Clients {
    pub transactions: TransactionStore,
    pub rejects: RejectStore,
    pub config: ConfigStore,
    pub keys: IngestKeys,
}

impl Clients {
    pub fn new(sdk: &SdkConfig, settings: &Settings) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            transactions: TransactionStore::new(dynamodb.clone(), &settings.transactions_table),
            rejects: RejectStore::new(dynamodb.clone(), &settings.rejects_table),
            config: ConfigStore::new(dynamodb, &settings.config_table),
            keys: IngestKeys::new(
                aws_sdk_secretsmanager::Client::new(sdk),
                &settings.ingest_key_secret,
                ingest_key::MAX_TTL,
            ),
        }
    }
}
