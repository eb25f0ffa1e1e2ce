//! The SafeSync simulator: one realistic business day of a handful of safes,
//! cut into the uploads SafeSync would send, plus what PlatformSync should
//! make of them.
//!
//! What a day holds (deterministic for a given seed and date):
//!
//! - safes of several makers, each with its serial format (`UT01234`,
//!   `CT57679`, `LS2017031453`, `UH12345`); `UH` safes write
//!   `TransactionDateTime` with an offset, the others without;
//! - **every transaction type**, spelled in both vocabularies
//!   (`CashIn`/`ValidatedCashIn`, `ChangeRequest`/`ChangePurchase`) and as
//!   legacy numeric codes (JSON integers and digit strings), and **every audit
//!   type**; per type, the first occurrence uses the canonical name, the
//!   second the other vocabulary's name (or the code), the third the code;
//! - denominations that add up to `Amount` exactly (`20.0000`, `5560.0`); a
//!   courier pickup (`Servicing`) carries what was dropped since the last one,
//!   and `EndOfDay` (by `AUTOEOD`) the day's drops;
//! - some **duplicates**: items re-sent in a later upload (or twice in the
//!   first) with a new `RetrievedOn`, as SafeSync does after re-reading a safe;
//! - exactly **one malformed item** (an `Amount` sent as a string), in the
//!   middle upload.
//!
//! [`day`] returns the bodies and, per upload and in total, the counts the
//! ingest API should answer, so the CLI, the demo and the tests can compare.

use platformsync_domain::testdata::{
    NOTES, Rng, amount_text, bundle, local_iso, write_denominations,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;
use time::{Date, Duration, Month, PrimitiveDateTime, Time};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct DayOptions {
    /// Distinct safes (at least 1).
    pub safes: usize,
    /// Distinct valid transactions (`Transactions` array), before duplicates.
    pub transactions: usize,
    /// Distinct valid audit records; `None` = a fifth of `transactions`, at least 8.
    pub audits: Option<usize>,
    pub seed: u64,
    /// How many uploads the day is cut into (at least 1).
    pub uploads: usize,
    /// The business day (safe-local). Keep it in the past: future dates are held.
    pub date: Date,
}

impl DayOptions {
    /// The CLI's defaults: 7 safes, 500 transactions, 4 uploads, two days ago.
    pub fn new(seed: u64) -> Self {
        DayOptions {
            safes: 7,
            transactions: 500,
            audits: None,
            seed,
            uploads: 4,
            date: default_date(),
        }
    }
}

/// Two days before today (UTC): far enough back that no safe-local time of
/// that day, whatever the safe's zone, is "in the future".
pub fn default_date() -> Date {
    (time::OffsetDateTime::now_utc() - Duration::days(2)).date()
}

/// One upload body and what the ingest API should answer for it (when the
/// items are new to it).
#[derive(Debug, Clone)]
pub struct SimulatedUpload {
    pub body: Vec<u8>,
    pub expected: UploadExpectation,
}

/// Expected counts of one upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadExpectation {
    /// Items in the body (both arrays).
    pub items: usize,
    /// New valid records: `Accepted` (nothing here should be held).
    pub accepted: usize,
    /// Re-sent records: `Duplicates`.
    pub duplicates: usize,
    /// Malformed items: `Rejected`.
    pub rejected: usize,
}

/// Totals over the day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DayExpectation {
    /// Distinct valid records (transactions + audits): what should be stored and pushed.
    pub valid: usize,
    pub valid_transactions: usize,
    pub valid_audits: usize,
    /// Re-sent items (each a duplicate of a valid record).
    pub duplicates: usize,
    /// Malformed items (always 1).
    pub malformed: usize,
    /// Items in all bodies.
    pub items: usize,
    /// Distinct valid records per canonical type name.
    pub by_type: BTreeMap<String, usize>,
    /// Every spelling of a type used on the wire (`CashIn`, `ValidatedCashIn`, `30`, ...).
    pub spellings: BTreeSet<String>,
}

/// A simulated day.
#[derive(Debug, Clone)]
pub struct SimulatedDay {
    pub date: Date,
    /// The safes' serial numbers (assign them to a customer to get pushes).
    pub serials: Vec<String>,
    pub uploads: Vec<SimulatedUpload>,
    pub expected: DayExpectation,
}

/// A safe: serial, maker, currency, whether its clock writes an offset.
#[derive(Debug, Clone)]
struct Safe {
    serial: String,
    currency: &'static str,
    offset: bool,
}

