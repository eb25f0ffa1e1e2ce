//! What the receiver got, against what each endpoint should have got.
//!
//! Only what the receiver recorded counts, and every push request is in its
//! log: a transaction is **delivered** to an endpoint when a POST carrying it
//! was answered 200 there. The receiver records a `MessageId`'s content once
//! (its first 200) and logs every later 200 of the same `MessageId` as a
//! repeat with a digest of its content; a repeat whose digest differs from
//! the first is counted (`repeats_with_other_content`) and fails the run, so
//! no verdict relies on the receiver dropping repeats.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use platformsync_receiver::{Outcome, PushRequest, ReceivedBatch};
use serde::Serialize;

use crate::load::identity;

/// What one endpoint should get.
#[derive(Debug, Clone)]
pub struct ExpectedEndpoint {
    pub id: String,
    pub customer: String,
    pub path: String,
    pub identities: BTreeSet<String>,
}

/// The figures of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EndpointFigures {
    pub id: String,
    pub customer: String,
    pub path: String,
    pub expected: usize,
    /// Distinct expected transactions delivered (a 200 POST carried them).
    pub delivered: usize,
    pub lost: usize,
    /// Transactions delivered in POSTs of two or more distinct MessageIds.
    pub under_two_message_ids: usize,
    /// POSTs answered 200 whose MessageId had been answered 200 before.
    pub repeated_posts: usize,
    /// Of those, carrying other content than the first.
    pub repeats_with_other_content: usize,
    /// Transactions of another customer's safes (or no customer's).
    pub leaked: usize,
    /// This customer's transactions the endpoint should not get (whitelist).
    pub unexpected: usize,
    /// Transactions that arrived after a later one of the same safe.
    pub order_inversions: usize,
    pub safes_with_inversions: usize,
    /// Every POST, and by what the receiver answered.
    pub posts: usize,
    pub posts_by_outcome: BTreeMap<String, usize>,
}

impl EndpointFigures {
    pub fn failed(&self) -> bool {
        self.lost > 0
            || self.under_two_message_ids > 0
            || self.leaked > 0
            || self.unexpected > 0
            || self.repeats_with_other_content > 0
    }
}

fn outcome_name(o: Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{o:?}"))
}

/// A received record's identity (`SERIAL|TransactionDateTime`) and its
/// safe and time; `None` when the record lacks them.
fn record_identity(record: &serde_json::Value) -> Option<(String, String, String)> {
    let serial = record["SerialNumber"].as_str()?.to_uppercase();
    let when = record["TransactionDateTime"].as_str()?.to_owned();
    Some((identity(&serial, &when), serial, when))
}

/// The figures per endpoint. `received`: the receiver's recorded batches in
/// arrival order; `requests`: its log of every push request; `owner`: the
/// customer of each safe.
pub fn analyse(
    endpoints: &[ExpectedEndpoint],
    owner: &HashMap<String, String>,
    received: &[ReceivedBatch],
    requests: &[PushRequest],
) -> Vec<EndpointFigures> {
    // The content digest of each MessageId's first 200, per path.
    let mut first_digest: HashMap<(&str, &str), Option<&str>> = HashMap::new();
    for r in requests {
        if r.outcome == Outcome::Recorded
            && let Some(id) = &r.message_id
        {
            first_digest
                .entry((r.path.as_str(), id.as_str()))
                .or_insert(r.digest.as_deref());
        }
    }
    let mut out = Vec::new();
    for e in endpoints {
        let mut f = EndpointFigures {
            id: e.id.clone(),
            customer: e.customer.clone(),
            path: e.path.clone(),
            expected: e.identities.len(),
            ..Default::default()
        };
        for r in requests.iter().filter(|r| r.path == e.path) {
            f.posts += 1;
            let mut name = outcome_name(r.outcome);
            if r.sender_left {
                name.push_str(" (answered too late: sender gone)");
            }
            *f.posts_by_outcome.entry(name).or_default() += 1;
            if r.outcome == Outcome::Repeat && r.status == 200 {
                f.repeated_posts += 1;
                let first = r
                    .message_id
                    .as_deref()
                    .and_then(|id| first_digest.get(&(e.path.as_str(), id)));
                if first.copied().flatten() != r.digest.as_deref() {
                    f.repeats_with_other_content += 1;
                }
            }
        }
        let mut message_ids: HashMap<String, HashSet<&str>> = HashMap::new();
        let mut delivered: HashSet<String> = HashSet::new();
        let mut latest: HashMap<String, String> = HashMap::new();
        let mut inverted: BTreeSet<String> = BTreeSet::new();
        for batch in received.iter().filter(|b| b.path == e.path) {
            for record in batch.values() {
                let Some((id, serial, when)) = record_identity(&record) else {
                    f.unexpected += 1;
                    continue;
                };
                message_ids
                    .entry(id.clone())
                    .or_default()
                    .insert(batch.message_id.as_str());
                if !delivered.insert(id.clone()) {
                    continue;
                }
                if owner.get(&serial) != Some(&e.customer) {
                    f.leaked += 1;
                } else if !e.identities.contains(&id) {
                    f.unexpected += 1;
                }
                match latest.get(&serial) {
                    Some(last) if when < *last => {
                        f.order_inversions += 1;
                        inverted.insert(serial);
                    }
                    _ => {
                        latest.insert(serial, when);
                    }
                }
            }
        }
        f.delivered = e
            .identities
            .iter()
            .filter(|i| delivered.contains(*i))
            .count();
        f.lost = f.expected - f.delivered;
        f.under_two_message_ids = message_ids.values().filter(|ids| ids.len() > 1).count();
        f.safes_with_inversions = inverted.len();
        out.push(f);
    }
    out
}

