//! The fan-out's durable plans: what one stream batch sends, written before
//! anything is sent, so every replay (a partial-batch retry, Lambda bisecting
//! a failed batch, a crash, the stream-recovery consumer) re-sends the same
//! messages under the same `MessageId` and dedup id instead of re-planning.
//!
//! Items in the config table (one partition per key, so a plan, its pointers
//! and its sent-progress are found with one consistent `Query`):
//!
//! | item | PK | SK | attributes |
//! |---|---|---|---|
//! | plan | `PLAN#<storage key of its first transaction>` | `PLAN` | `Safes` (list), `Keys` (binary, [`encode_keys`]), `Endpoints` (list of `endpoint\|customer`), `Messages` (binary, [`encode_messages`]), `CreatedAt`, `Version`, `ExpiresAt` |
//! | pointer | `PLAN#<storage key of a later transaction of the plan>` | `PLAN` | `PointsTo`: the plan's key, `ExpiresAt` |
//! | sent-progress | `PLAN#<plan key>` | `SENT` | `Sent`: bitmap of message indices sent, `ExpiresAt` |
//! | parked | `PARKED#<storage key>` or `PARKED#SEQ#<sequence number>` | `PARKED` | `Reason`, `Record`, `Data` (the raw image or the message's keys), `ParkedAt`, `ExpiresAt` |
//!
//! Plans and pointers live as long as the delivery ledger (400 days), since
//! the ledger will point at plans. The keys are stored compactly (front-coded
//! per safe, `sha:` digests as bytes): about 30 bytes a transaction, so a plan
//! of 1,000 transactions for one endpoint is ~35 KB (0.035 write units per
//! transaction). The caller keeps each plan under [`MAX_PLAN_BYTES`].

use crate::StoreError;
use crate::dynamo::{self, Item, n, s};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use platformsync_domain::endpoint::{CustomerId, EndpointId};
use platformsync_domain::types::MessageKind;
use std::collections::HashMap;
use std::time::Duration;

/// How long plans, pointers, progress and parked records are kept: the
/// delivery ledger's retention.
pub const PLAN_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// Largest encoded plan the fan-out writes (DynamoDB allows 400 KB an item;
/// the rest is margin for attribute names and the endpoint list).
pub const MAX_PLAN_BYTES: usize = 300_000;

/// Largest raw record kept in a parked item.
pub const MAX_PARKED_DATA_BYTES: usize = 350_000;

const PLAN_VERSION: u32 = 1;

pub fn plan_pk(key: &str) -> String {
    format!("PLAN#{key}")
}

/// One message of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMessage {
    pub message_id: uuid::Uuid,
    pub dedup_id: String,
    /// Index into [`Plan::endpoints`].
    pub endpoint: usize,
    pub kind: MessageKind,
    /// Indices into [`Plan::keys`], in message (safe-time) order.
    pub items: Vec<u32>,
}

/// What one stream batch (or a part of it) sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The storage key of the first transaction covered: the plan's key.
    pub key: String,
    /// When it was planned (RFC 3339): every message's `CreatedAt`.
    pub created_at: String,
    /// Storage keys (`SERIAL|SORTKEY`) of the pushable records covered, in
    /// stream order; also those sent nowhere (unowned, unwanted, parked).
    pub keys: Vec<String>,
    pub endpoints: Vec<(EndpointId, CustomerId)>,
    /// Per endpoint, in send order.
    pub messages: Vec<PlannedMessage>,
}

impl Plan {
    /// Where `key` is in the plan.
    pub fn position(&self, key: &str) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }

    /// Encoded size, close to what DynamoDB bills.
    pub fn encoded_bytes(&self) -> usize {
        let (safes, keys) = encode_keys(&self.keys);
        safes.iter().map(|s| s.len() + 1).sum::<usize>()
            + keys.len()
            + encode_messages(&self.messages).len()
            + self
                .endpoints
                .iter()
                .map(|(e, c)| e.as_str().len() + c.as_str().len() + 2)
                .sum::<usize>()
            + self.created_at.len()
            + self.key.len()
            + 120
    }
}

/// A plan found for a key, with what earlier attempts recorded as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub plan: Plan,
    /// Messages recorded as sent (indices into `plan.messages`).
    pub sent: Vec<bool>,
    /// Whether the key was found through a pointer.
    pub via_pointer: bool,
}

/// What [`PlanStore::create`] did.
#[derive(Debug)]
pub enum Created {
    Written,
    /// A plan was already there (a concurrent or earlier attempt): use it.
    Existing(Box<Found>),
}

