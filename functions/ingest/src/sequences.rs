//! Each safe's journal progress (`SequenceNumber`): advisory. The items are
//! stored whatever happens here; a gap still open after an upload is
//! reported to SafeSync so it can send what is missing.

use futures_util::{StreamExt, stream};
use platformsync_aws::StoreError;
use platformsync_aws::backoff::Backoff;
use platformsync_aws::config_table::{ConfigStore, SequenceRecord};
use platformsync_domain::sequence::Progress;
use platformsync_domain::serial::SerialNumber;
use std::time::Duration;
use tracing::warn;

use crate::plan::Plan;
use crate::response::SequenceGap;

/// After a lost race for a safe's progress: 6 tries in all.
const LOST_RACE: Backoff =
    Backoff::exponential(Duration::from_millis(20), Duration::from_millis(320)).at_most(5);

/// Safes whose progress is updated at once.
const CONCURRENT_SAFES: usize = 8;

/// Updates each safe's progress with the numbers of `plan`; the gaps still
/// open after this upload.
pub(crate) async fn track(config: &ConfigStore, plan: &Plan) -> Vec<SequenceGap> {
    let per_safe: Vec<_> = plan
        .sequences
        .iter()
        .map(|(serial, numbers)| async move {
            match advance(config, serial, numbers).await {
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
        .buffered(CONCURRENT_SAFES)
        .collect::<Vec<Vec<SequenceGap>>>()
        .await;
    per_safe.into_iter().flatten().collect()
}

/// Read, observe, write back conditionally on the version: two uploads of
/// one safe at once must not lose each other's numbers.
async fn advance(
    config: &ConfigStore,
    serial: &SerialNumber,
    numbers: &[u64],
) -> Result<Progress, StoreError> {
    let mut delays = LOST_RACE.delays();
    loop {
        let stored = config.sequence(serial).await?;
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
        if config.put_sequence(serial, &record).await? {
            return Ok(progress);
        }
        // Another upload of the same safe won the race: read again.
        let Some(delay) = delays.next() else { break };
        tokio::time::sleep(delay).await;
    }
    Err(StoreError::Service {
        operation: "PutItem",
        resource: config.table().to_owned(),
        message: "sequence progress kept changing under us".into(),
        retryable: true,
    })
}
