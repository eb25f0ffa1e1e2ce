//! Generator of realistic uploads, for benchmarks and other crates' tests.
//!
//! Deterministic for a given seed. Every record is valid: serials follow the
//! spec's shapes, denominations add up to `Amount` exactly, dates lie in 2023
//! (in the past), both type vocabularies occur, and decimals are written the
//! way the real service writes them (`20.0000`, `5560.0`).

use std::fmt::Write;

/// SplitMix64: tiny, good enough for test data, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// In [lo, hi).
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// `n_safes` distinct serial numbers (at least one), in the spec's shapes.
pub fn serials(n_safes: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed ^ 0x5AFE);
    let prefixes = ["UT", "CT", "LS", "UH"];
    let mut out: Vec<String> = Vec::new();
    while out.len() < n_safes.max(1) {
        let p = prefixes[rng.below(prefixes.len() as u64) as usize];
        let s = serial(p, &mut rng);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// One serial number of `maker`'s shape: `LS2017031453`, else `UT01234`.
pub fn serial(maker: &str, rng: &mut Rng) -> String {
    if maker == "LS" {
        format!("LS{:010}", 2_017_000_000 + rng.below(1_000_000))
    } else {
        format!("{maker}{:05}", rng.below(100_000))
    }
}

/// Cents as the real service writes amounts: `5560.0`, `12.35`.
pub fn amount_text(cents: u64) -> String {
    if cents.is_multiple_of(100) {
        format!("{}.0", cents / 100)
    } else {
        format!("{}.{:02}", cents / 100, cents % 100)
    }
}

/// Cents as a unit value: `20.0000`, `0.2500`.
pub fn unit_text(cents: u64) -> String {
    format!("{}.{:02}00", cents / 100, cents % 100)
}

/// A safe-local time as records write it: `2023-01-01T06:30:00`.
pub fn local_iso(t: ::time::PrimitiveDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn date_time(minutes_since_2023: u64, second: u64) -> String {
    let base = ::time::macros::datetime!(2023-01-01 00:00);
    let t = base
        + ::time::Duration::minutes(minutes_since_2023 as i64 % (360 * 24 * 60))
        + ::time::Duration::seconds((second % 60) as i64);
    local_iso(t)
}

/// `Denominations` items, comma-separated, as the real service writes them.
pub fn write_denominations(out: &mut String, denominations: &[(u64, u64)], currency: &str) {
    for (j, (unit, count)) in denominations.iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"UnitValue":{},"Count":{count},"Currency":"{currency}"}}"#,
            unit_text(*unit)
        );
    }
}

/// 1 to `max_kinds` consecutive units of `units` (not empty), each counted
/// 1 to `max_count` times: `(unit cents, count)`.
pub fn bundle(units: &[u64], max_kinds: usize, max_count: u64, rng: &mut Rng) -> Vec<(u64, u64)> {
    let kinds = 1 + rng.below(max_kinds.min(units.len()) as u64) as usize;
    let start = rng.below((units.len() - kinds + 1) as u64) as usize;
    units[start..start + kinds]
        .iter()
        .map(|&u| (u, 1 + rng.below(max_count)))
        .collect()
}

const USERS: [&str; 5] = [
    "JOSE CHAVEZ",
    "AUTOEOD",
    "MARY SMITH",
    "A. NGUYEN",
    "STORE MGR",
];
/// US notes in cents.
pub const NOTES: [u64; 6] = [100, 500, 1_000, 2_000, 5_000, 10_000];
const COINS: [u64; 4] = [1, 5, 10, 25];