/// A record that is never going to be pushed: kept with its data for
/// operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// `PARKED#<this>`: the storage key, or `SEQ#<sequence number>`.
    pub id: String,
    /// The stream record (sequence number) or message it came from.
    pub record: String,
    pub reason: String,
    /// The raw image, or the message's keys; truncated to
    /// [`MAX_PARKED_DATA_BYTES`].
    pub data: String,
}

#[derive(Debug, Clone)]
pub struct PlanStore {
    client: Client,
    table: String,
}

impl PlanStore {
    /// Plans live in the config table.
    pub fn new(client: Client, config_table: impl Into<String>) -> Self {
        Self {
            client,
            table: config_table.into(),
        }
    }

    fn malformed(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        dynamo::malformed(&self.table, key, e)
    }

    /// The plan covering `key`, directly or through a pointer, and its sent
    /// progress. Strongly consistent: a replay may follow the write by
    /// milliseconds.
    pub async fn lookup(&self, key: &str, now_unix: i64) -> Result<Option<Found>, StoreError> {
        let items = self.partition(key).await?;
        // Expiry is not checked: a plan outlives every replay of its records
        // by far (stream 24 h, failure queue 14 days, TTL 400 days), and
        // ignoring an expired item that DynamoDB has not yet deleted would
        // only make its key unwritable.
        let _ = now_unix;
        let Some(head) = items.get("PLAN") else {
            return Ok(None);
        };
        if let Some(AttributeValue::S(target)) = head.get("PointsTo") {
            let target = target.clone();
            let items = self.partition(&target).await?;
            let Some(plan) = items.get("PLAN").filter(|i| !i.contains_key("PointsTo")) else {
                return Err(self.malformed(&plan_pk(key), "points to a missing plan"));
            };
            return Ok(Some(Found {
                plan: self.decode_plan(&target, plan)?,
                sent: self.decode_sent(items.get("SENT")),
                via_pointer: true,
            }));
        }
        Ok(Some(Found {
            plan: self.decode_plan(key, head)?,
            sent: self.decode_sent(items.get("SENT")),
            via_pointer: false,
        }))
    }

    async fn partition(&self, key: &str) -> Result<HashMap<String, Item>, StoreError> {
        let pk = [(":pk", s(plan_pk(key)))];
        Ok(
            dynamo::query_items(&self.client, &self.table, "PK = :pk", pk, true)
                .await?
                .into_iter()
                .filter_map(|item| match item.get("SK") {
                    Some(AttributeValue::S(sk)) => Some((sk.clone(), item)),
                    _ => None,
                })
                .collect(),
        )
    }

    fn decode_plan(&self, key: &str, item: &Item) -> Result<Plan, StoreError> {
        let bad = |what: &str| self.malformed(&plan_pk(key), what);
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(bad(name)),
        };
        let list = |name: &str| -> Result<Vec<String>, StoreError> {
            match item.get(name) {
                Some(AttributeValue::L(l)) => l
                    .iter()
                    .map(|v| match v {
                        AttributeValue::S(s) => Ok(s.clone()),
                        _ => Err(bad(name)),
                    })
                    .collect(),
                _ => Err(bad(name)),
            }
        };
        let blob = |name: &str| match item.get(name) {
            Some(AttributeValue::B(b)) => Ok(b.as_ref().to_vec()),
            _ => Err(bad(name)),
        };
        let safes = list("Safes")?;
        let keys = decode_keys(&safes, &blob("Keys")?).ok_or_else(|| bad("Keys"))?;
        let endpoints = list("Endpoints")?
            .iter()
            .map(|e| {
                let (endpoint, customer) = e.split_once('|')?;
                Some((
                    EndpointId::parse(endpoint).ok()?,
                    CustomerId::parse(customer).ok()?,
                ))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("Endpoints"))?;
        let messages = decode_messages(&blob("Messages")?).ok_or_else(|| bad("Messages"))?;
        let valid = messages.iter().all(|m| {
            m.endpoint < endpoints.len() && m.items.iter().all(|&i| (i as usize) < keys.len())
        });
        if !valid || keys.first().map(String::as_str) != Some(key) {
            return Err(bad("indices"));
        }
        Ok(Plan {
            key: key.to_owned(),
            created_at: text("CreatedAt")?,
            keys,
            endpoints,
            messages,
        })
    }