fn safes(n: usize, rng: &mut Rng) -> Vec<Safe> {
    const MAKERS: [&str; 4] = ["UT", "CT", "LS", "UH"];
    let mut out: Vec<Safe> = Vec::new();
    while out.len() < n.max(1) {
        // Round-robin over the makers, so even 4 safes show every format.
        let maker = MAKERS[out.len() % MAKERS.len()];
        let serial = if maker == "LS" {
            format!("LS{}{:06}", 2015 + rng.below(9), rng.below(1_000_000))
        } else {
            format!("{maker}{:05}", rng.below(100_000))
        };
        if out.iter().any(|s| s.serial == serial) {
            continue;
        }
        out.push(Safe {
            serial,
            currency: if maker == "LS" { "CAD" } else { "USD" },
            offset: maker == "UH",
        });
    }
    out
}

/// Every transaction type name, canonical, as the simulator spreads them.
const TRANSACTION_TYPES: [&str; 13] = [
    "CashIn",
    "Servicing",
    "ChangeRequest",
    "ManualCashTransaction",
    "CoinDispenseBuyChange",
    "NoteDispenseBuyChange",
    "CoinDispense",
    "NoteDispense",
    "TubeRemoved",
    "TubeLoaded",
    "EndOfDay",
    "TubeDumped",
    "Placeholder",
];

/// Relative frequency of each type in a day (validated drops dominate).
fn weight(ty: &str) -> u64 {
    match ty {
        "CashIn" => 40,
        "ManualCashTransaction" => 8,
        "ChangeRequest" => 6,
        "Servicing" => 3,
        "CoinDispenseBuyChange" | "NoteDispenseBuyChange" => 4,
        "CoinDispense" | "NoteDispense" => 3,
        "TubeRemoved" | "TubeLoaded" | "TubeDumped" => 2,
        "Placeholder" => 1,
        _ => 0, // EndOfDay: one per safe, at the end of its day
    }
}

const AUDIT_TYPES: [&str; 8] = [
    "Login",
    "Logoff",
    "LockOpened",
    "LockClosed",
    "DoorOpened",
    "DoorClosed",
    "DoorWhine",
    "DoorWhineOverride",
];

fn door_name(ty: &str, rng: &mut Rng) -> Option<&'static str> {
    match ty {
        "DoorOpened" => Some(*rng.pick(&["Storage vault open", "Cassette door open"])),
        "DoorClosed" => Some(*rng.pick(&["Storage vault closed", "Cassette door closed"])),
        "DoorWhine" | "DoorWhineOverride" => Some("Storage vault"),
        _ => None,
    }
}

/// The other names of a type: (alias, legacy code).
fn other_names(ty: &str) -> (Option<&'static str>, Option<u64>) {
    match ty {
        "CashIn" => (Some("ValidatedCashIn"), Some(30)),
        "Servicing" => (None, Some(31)),
        "ChangeRequest" => (Some("ChangePurchase"), Some(32)),
        "ManualCashTransaction" => (None, Some(51)),
        "CoinDispense" => (None, Some(90)),
        "NoteDispense" => (None, Some(91)),
        "TubeRemoved" => (None, Some(92)),
        "TubeLoaded" => (None, Some(93)),
        "EndOfDay" => (None, Some(100)),
        _ => (None, None),
    }
}

/// The JSON text of the `TransactionType` value for the `occurrence`-th
/// record of `ty`, and the spelling it uses.
fn spelling(ty: &str, occurrence: usize, rng: &mut Rng) -> (String, String) {
    let (alias, code) = other_names(ty);
    let mut choices: Vec<(String, String)> = vec![(format!("\"{ty}\""), ty.to_owned())];
    if let Some(a) = alias {
        choices.push((format!("\"{a}\""), a.to_owned()));
    }
    if let Some(c) = code {
        choices.push((c.to_string(), c.to_string()));
        choices.push((format!("\"{c}\""), format!("\"{c}\"")));
    }
    if occurrence < choices.len() {
        return choices[occurrence].clone();
    }
    // Later ones: mostly the canonical name, as current safes send.
    if rng.below(10) < 7 {
        choices[0].clone()
    } else {
        rng.pick(&choices).clone()
    }
}