fn transaction(out: &mut String, rng: &mut Rng, serial: &str, safe: usize, i: usize) {
    let minute = (i as u64) * 7 + safe as u64 * 3;
    let when = date_time(minute, rng.below(60));
    let fraction = match rng.below(3) {
        0 => String::new(),
        1 => format!(".{:03}", rng.below(1000)),
        _ => format!(".{:07}", rng.below(10_000_000)),
    };
    let retrieved = format!(
        "{}.{:07}Z",
        date_time(minute + 30 + rng.below(600), rng.below(60)),
        rng.below(10_000_000)
    );
    let (ty, denoms): (&str, Vec<(u64, u64)>) = match rng.below(20) {
        0..=9 => ("CashIn", notes(rng)),
        10..=11 => ("ValidatedCashIn", notes(rng)),
        12..=13 => ("ManualCashTransaction", Vec::new()),
        14 => ("Servicing", Vec::new()),
        15 => ("CoinDispense", coins(rng)),
        16 => ("NoteDispenseBuyChange", notes(rng)),
        17 => ("ChangeRequest", Vec::new()),
        18 => ("TubeLoaded", Vec::new()),
        _ => ("EndOfDay", Vec::new()),
    };
    let cents = if denoms.is_empty() {
        if ty == "ManualCashTransaction" || ty == "Servicing" {
            1 + rng.below(500_000)
        } else {
            0
        }
    } else {
        denoms.iter().map(|(unit, count)| unit * count).sum()
    };
    let user = if ty == "EndOfDay" {
        "AUTOEOD"
    } else {
        USERS[rng.below(USERS.len() as u64) as usize]
    };
    let _ = write!(
        out,
        r#"{{"PickupGroupId":{},"SerialNumber":"{serial}","RetrievedOn":"{retrieved}","TransactionDateTime":"{when}{fraction}","UserName":"{user}","TransactionType":"{ty}","Amount":{},"Denominations":["#,
        61_499_281 + safe as u64 * 1000 + (i as u64 / 50),
        amount_text(cents),
    );
    write_denominations(out, &denoms, "USD");
    out.push(']');
    if rng.below(2) == 0 {
        let _ = write!(out, r#","Register":"{}""#, rng.below(13));
    } else {
        out.push_str(r#","Register":null"#);
    }
    match ty {
        "ChangeRequest" => {
            let _ = write!(
                out,
                r#","ChangePurchaseNumber":"{}""#,
                100_000 + rng.below(900_000)
            );
        }
        "ManualCashTransaction" => {
            let _ = write!(
                out,
                r#","DepositReferenceNumber":"{}""#,
                1_000_000 + rng.below(9_000_000)
            );
        }
        "TubeLoaded" => {
            let _ = write!(
                out,
                r#","TubeCount":{},"TubeColumn":{}"#,
                1 + rng.below(40),
                1 + rng.below(8)
            );
        }
        _ => out.push_str(r#","ChangePurchaseNumber":null,"DepositReferenceNumber":null"#),
    }
    out.push('}');
}

fn notes(rng: &mut Rng) -> Vec<(u64, u64)> {
    bundle(&NOTES, 4, 120, rng)
}

/// 1 to 4 kinds of US coins, smallest first, each counted 1 to 40 times.
pub fn coins(rng: &mut Rng) -> Vec<(u64, u64)> {
    let n = 1 + rng.below(COINS.len() as u64) as usize;
    COINS[..n].iter().map(|&u| (u, 1 + rng.below(40))).collect()
}

fn audit(out: &mut String, rng: &mut Rng, serial: &str, safe: usize, i: usize) {
    const TYPES: [(&str, Option<&str>); 6] = [
        ("Login", None),
        ("Logoff", None),
        ("DoorOpened", Some("Storage vault open")),
        ("DoorClosed", Some("Storage vault closed")),
        ("LockOpened", None),
        ("LockClosed", None),
    ];
    let (ty, door) = TYPES[rng.below(TYPES.len() as u64) as usize];
    let minute = (i as u64) * 11 + safe as u64 * 5;
    let _ = write!(
        out,
        r#"{{"PickupGroupId":0,"SerialNumber":"{serial}","RetrievedOn":"{}.{:03}-06:00","TransactionDateTime":"{}","UserName":"{}","TransactionType":"{ty}","Amount":0.0"#,
        date_time(minute + 45, rng.below(60)),
        rng.below(1000),
        date_time(minute, rng.below(60)),
        USERS[rng.below(USERS.len() as u64) as usize],
    );
    if let Some(door) = door {
        let _ = write!(out, r#","DoorName":"{door}""#);
    }
    out.push('}');
}

/// An upload body with `n_transactions` valid transactions spread over `n_safes` safes.
pub fn upload_json(n_transactions: usize, n_safes: usize, seed: u64) -> Vec<u8> {
    upload_json_with_audits(n_transactions, 0, n_safes, seed)
}

/// Like [`upload_json`], plus `n_audits` valid audit records (omitted when 0).
pub fn upload_json_with_audits(
    n_transactions: usize,
    n_audits: usize,
    n_safes: usize,
    seed: u64,
) -> Vec<u8> {
    let safes = serials(n_safes, seed);
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(64 + n_transactions * 520 + n_audits * 260);
    out.push_str(r#"{"Transactions":["#);
    for i in 0..n_transactions {
        if i > 0 {
            out.push(',');
        }
        let safe = i % safes.len();
        transaction(&mut out, &mut rng, &safes[safe], safe, i / safes.len());
    }
    out.push(']');
    if n_audits > 0 {
        out.push_str(r#","AuditTransactions":["#);
        for i in 0..n_audits {
            if i > 0 {
                out.push(',');
            }
            let safe = i % safes.len();
            audit(&mut out, &mut rng, &safes[safe], safe, i / safes.len());
        }
        out.push(']');
    }
    out.push('}');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::{QualityPolicy, check};
    use crate::transaction::{AuditTransaction, Transaction};
    use crate::upload::{UploadItem, parse_upload};

    #[test]
    fn generated_uploads_are_clean() {
        let body = upload_json_with_audits(2000, 300, 7, 42);
        let parsed = parse_upload(&body).unwrap();
        assert_eq!(parsed.items.len(), 2300);
        let now = ::time::OffsetDateTime::now_utc();
        let mut keys = std::collections::HashSet::new();
        for o in &parsed.items {
            let item = o
                .result
                .as_ref()
                .unwrap_or_else(|e| panic!("{e}\n{}", o.raw));
            let reasons = check(item, now, &QualityPolicy::default());
            assert!(reasons.is_empty(), "{reasons:?}\n{}", o.raw);
            assert!(keys.insert(item.storage_key()), "duplicate {}", o.raw);
            // Stored-form round trip: same record, same text.
            let stored = item.to_json();
            let reread = match item {
                UploadItem::Transaction(_) => {
                    UploadItem::Transaction(Transaction::from_json(&stored).unwrap())
                }
                UploadItem::Audit(_) => {
                    UploadItem::Audit(AuditTransaction::from_json(&stored).unwrap())
                }
            };
            assert_eq!(&reread, item);
            assert_eq!(reread.to_json(), stored);
        }
        let safes: std::collections::HashSet<_> =
            parsed.accepted().map(|(_, i)| i.serial().clone()).collect();
        assert_eq!(safes.len(), 7);
        assert_eq!(upload_json(10, 2, 1), upload_json(10, 2, 1));
    }
}