    fn decode_sent(&self, item: Option<&Item>) -> Vec<bool> {
        match item.and_then(|i| i.get("Sent")) {
            Some(AttributeValue::B(bits)) => bits
                .as_ref()
                .iter()
                .flat_map(|byte| (0..8).map(move |b| byte & (1 << b) != 0))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Writes `plan` unless one exists under its key.
    pub async fn create(&self, plan: &Plan, now_unix: i64) -> Result<Created, StoreError> {
        let (safes, keys) = encode_keys(&plan.keys);
        let item = HashMap::from([
            ("PK".to_owned(), s(plan_pk(&plan.key))),
            ("SK".to_owned(), s("PLAN")),
            ("Version".to_owned(), n(PLAN_VERSION)),
            ("CreatedAt".to_owned(), s(plan.created_at.clone())),
            (
                "Safes".to_owned(),
                AttributeValue::L(safes.into_iter().map(s).collect()),
            ),
            ("Keys".to_owned(), AttributeValue::B(Blob::new(keys))),
            (
                "Endpoints".to_owned(),
                AttributeValue::L(
                    plan.endpoints
                        .iter()
                        .map(|(e, c)| s(format!("{e}|{c}")))
                        .collect(),
                ),
            ),
            (
                "Messages".to_owned(),
                AttributeValue::B(Blob::new(encode_messages(&plan.messages))),
            ),
            ("ExpiresAt".to_owned(), n(expiry(now_unix))),
        ]);
        if dynamo::put_if_absent(&self.client, &self.table, item, "PK").await? {
            return Ok(Created::Written);
        }
        match self.lookup(&plan.key, now_unix).await? {
            Some(found) => Ok(Created::Existing(Box::new(found))),
            None => Err(self.malformed(&plan_pk(&plan.key), "exists but unreadable")),
        }
    }

    /// Makes a replay that starts at `at` find the plan `plan_key`. Never
    /// replaces a plan (only a pointer or nothing).
    pub async fn point(&self, at: &str, plan_key: &str, now_unix: i64) -> Result<(), StoreError> {
        if at == plan_key {
            return Ok(());
        }
        let item = HashMap::from([
            ("PK".to_owned(), s(plan_pk(at))),
            ("SK".to_owned(), s("PLAN")),
            ("PointsTo".to_owned(), s(plan_key)),
            ("ExpiresAt".to_owned(), n(expiry(now_unix))),
        ]);
        // Refused: a plan starts there, and a replay from `at` finds that
        // plan, which is where the walk goes next anyway.
        dynamo::put_if(
            &self.client,
            &self.table,
            item,
            "attribute_not_exists(PK) OR attribute_exists(PointsTo)",
            [],
        )
        .await?;
        Ok(())
    }

    /// Records which messages of the plan were sent (only when answering a
    /// partial failure; losing it costs re-sends that SQS and the push
    /// ledger drop, never a duplicate `MessageId`).
    pub async fn save_sent(
        &self,
        plan_key: &str,
        sent: &[bool],
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let mut bits = vec![0u8; sent.len().div_ceil(8)];
        for (i, _) in sent.iter().enumerate().filter(|(_, s)| **s) {
            bits[i / 8] |= 1 << (i % 8);
        }
        let item = HashMap::from([
            ("PK".to_owned(), s(plan_pk(plan_key))),
            ("SK".to_owned(), s("SENT")),
            ("Sent".to_owned(), AttributeValue::B(Blob::new(bits))),
            ("ExpiresAt".to_owned(), n(expiry(now_unix))),
        ]);
        dynamo::put(&self.client, &self.table, item).await
    }

    /// Parks records (25 a request; unprocessed items retried).
    pub async fn park(&self, parked: &[Parked], now_unix: i64) -> Result<(), StoreError> {
        let at = time::OffsetDateTime::from_unix_timestamp(now_unix)
            .map(dynamo::rfc3339)
            .unwrap_or_default();
        for chunk in parked.chunks(25) {
            let mut requests = Vec::with_capacity(chunk.len());
            for p in chunk {
                let mut data = p.data.clone();
                if data.len() > MAX_PARKED_DATA_BYTES {
                    let mut cut = MAX_PARKED_DATA_BYTES;
                    while !data.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    data.truncate(cut);
                }
                let item = HashMap::from([
                    ("PK".to_owned(), s(format!("PARKED#{}", p.id))),
                    ("SK".to_owned(), s("PARKED")),
                    ("Record".to_owned(), s(p.record.clone())),
                    ("Reason".to_owned(), s(p.reason.clone())),
                    ("Data".to_owned(), s(data)),
                    ("ParkedAt".to_owned(), s(at.clone())),
                    ("ExpiresAt".to_owned(), n(expiry(now_unix))),
                ]);
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| self.malformed(&p.id, e))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            dynamo::batch_write(&self.client, &self.table, requests).await?;
        }
        Ok(())
    }

    /// Every parked record (ops and tests: a scan).
    pub async fn parked(&self) -> Result<Vec<Parked>, StoreError> {
        let scan = self
            .client
            .scan()
            .filter_expression("SK = :sk")
            .expression_attribute_values(":sk", s("PARKED"));
        let items = dynamo::scan_all(&self.table, scan).await?;
        let text = |i: &Item, k: &str| dynamo::text(i, k).unwrap_or_default();
        Ok(items
            .iter()
            .map(|i| Parked {
                id: text(i, "PK")
                    .strip_prefix("PARKED#")
                    .unwrap_or_default()
                    .to_owned(),
                record: text(i, "Record"),
                reason: text(i, "Reason"),
                data: text(i, "Data"),
            })
            .collect())
    }
}

fn expiry(now_unix: i64) -> i64 {
    now_unix.saturating_add(PLAN_TTL.as_secs() as i64)
}

// ------------------------------------------------------------------ codecs

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn take<'a>(input: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if input.len() < len {
        return None;
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Some(head)
}

/// A 32-hex-digit `sha:` dedup key as 16 bytes.
fn sha_bytes(dedup: &str) -> Option<[u8; 16]> {
    let hex_part = dedup.strip_prefix("sha:")?;
    if hex_part.len() != 32
        || !hex_part
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// Storage keys as (safe dictionary, bytes). Per key: the safe's index;
/// the safe-time part front-coded against the previous key of the same safe
/// (shared prefix length, suffix); the dedup part as 16 bytes when it is a
/// `sha:` digest (tag 1), verbatim otherwise (tag 2), or absent (tag 0).
pub fn encode_keys(keys: &[String]) -> (Vec<String>, Vec<u8>) {
    let mut safes: Vec<String> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut previous: HashMap<usize, &str> = HashMap::new();
    let mut out = Vec::with_capacity(keys.len() * 32);
    for key in keys {
        let (serial, sort) = key.split_once('|').unwrap_or((key.as_str(), ""));
        let has_sort = key.contains('|');
        let next = index.len();
        let safe = *index.entry(serial).or_insert_with(|| {
            safes.push(serial.to_owned());
            next
        });
        put_varint(&mut out, (safe as u64) << 1 | u64::from(has_sort));
        let (time, dedup) = match sort.split_once('#') {
            Some((t, d)) => (t, Some(d)),
            None => (sort, None),
        };
        let prev = previous.insert(safe, time).unwrap_or("");
        let shared = prev
            .bytes()
            .zip(time.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        // Never split a character.
        let shared = (0..=shared)
            .rev()
            .find(|&i| time.is_char_boundary(i))
            .unwrap_or(0);
        put_varint(&mut out, shared as u64);
        put_varint(&mut out, (time.len() - shared) as u64);
        out.extend_from_slice(&time.as_bytes()[shared..]);
        match dedup {
            None => out.push(0),
            Some(d) => match sha_bytes(d) {
                Some(bytes) => {
                    out.push(1);
                    out.extend_from_slice(&bytes);
                }
                None => {
                    out.push(2);
                    put_varint(&mut out, d.len() as u64);
                    out.extend_from_slice(d.as_bytes());
                }
            },
        }
    }
    (safes, out)
}

pub fn decode_keys(safes: &[String], mut input: &[u8]) -> Option<Vec<String>> {
    let mut keys = Vec::new();
    let mut previous: HashMap<usize, String> = HashMap::new();
    while !input.is_empty() {
        let head = get_varint(&mut input)?;
        let safe = usize::try_from(head >> 1).ok()?;
        let has_sort = head & 1 == 1;
        let serial = safes.get(safe)?;
        let shared = usize::try_from(get_varint(&mut input)?).ok()?;
        let len = usize::try_from(get_varint(&mut input)?).ok()?;
        let suffix = std::str::from_utf8(take(&mut input, len)?).ok()?;
        let prev = previous.get(&safe).map(String::as_str).unwrap_or("");
        let mut time = prev.get(..shared)?.to_owned();
        time.push_str(suffix);
        let (&tag, rest) = input.split_first()?;
        input = rest;
        let dedup = match tag {
            0 => None,
            1 => Some(format!("sha:{}", hex::encode(take(&mut input, 16)?))),
            2 => {
                let len = usize::try_from(get_varint(&mut input)?).ok()?;
                Some(std::str::from_utf8(take(&mut input, len)?).ok()?.to_owned())
            }
            _ => return None,
        };
        let mut key = serial.clone();
        if has_sort {
            key.push('|');
            key.push_str(&time);
            if let Some(d) = dedup {
                key.push('#');
                key.push_str(&d);
            }
        }
        previous.insert(safe, time);
        keys.push(key);
    }
    Some(keys)
}

fn kind_code(kind: MessageKind) -> u8 {
    MessageKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default() as u8
}

/// Messages as bytes: endpoint index, kind, MessageId (16 bytes), dedup id
/// (32 bytes when 64 hex digits, else tagged text), item count and indices.
pub fn encode_messages(messages: &[PlannedMessage]) -> Vec<u8> {
    let mut out = Vec::with_capacity(messages.len() * 64);
    for m in messages {
        put_varint(&mut out, m.endpoint as u64);
        out.push(kind_code(m.kind));
        out.extend_from_slice(m.message_id.as_bytes());
        let mut raw = [0u8; 32];
        if m.dedup_id.len() == 64
            && m.dedup_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && hex::decode_to_slice(&m.dedup_id, &mut raw).is_ok()
        {
            out.push(1);
            out.extend_from_slice(&raw);
        } else {
            out.push(2);
            put_varint(&mut out, m.dedup_id.len() as u64);
            out.extend_from_slice(m.dedup_id.as_bytes());
        }
        put_varint(&mut out, m.items.len() as u64);
        for &i in &m.items {
            put_varint(&mut out, u64::from(i));
        }
    }
    out
}

pub fn decode_messages(mut input: &[u8]) -> Option<Vec<PlannedMessage>> {
    let mut messages = Vec::new();
    while !input.is_empty() {
        let endpoint = usize::try_from(get_varint(&mut input)?).ok()?;
        let (&kind, rest) = input.split_first()?;
        input = rest;
        let kind = *MessageKind::ALL.get(usize::from(kind))?;
        let message_id = uuid::Uuid::from_slice(take(&mut input, 16)?).ok()?;
        let (&tag, rest) = input.split_first()?;
        input = rest;
        let dedup_id = match tag {
            1 => hex::encode(take(&mut input, 32)?),
            2 => {
                let len = usize::try_from(get_varint(&mut input)?).ok()?;
                std::str::from_utf8(take(&mut input, len)?).ok()?.to_owned()
            }
            _ => return None,
        };
        let count = usize::try_from(get_varint(&mut input)?).ok()?;
        let mut items = Vec::with_capacity(count.min(10_000));
        for _ in 0..count {
            items.push(u32::try_from(get_varint(&mut input)?).ok()?);
        }
        messages.push(PlannedMessage {
            message_id,
            dedup_id,
            endpoint,
            kind,
            items,
        });
    }
    Some(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_compactly() {
        let mut keys: Vec<String> = (0..1000)
            .map(|i| {
                format!(
                    "UT0776{}|2019-09-26T{:02}:{:02}:{:02}.0000000#sha:{:032x}",
                    i % 7,
                    i / 3600,
                    (i / 60) % 60,
                    i % 60,
                    (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
                )
            })
            .collect();
        keys.push("UT1|2019-09-26T00:00:00.0000000#seq:42".into());
        keys.push("UT1|no-dedup-part".into());
        keys.push("UT1|2019-09-26T00:00:00.0000000#sha:ABCDEF".into());
        keys.push("NOSORT".into());
        keys.push("UT1|é#sha:00".into());
        keys.push("UT1|".into());
        let (safes, bytes) = encode_keys(&keys);
        assert_eq!(decode_keys(&safes, &bytes).unwrap(), keys);
        assert!(bytes.len() < 1005 * 32, "{} bytes", bytes.len());
        assert!(decode_keys(&safes, &bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn messages_round_trip() {
        let messages = vec![
            PlannedMessage {
                message_id: uuid::Uuid::from_u128(7),
                dedup_id: "ab".repeat(32),
                endpoint: 0,
                kind: MessageKind::Transactions,
                items: vec![3, 1, 200_000],
            },
            PlannedMessage {
                message_id: uuid::Uuid::from_u128(8),
                dedup_id: "not-hex".into(),
                endpoint: 300,
                kind: MessageKind::AuditTransactions,
                items: vec![],
            },
        ];
        let bytes = encode_messages(&messages);
        assert_eq!(decode_messages(&bytes).unwrap(), messages);
        assert!(decode_messages(&bytes[..10]).is_none());
    }
}