const USERS: [&str; 5] = [
    "JOSE CHAVEZ",
    "MARY SMITH",
    "A. NGUYEN",
    "STORE MGR",
    "K. OKAFOR",
];
const SMALL_NOTES: [u64; 4] = [100, 500, 1_000, 2_000];
const COINS: [u64; 5] = [1, 5, 10, 25, 100];

/// One valid record, with its `RetrievedOn` left open (a re-send gets a new one).
#[derive(Debug, Clone)]
struct Record {
    kind: Kind,
    safe: usize,
    /// Minutes after midnight, safe-local.
    minute: u32,
    second: u32,
    /// JSON text before `"RetrievedOn"` and after it.
    head: String,
    tail: String,
    type_name: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transaction,
    Audit,
}

impl Record {
    fn json(&self, retrieved_on: &str) -> String {
        format!(
            "{{{},\"RetrievedOn\":\"{retrieved_on}\",{}}}",
            self.head, self.tail
        )
    }
}

/// Safe-local wall time of `minute`:`second` on `date`.
fn local(date: Date, minute: u32, second: u32) -> PrimitiveDateTime {
    let time = Time::from_hms(
        (minute / 60).min(23) as u8,
        (minute % 60) as u8,
        second as u8,
    )
    .unwrap_or(Time::MIDNIGHT);
    PrimitiveDateTime::new(date, time)
}

/// `RetrievedOn` for an event at `at` (safe-local, UTC-6): read off the safe
/// `delay_minutes` later, written with 0, 3 or 7 fraction digits, `Z` or `-06:00`.
fn retrieved_on(at: PrimitiveDateTime, delay_minutes: u64, rng: &mut Rng) -> String {
    let read =
        at + Duration::minutes(delay_minutes as i64) + Duration::seconds(rng.below(60) as i64);
    let fraction = match rng.below(3) {
        0 => String::new(),
        1 => format!(".{:03}", rng.below(1000)),
        _ => format!(".{:07}", rng.below(10_000_000)),
    };
    if rng.below(5) == 0 {
        format!("{}{fraction}-06:00", local_iso(read))
    } else {
        format!("{}{fraction}Z", local_iso(read + Duration::hours(6)))
    }
}

struct Builder<'a> {
    date: Date,
    safes: &'a [Safe],
    rng: Rng,
    occurrences: BTreeMap<&'static str, usize>,
    spellings: BTreeSet<String>,
    /// Per safe: cash dropped since the last pickup, and during the day (cents).
    since_pickup: Vec<u64>,
    day_total: Vec<u64>,
    pickup_group: Vec<i64>,
}