/// Records the receiver recorded on `path` (first 200 of each MessageId),
/// cheaply: when it is below what the endpoint expects, something is still
/// missing; when it reaches it, the full [`analyse`] decides.
pub fn recorded_on(summary: &platformsync_receiver::Summary, path: &str) -> u64 {
    summary
        .paths
        .get(path)
        .map_or(0, |c| c.transactions + c.audit_transactions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn record(serial: &str, when: &str) -> Box<RawValue> {
        RawValue::from_string(format!(
            r#"{{"SerialNumber":"{serial}","TransactionDateTime":"{when}"}}"#
        ))
        .unwrap()
    }

    fn batch(path: &str, id: &str, records: &[(&str, &str)]) -> ReceivedBatch {
        ReceivedBatch {
            message_id: id.into(),
            correlation_id: None,
            path: path.into(),
            received_at: String::new(),
            kind: "Transactions".into(),
            metadata: Default::default(),
            transactions: records.iter().map(|(s, w)| record(s, w)).collect(),
        }
    }

    fn request(path: &str, id: &str, outcome: Outcome, status: u16, digest: &str) -> PushRequest {
        PushRequest {
            path: path.into(),
            message_id: Some(id.into()),
            received_at: String::new(),
            status,
            outcome,
            records: 1,
            digest: Some(digest.into()),
            delayed_seconds: 0.0,
            sender_left: false,
            signature: None,
        }
    }

    #[test]
    fn counts_lost_twice_leaked_repeats_and_inversions() {
        let expected = vec![ExpectedEndpoint {
            id: "a-e1".into(),
            customer: "a".into(),
            path: "/a".into(),
            identities: ["UT1|t1", "UT1|t2", "UT1|t3", "UT2|t1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }];
        let owner: HashMap<String, String> = [("UT1", "a"), ("UT2", "a"), ("CT9", "b")]
            .iter()
            .map(|(s, c)| (s.to_string(), c.to_string()))
            .collect();
        let received = vec![
            batch("/a", "m1", &[("UT1", "t2"), ("UT1", "t3")]),
            // t1 after t3: one inversion; t3 again under another id.
            batch("/a", "m2", &[("UT1", "t1"), ("UT1", "t3"), ("CT9", "t1")]),
            batch("/other", "m3", &[("UT2", "t1")]),
        ];
        let requests = vec![
            request("/a", "m1", Outcome::Recorded, 200, "d1"),
            request("/a", "m1", Outcome::Repeat, 200, "d1"),
            request("/a", "m1", Outcome::Repeat, 200, "dX"),
            request("/a", "m2", Outcome::Injected, 500, "d2"),
            request("/a", "m2", Outcome::Recorded, 200, "d2"),
        ];
        let f = &analyse(&expected, &owner, &received, &requests)[0];
        assert_eq!(f.expected, 4);
        assert_eq!(f.delivered, 3);
        assert_eq!(f.lost, 1, "UT2|t1 went elsewhere");
        assert_eq!(f.under_two_message_ids, 1);
        assert_eq!(f.repeated_posts, 2);
        assert_eq!(f.repeats_with_other_content, 1);
        assert_eq!(f.leaked, 1);
        assert_eq!(f.unexpected, 0);
        assert_eq!(f.order_inversions, 1);
        assert_eq!(f.safes_with_inversions, 1);
        assert_eq!(f.posts, 5);
        assert_eq!(f.posts_by_outcome["repeat"], 2);
        assert!(f.failed());
    }

    #[test]
    fn a_clean_run_passes() {
        let expected = vec![ExpectedEndpoint {
            id: "a-e1".into(),
            customer: "a".into(),
            path: "/a".into(),
            identities: ["UT1|t1"].iter().map(|s| s.to_string()).collect(),
        }];
        let owner = HashMap::from([("UT1".to_string(), "a".to_string())]);
        let received = vec![batch("/a", "m1", &[("UT1", "t1")])];
        let requests = vec![
            request("/a", "m1", Outcome::Dropped, 0, "d1"),
            request("/a", "m1", Outcome::Recorded, 200, "d1"),
            request("/a", "m1", Outcome::Repeat, 200, "d1"),
        ];
        let f = &analyse(&expected, &owner, &received, &requests)[0];
        assert!(!f.failed(), "{f:?}");
        assert_eq!((f.delivered, f.repeated_posts), (1, 1));
    }
}
