//! Where each stream shard was left, kept on disk so a restarted runner
//! resumes where it stopped (Lambda's event source mapping keeps this for
//! us on AWS).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::Mutex;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// stream ARN -> shard id -> sequence number of the last record handled.
    streams: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    saved: Mutex<Saved>,
}

impl Checkpoints {
    /// Loads `path` if it exists (a missing or unreadable file starts afresh
    /// from each source's starting position).
    pub fn load(path: PathBuf) -> Self {
        let saved = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Self {
            path,
            saved: Mutex::new(saved),
        }
    }

    pub async fn get(&self, stream: &str, shard: &str) -> Option<String> {
        self.saved
            .lock()
            .await
            .streams
            .get(stream)
            .and_then(|s| s.get(shard))
            .cloned()
    }

    /// Records that everything up to `sequence` in the shard is handled, and
    /// writes the file atomically (temp file + rename: a kill mid-write
    /// leaves the previous checkpoint, never a torn one).
    pub async fn advance(&self, stream: &str, shard: &str, sequence: &str) -> std::io::Result<()> {
        let mut saved = self.saved.lock().await;
        saved
            .streams
            .entry(stream.to_owned())
            .or_default()
            .insert(shard.to_owned(), sequence.to_owned());
        let text = serde_json::to_vec_pretty(&*saved).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("tmp");
        tokio::fs::write(&tmp, text).await?;
        tokio::fs::rename(&tmp, &self.path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checkpoints_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("cp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("checkpoints.json");
        let cp = Checkpoints::load(path.clone());
        assert_eq!(cp.get("s", "shard-1").await, None);
        cp.advance("s", "shard-1", "100").await.unwrap();
        cp.advance("s", "shard-1", "200").await.unwrap();
        let again = Checkpoints::load(path);
        assert_eq!(again.get("s", "shard-1").await.as_deref(), Some("200"));
        std::fs::remove_dir_all(dir).ok();
    }
}