impl Builder<'_> {
    fn type_text(&mut self, ty: &'static str) -> String {
        let n = self.occurrences.entry(ty).or_default();
        let occurrence = *n;
        *n += 1;
        let (text, spelled) = spelling(ty, occurrence, &mut self.rng);
        self.spellings.insert(spelled);
        text
    }

    fn when(&self, safe: usize, minute: u32, second: u32) -> String {
        let t = local_iso(local(self.date, minute, second));
        if self.safes[safe].offset {
            format!("{t}-06:00")
        } else {
            t
        }
    }

    fn transaction(&mut self, safe: usize, ty: &'static str, minute: u32) -> Record {
        let rng = &mut self.rng;
        let second = rng.below(60) as u32;
        let currency = self.safes[safe].currency;
        let (user, denominations, mut extra): (&str, Vec<(u64, u64)>, String) = match ty {
            "CashIn" => (*rng.pick(&USERS), bundle(&NOTES, 4, 60, rng), String::new()),
            "CoinDispenseBuyChange" | "CoinDispense" => {
                (*rng.pick(&USERS), bundle(&COINS, 3, 40, rng), String::new())
            }
            "NoteDispenseBuyChange" | "NoteDispense" => (
                *rng.pick(&USERS),
                bundle(&SMALL_NOTES, 3, 30, rng),
                String::new(),
            ),
            "ChangeRequest" => (
                *rng.pick(&USERS),
                Vec::new(),
                format!(
                    ",\"ChangePurchaseNumber\":\"{}\"",
                    100_000 + rng.below(900_000)
                ),
            ),
            "ManualCashTransaction" => (
                *rng.pick(&USERS),
                Vec::new(),
                format!(
                    ",\"DepositReferenceNumber\":\"{}\"",
                    1_000_000 + rng.below(9_000_000)
                ),
            ),
            "TubeRemoved" | "TubeLoaded" | "TubeDumped" => (
                *rng.pick(&USERS),
                Vec::new(),
                format!(
                    ",\"TubeCount\":{},\"TubeColumn\":{}",
                    1 + rng.below(40),
                    1 + rng.below(8)
                ),
            ),
            "Servicing" => ("COURIER 0417", Vec::new(), String::new()),
            "EndOfDay" => ("AUTOEOD", Vec::new(), String::new()),
            _ => (*rng.pick(&USERS), Vec::new(), String::new()),
        };
        let cents = match ty {
            _ if !denominations.is_empty() => denominations.iter().map(|(u, c)| u * c).sum(),
            "ChangeRequest" => 2_500 * (1 + rng.below(8)),
            "ManualCashTransaction" => 100 + rng.below(200_000),
            "TubeRemoved" | "TubeLoaded" | "TubeDumped" => 25 * 40,
            "Servicing" => self.since_pickup[safe],
            "EndOfDay" => self.day_total[safe],
            _ => 0,
        };
        if matches!(ty, "CashIn" | "ManualCashTransaction") {
            self.since_pickup[safe] += cents;
            self.day_total[safe] += cents;
        }
        let register = match rng.below(3) {
            0 => ",\"Register\":null".to_owned(),
            1 => String::new(),
            _ => format!(",\"Register\":\"REG{:02}\"", 1 + rng.below(12)),
        };
        extra.push_str(&register);
        let pickup_group = self.pickup_group[safe];
        if ty == "Servicing" {
            // The pickup closes its group; later drops belong to the next one.
            self.since_pickup[safe] = 0;
            self.pickup_group[safe] += 1;
        }
        let type_text = self.type_text(ty);
        let mut denoms = String::new();
        write_denominations(&mut denoms, &denominations, currency);
        let head = format!(
            "\"PickupGroupId\":{pickup_group},\"SerialNumber\":\"{}\"",
            self.safes[safe].serial
        );
        let tail = format!(
            "\"TransactionDateTime\":\"{}\",\"UserName\":\"{user}\",\"TransactionType\":{type_text},\"Amount\":{},\"Denominations\":[{denoms}]{extra}",
            self.when(safe, minute, second),
            amount_text(cents),
        );
        Record {
            kind: Kind::Transaction,
            safe,
            minute,
            second,
            head,
            tail,
            type_name: ty,
        }
    }

    fn audit(&mut self, safe: usize, ty: &'static str, minute: u32) -> Record {
        let second = self.rng.below(60) as u32;
        let user = *self.rng.pick(&USERS);
        let door = door_name(ty, &mut self.rng)
            .map(|d| format!(",\"DoorName\":\"{d}\""))
            .unwrap_or_default();
        let type_text = self.type_text(ty);
        Record {
            kind: Kind::Audit,
            safe,
            minute,
            second,
            head: format!(
                "\"PickupGroupId\":0,\"SerialNumber\":\"{}\"",
                self.safes[safe].serial
            ),
            tail: format!(
                "\"TransactionDateTime\":\"{}\",\"UserName\":\"{user}\",\"TransactionType\":{type_text},\"Amount\":0.0{door}",
                self.when(safe, minute, second)
            ),
            type_name: ty,
        }
    }
}

/// A list of `n` type names: each of `all` once (as far as `n` allows), the
/// rest drawn by weight.
fn type_plan(
    n: usize,
    all: &[&'static str],
    weight: impl Fn(&str) -> u64,
    rng: &mut Rng,
) -> Vec<&'static str> {
    let mut plan: Vec<&'static str> = all.iter().copied().take(n).collect();
    let total: u64 = all.iter().map(|t| weight(t)).sum();
    while plan.len() < n {
        let mut x = rng.below(total);
        for t in all {
            if x < weight(t) {
                plan.push(t);
                break;
            }
            x -= weight(t);
        }
    }
    // Shuffle (Fisher-Yates) so the coverage items are not all at dawn.
    for i in (1..plan.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        plan.swap(i, j);
    }
    plan
}

