//! The walk through in-memory ports: what is written, sent and parked, in
//! which order, on a first run, on a failure and on the replay.

use crate::decoding::{Disposition, Poison, Record};
use crate::memory::{
    Fault, Journal, MemoryPlans, MemoryQueue, MemoryRouting, MemoryTransactions, Step, endpoint,
    push, routing,
};
use crate::tally::Tally;
use crate::walk::Walk;
use platformsync_aws::delivery_queue::DeliveryQueue;
use platformsync_domain::types::MessageKind;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The ports of one container: they outlive invocations, as the tables do.
struct World {
    journal: Journal,
    routing: MemoryRouting,
    plans: MemoryPlans,
    transactions: MemoryTransactions,
    queue: DeliveryQueue<MemoryQueue>,
}

impl World {
    /// Safes UT1 and UT2 of customer acme; endpoint "a" takes two
    /// transactions a message, "b" takes them all.
    fn new() -> Self {
        let journal = Journal::default();
        Self {
            routing: MemoryRouting(routing(vec![
                endpoint("a", "acme", serde_json::json!({"MaxBatchSize": 2})),
                endpoint("b", "acme", serde_json::json!({})),
            ])),
            plans: MemoryPlans::new(&journal),
            transactions: MemoryTransactions::default(),
            queue: MemoryQueue::delivery(&journal),
            journal,
        }
    }

    async fn run(&self, records: &[Record]) -> Tally {
        let walk = Walk {
            routing: &self.routing,
            plans: &self.plans,
            parking: &self.plans,
            transactions: &self.transactions,
            queue: &self.queue,
            deadline: Instant::now() + Duration::from_secs(60),
            margin: Duration::from_secs(1),
        };
        walk.fan_out(records).await
    }

    fn fail(&self, group: &str, nth: usize, fault: Fault) {
        self.queue.transport().fail(group, nth, fault);
    }
}

/// `n` pushable records in stream (and safe-time) order; `ids[i]` = "i".
fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            push(
                &i.to_string(),
                "UT1",
                &format!("2023-01-01T10:00:{i:02}"),
                MessageKind::Transactions,
                "CashIn",
            )
        })
        .collect()
}

fn key(records: &[Record], i: usize) -> String {
    crate::planning::key_of(&records[i])
        .unwrap_or_default()
        .to_owned()
}

/// Per group, the keys in the order they were accepted.
fn accepted_keys(journal: &Journal) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (group, _, _, keys) in journal.sent() {
        out.entry(group).or_default().extend(keys);
    }
    out
}

#[tokio::test]
async fn the_plan_is_written_before_anything_is_sent() {
    let world = World::new();
    let records = records(5);
    let tally = world.run(&records).await;
    assert_eq!(tally.first_failed, None, "{tally:?}");
    assert_eq!(
        (tally.plans_created, tally.batches),
        (1, 4),
        "a: 3 messages, b: 1"
    );
    let steps = world.journal.steps();
    let written = steps
        .iter()
        .position(|s| matches!(s, Step::PlanWritten(_)))
        .expect("a plan is written");
    let first_send = steps
        .iter()
        .position(|s| matches!(s, Step::Sent { .. }))
        .expect("messages are sent");
    assert!(written < first_send, "{steps:?}");
    assert_eq!(tally.messages_sent, 4);
    let all: Vec<String> = (0..5).map(|i| key(&records, i)).collect();
    let accepted = accepted_keys(&world.journal);
    assert_eq!(accepted["a"], all);
    assert_eq!(accepted["b"], all);
}

#[tokio::test]
async fn a_transient_failure_fails_from_the_first_record_not_handled_and_holds_the_endpoint() {
    let world = World::new();
    let records = records(6);
    // "a" gets [0,1] [2,3] [4,5]: its second message fails.
    world.fail("a", 1, Fault::Transient);
    let tally = world.run(&records).await;
    assert_eq!(tally.first_failed.as_deref(), Some("2"), "{tally:?}");
    assert_eq!(
        tally.failed_batches, 2,
        "the failed message and the one held behind it"
    );
    let accepted = accepted_keys(&world.journal);
    assert_eq!(
        accepted["a"],
        vec![key(&records, 0), key(&records, 1)],
        "a's third message must not overtake its second"
    );
    assert_eq!(accepted["b"].len(), 6, "another endpoint is not held");
    assert!(tally.progress_saved);
    // The replay starts at record 2: a pointer there leads to the plan.
    assert!(world.journal.steps().contains(&Step::Pointed {
        at: key(&records, 2),
        plan: key(&records, 0),
    }));
}

#[tokio::test]
async fn a_replay_resends_the_planned_messages_under_the_same_ids_in_order() {
    let world = World::new();
    let records = records(6);
    world.fail("a", 1, Fault::Transient);
    let first = world.run(&records).await;
    assert_eq!(first.first_failed.as_deref(), Some("2"));
    let planned_ids: HashSet<(String, String)> = world
        .journal
        .sent()
        .into_iter()
        .map(|(_, dedup, id, _)| (dedup, id))
        .collect();

    // Lambda retries from the reported record; then, as a crash after
    // sending would, the whole batch again.
    let replay = world.run(&records[2..]).await;
    assert_eq!(replay.first_failed, None, "{replay:?}");
    assert_eq!((replay.plans_created, replay.plans_found), (0, 1));
    let whole = world.run(&records).await;
    assert_eq!(whole.first_failed, None);
    assert_eq!(whole.plans_created, 0, "never planned twice");

    let sent = world.journal.sent();
    // Each (endpoint, transaction) under exactly one MessageId and dedup id.
    let mut ids_of: HashMap<(String, String), HashSet<(String, String)>> = HashMap::new();
    for (group, dedup, id, keys) in &sent {
        for k in keys {
            ids_of
                .entry((group.clone(), k.clone()))
                .or_default()
                .insert((dedup.clone(), id.clone()));
        }
    }
    assert_eq!(ids_of.len(), 12, "6 transactions to each of 2 endpoints");
    assert!(ids_of.values().all(|ids| ids.len() == 1), "{ids_of:?}");
    // What was sent before the failure is sent again under the same ids.
    for (dedup, id) in &planned_ids {
        assert!(
            sent.iter()
                .filter(|(_, d, i, _)| d == dedup && i == id)
                .count()
                >= 1,
            "{id} kept its ids"
        );
    }
    // Order per endpoint: accepted transactions never go backwards, but for
    // the whole-batch replay's re-sends (same ids: SQS and the ledger drop
    // them), which start over from the first.
    let a: Vec<String> = sent
        .iter()
        .filter(|(g, ..)| g == "a")
        .flat_map(|(.., keys)| keys.clone())
        .collect();
    let all: Vec<String> = (0..6).map(|i| key(&records, i)).collect();
    assert_eq!(a[..6], all[..], "first run then the replay: a's plan order");
}

#[tokio::test]
async fn poison_is_parked_and_the_rest_goes_on() {
    let world = World::new();
    let mut records = records(5);
    records[2].disposition = Disposition::Unreadable(Poison {
        reason: "new image is not a stored transaction".into(),
        image: r#"{"SerialNumber":{"S":"UT1"}}"#.into(),
    });
    let tally = world.run(&records).await;
    assert_eq!(tally.first_failed, None, "{tally:?}");
    assert_eq!((tally.unreadable, tally.parked), (1, 1));
    let parked = world.plans.parked.lock().unwrap().clone();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].id, "SEQ#2");
    assert!(parked[0].data.contains("UT1"), "kept with its data");
    let accepted = accepted_keys(&world.journal);
    let rest: Vec<String> = [0, 1, 3, 4].iter().map(|&i| key(&records, i)).collect();
    assert_eq!(accepted["a"], rest);
    assert_eq!(accepted["b"], rest);
}

#[tokio::test]
async fn a_message_refused_for_good_is_parked_and_its_endpoint_goes_on() {
    let world = World::new();
    let records = records(6);
    world.fail("a", 1, Fault::Refused);
    let tally = world.run(&records).await;
    assert_eq!(tally.first_failed, None, "{tally:?}");
    assert_eq!(tally.parked, 1);
    let parked = world.plans.parked.lock().unwrap().clone();
    assert!(parked[0].id.starts_with("MSG#"), "{parked:?}");
    assert!(parked[0].data.contains(&key(&records, 2)), "with its keys");
    let accepted = accepted_keys(&world.journal);
    let expected: Vec<String> = [0, 1, 4, 5].iter().map(|&i| key(&records, i)).collect();
    assert_eq!(accepted["a"], expected);
}

#[tokio::test]
async fn bisected_halves_find_the_plan_through_pointers_and_rebuild_absent_bodies() {
    let mut world = World::new();
    let (records, stored): (Vec<Record>, Vec<_>) = (0..6).map(crate::memory::stored).unzip();
    for t in stored {
        let at = platformsync_domain::dedup::StorageKey {
            partition: t.serial_number.clone(),
            sort: t.sort_key.clone(),
        };
        world.transactions.0.insert(at, t);
    }
    world.fail("a", 1, Fault::Transient);
    let first = world.run(&records).await;
    assert_eq!(first.first_failed.as_deref(), Some("2"), "{first:?}");

    // Lambda retries from record 2 and bisects: [2, 3], then [4, 5].
    let before = world.journal.steps().len();
    let left = world.run(&records[2..4]).await;
    assert_eq!(left.first_failed, None, "{left:?}");
    assert_eq!((left.plans_created, left.plans_found), (0, 1));
    assert_eq!(
        left.rebuilt, 2,
        "bodies of 4 and 5 from the transactions table"
    );
    let steps = world.journal.steps()[before..].to_vec();
    let pointer = steps.iter().position(|s| {
        *s == Step::Pointed {
            at: key(&records, 4),
            plan: key(&records, 0),
        }
    });
    let send = steps.iter().position(|s| matches!(s, Step::Sent { .. }));
    assert!(
        pointer.is_some() && pointer < send,
        "the pointer for the other half is written before sending: {steps:?}"
    );
    let right = world.run(&records[4..]).await;
    assert_eq!(right.first_failed, None, "{right:?}");
    assert_eq!(
        right.plans_created, 0,
        "found through the pointer, never re-planned"
    );

    let mut ids_of: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for (group, _, id, keys) in world.journal.sent() {
        for k in keys {
            ids_of
                .entry((group.clone(), k))
                .or_default()
                .insert(id.clone());
        }
    }
    assert_eq!(ids_of.len(), 12);
    assert!(ids_of.values().all(|ids| ids.len() == 1), "{ids_of:?}");
}