/// Simulates a day. See the module docs.
pub fn day(options: &DayOptions) -> SimulatedDay {
    let mut rng = Rng::new(options.seed ^ 0x5AFE_5AFE);
    let safes = safes(options.safes, &mut rng);
    let n_safes = safes.len();
    let n_audits = options
        .audits
        .unwrap_or_else(|| (options.transactions / 5).max(AUDIT_TYPES.len()));
    let mut b = Builder {
        date: options.date,
        safes: &safes,
        rng: rng.clone(),
        occurrences: BTreeMap::new(),
        spellings: BTreeSet::new(),
        since_pickup: vec![0; n_safes],
        day_total: vec![0; n_safes],
        pickup_group: (0..n_safes)
            .map(|i| 61_499_281 + i as i64 * 1_000 + (options.seed % 500) as i64)
            .collect(),
    };

    // Transactions: one EndOfDay per safe at 23:55 when there is room, the
    // rest spread over the opening hours (06:00-22:00) in time order per safe.
    let eod = if options.transactions > n_safes + TRANSACTION_TYPES.len() {
        n_safes
    } else {
        0
    };
    let day_types: Vec<&'static str> = if eod > 0 {
        TRANSACTION_TYPES
            .iter()
            .copied()
            .filter(|t| *t != "EndOfDay")
            .collect()
    } else {
        TRANSACTION_TYPES.to_vec()
    };
    let plan = type_plan(
        options.transactions - eod,
        &day_types,
        |t| weight(t).max(u64::from(t == "EndOfDay")),
        &mut b.rng,
    );
    let mut slots: Vec<(usize, u32)> = (0..plan.len())
        .map(|i| (i % n_safes, 360 + b.rng.below(16 * 60) as u32))
        .collect();
    slots.sort_by_key(|&(safe, minute)| (minute, safe));
    let mut records: Vec<Record> = Vec::new();
    for (ty, (safe, minute)) in plan.into_iter().zip(slots) {
        records.push(b.transaction(safe, ty, minute));
    }
    for safe in 0..eod {
        records.push(b.transaction(safe, "EndOfDay", 23 * 60 + 55));
    }
    let audits = type_plan(n_audits, &AUDIT_TYPES, |_| 1, &mut b.rng);
    for (i, ty) in audits.into_iter().enumerate() {
        let minute = 330 + b.rng.below(17 * 60) as u32;
        records.push(b.audit(i % n_safes, ty, minute));
    }
    records.sort_by_key(|r| (r.minute, r.second, r.safe));

    // Cut the day into uploads by time; re-send some items; add the malformed one.
    let n_uploads = options.uploads.max(1);
    let per_upload = records.len().div_ceil(n_uploads).max(1);
    let chunks: Vec<Vec<Record>> = records.chunks(per_upload).map(<[_]>::to_vec).collect();
    let total_duplicates = (records.len() / 20).max(1);
    let malformed_at = chunks.len() / 2;

    let mut expected = DayExpectation {
        valid: records.len(),
        valid_transactions: records
            .iter()
            .filter(|r| r.kind == Kind::Transaction)
            .count(),
        valid_audits: records.iter().filter(|r| r.kind == Kind::Audit).count(),
        malformed: 1,
        ..Default::default()
    };
    for r in &records {
        *expected.by_type.entry(r.type_name.to_owned()).or_default() += 1;
    }
    let mut uploads = Vec::new();
    for (k, chunk) in chunks.iter().enumerate() {
        let mut transactions: Vec<String> = Vec::new();
        let mut audits: Vec<String> = Vec::new();
        let read_at = |r: &Record, rng: &mut Rng| {
            retrieved_on(
                local(options.date, r.minute, r.second),
                5 + rng.below(90),
                rng,
            )
        };
        for r in chunk {
            let text = r.json(&read_at(r, &mut b.rng));
            match r.kind {
                Kind::Transaction => transactions.push(text),
                Kind::Audit => audits.push(text),
            }
        }
        // Duplicates: re-reads of what was sent before (in the first upload,
        // of items of that same upload), with a later RetrievedOn.
        let mut duplicates =
            total_duplicates / chunks.len() + usize::from(k < total_duplicates % chunks.len());
        let pool: Vec<&Record> = if k == 0 {
            chunk.iter().collect()
        } else {
            chunks[..k].iter().flatten().collect()
        };
        duplicates = duplicates.min(pool.len());
        let mut picked = BTreeSet::new();
        while picked.len() < duplicates {
            picked.insert(b.rng.below(pool.len() as u64) as usize);
        }
        for i in picked {
            let r = pool[i];
            let text = r.json(&retrieved_on(
                local(options.date, r.minute, r.second),
                240 + b.rng.below(600),
                &mut b.rng,
            ));
            let list = match r.kind {
                Kind::Transaction => &mut transactions,
                Kind::Audit => &mut audits,
            };
            let at = b.rng.below(list.len() as u64 + 1) as usize;
            list.insert(at, text);
        }
        let mut rejected = 0;
        if k == malformed_at {
            // A money amount sent as a string: the one item the parser rejects.
            let safe = &safes[0];
            let malformed = format!(
                "{{\"PickupGroupId\":{},\"SerialNumber\":\"{}\",\"RetrievedOn\":\"{}T12:00:00.000Z\",\"TransactionDateTime\":\"{}\",\"UserName\":\"MARY SMITH\",\"TransactionType\":\"CashIn\",\"Amount\":\"260.0\",\"Denominations\":[{{\"UnitValue\":20.0000,\"Count\":13,\"Currency\":\"{}\"}}]}}",
                b.pickup_group[0],
                safe.serial,
                options.date,
                local_iso(local(options.date, 12 * 60 + 1, 7)),
                safe.currency
            );
            let at = b.rng.below(transactions.len() as u64 + 1) as usize;
            transactions.insert(at, malformed);
            rejected = 1;
        }
        let mut body = String::new();
        let mut sep = "{";
        for (name, items) in [
            ("Transactions", &transactions),
            ("AuditTransactions", &audits),
        ] {
            if !items.is_empty() {
                let _ = write!(body, "{sep}\"{name}\":[{}]", items.join(","));
                sep = ",";
            }
        }
        body.push('}');
        let items = transactions.len() + audits.len();
        expected.duplicates += duplicates;
        expected.items += items;
        uploads.push(SimulatedUpload {
            body: body.into_bytes(),
            expected: UploadExpectation {
                items,
                accepted: chunk.len(),
                duplicates,
                rejected,
            },
        });
    }
    expected.spellings = b.spellings;
    SimulatedDay {
        date: options.date,
        serials: safes.into_iter().map(|s| s.serial).collect(),
        uploads,
        expected,
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, String> {
    let bad = || format!("invalid date {s:?}: use YYYY-MM-DD");
    let mut parts = s.trim().splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u8 = m.parse().map_err(|_| bad())?;
    let day: u8 = d.parse().map_err(|_| bad())?;
    let month = Month::try_from(month).map_err(|_| bad())?;
    Date::from_calendar_date(year, month, day).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use platformsync_domain::quality::{QualityPolicy, check};
    use platformsync_domain::upload::parse_upload;

    #[test]
    fn deterministic_and_counts_add_up() {
        let options = DayOptions {
            date: parse_date("2024-03-14").unwrap(),
            ..DayOptions::new(7)
        };
        let a = day(&options);
        let b = day(&options);
        assert_eq!(a.uploads.len(), 4);
        assert_eq!(
            a.uploads.iter().map(|u| &u.body).collect::<Vec<_>>(),
            b.uploads.iter().map(|u| &u.body).collect::<Vec<_>>()
        );
        let e = &a.expected;
        assert_eq!(e.valid_transactions, 500);
        assert_eq!(e.valid_audits, 100);
        assert_eq!(e.items, e.valid + e.duplicates + e.malformed);
        let accepted: usize = a.uploads.iter().map(|u| u.expected.accepted).sum();
        assert_eq!(accepted, e.valid);
        let now = time::OffsetDateTime::now_utc();
        let mut rejected = 0;
        for u in &a.uploads {
            let parsed = parse_upload(&u.body).unwrap();
            assert_eq!(parsed.items.len(), u.expected.items);
            for o in &parsed.items {
                match &o.result {
                    Ok(item) => assert!(
                        check(item, now, &QualityPolicy::default()).is_empty(),
                        "{}",
                        o.raw
                    ),
                    Err(_) => rejected += 1,
                }
            }
        }
        assert_eq!(rejected, 1);
        assert_eq!(
            parse_date("2024-02-30").unwrap_err(),
            "invalid date \"2024-02-30\": use YYYY-MM-DD"
        );
    }

    #[test]
    fn tiny_days_still_work() {
        for (safes, transactions, uploads) in [(1, 1, 1), (3, 5, 9), (20, 13, 2)] {
            let d = day(&DayOptions {
                safes,
                transactions,
                audits: Some(2),
                uploads,
                ..DayOptions::new(1)
            });
            assert_eq!(d.serials.len(), safes);
            assert_eq!(d.expected.valid, transactions + 2);
            for u in &d.uploads {
                parse_upload(&u.body).unwrap();
            }
        }
    }
}
