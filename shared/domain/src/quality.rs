//! Data-quality checks: parsed records that must be held for staff instead
//! of pushed (spec, delivery rule 8).
//!
//! An unknown transaction type is *not* a hold reason here: a record whose
//! type is unknown cannot be built at all, so the upload parser rejects it
//! (`unknown_type`, naming the value) and keeps its raw text in the rejects
//! table, from which staff can see and replay it. See the crate docs.

use ::time::{Duration, OffsetDateTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::fields::Currency;
use crate::money::{Amount, UnitValue, as_string};
use crate::time::{RetrievedOn, SafeDateTime};
use crate::transaction::{AuditTransaction, Transaction};
use crate::upload::UploadItem;

/// Tunables of [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualityPolicy {
    /// How far past "now" a `TransactionDateTime` may be before it is held.
    ///
    /// Default 1 hour. Zone uncertainty is already absorbed by the rule of
    /// [`SafeDateTime::earliest_utc_unix_nanos`] (a time without offset is
    /// read as if the safe were at UTC+14), so the margin only has to cover
    /// safe clock drift and a missed DST change; anything later than that is
    /// a wrong clock, which the spec wants held.
    pub future_margin: Duration,
    /// No safe reports a time before this instant on purpose: a
    /// `TransactionDateTime` or `RetrievedOn` before it is a reset clock
    /// (`0001-01-01`, `1970-01-01`, a battery-less RTC's `2000-01-01`
    /// minus a zone) and is held. Default [`DEFAULT_DATE_FLOOR`].
    pub date_floor: OffsetDateTime,
    /// How far past "now" a `RetrievedOn` may be before it is held (it has
    /// an offset, so this covers only SafeSync's clock drift). Default 1 hour.
    pub retrieved_future_margin: Duration,
    /// How long before "now" a `RetrievedOn` may be before it is held;
    /// `None` (the default): no limit. Off by default because SafeSync
    /// re-sends and backfills legitimately carry old read times (a re-send
    /// of a stored transaction is a duplicate whatever its `RetrievedOn`).
    pub retrieved_max_age: Option<Duration>,
}

/// Default [`QualityPolicy::date_floor`]: 2000-01-01T00:00:00Z, before any
/// safe that reports to SafeSync was installed.
pub const DEFAULT_DATE_FLOOR: OffsetDateTime = ::time::macros::datetime!(2000-01-01 00:00 UTC);

impl Default for QualityPolicy {
    fn default() -> Self {
        QualityPolicy {
            future_margin: Duration::hours(1),
            date_floor: DEFAULT_DATE_FLOOR,
            retrieved_future_margin: Duration::hours(1),
            retrieved_max_age: None,
        }
    }
}

/// `YYYY-MM-DD` of the floor, for messages.
fn floor_text(floor: OffsetDateTime) -> String {
    let d = floor.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Why a record is held. Stored with the held record (serde, tagged by `code`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum HoldReason {
    #[error("Amount {amount} is not the sum of the denominations ({sum})")]
    AmountMismatch {
        #[serde(with = "as_string")]
        amount: Amount,
        #[serde(with = "as_string")]
        sum: Amount,
    },
    #[error("the sum of the denominations overflows an exact decimal")]
    AmountOverflow,
    #[error("Amount {amount} is negative")]
    NegativeAmount {
        #[serde(with = "as_string")]
        amount: Amount,
    },
    #[error("Denominations[{index}].Count {count} is negative")]
    NegativeCount { index: usize, count: i64 },
    #[error("Denominations[{index}].UnitValue {unit_value} is not positive")]
    NonPositiveUnitValue {
        index: usize,
        #[serde(with = "as_string")]
        unit_value: UnitValue,
    },
    #[error("denominations mix currencies ({})", currencies.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "))]
    MixedCurrencies { currencies: Vec<Currency> },
    #[error("TransactionDateTime {transaction_date_time} is in the future")]
    FutureDate { transaction_date_time: SafeDateTime },
    #[error(
        "TransactionDateTime {transaction_date_time} is before {floor}: the safe's clock is wrong"
    )]
    DateBeforeFloor {
        transaction_date_time: SafeDateTime,
        floor: String,
    },
    #[error("RetrievedOn {retrieved_on} is in the future")]
    RetrievedOnInFuture { retrieved_on: RetrievedOn },
    #[error("RetrievedOn {retrieved_on} is before {floor}: SafeSync's clock is wrong")]
    RetrievedOnBeforeFloor {
        retrieved_on: RetrievedOn,
        floor: String,
    },
    #[error("RetrievedOn {retrieved_on} is more than {max_age_hours} hours before the upload")]
    RetrievedOnTooOld {
        retrieved_on: RetrievedOn,
        max_age_hours: i64,
    },
    #[error("audit record has Amount {amount}; expected 0")]
    AuditAmountNotZero {
        #[serde(with = "as_string")]
        amount: Amount,
    },
    #[error("audit record has PickupGroupId {pickup_group_id}; expected 0")]
    AuditPickupGroupNotZero { pickup_group_id: i64 },
}

impl HoldReason {
    /// Stable short code (also the serde tag).
    pub fn code(&self) -> &'static str {
        match self {
            HoldReason::AmountMismatch { .. } => "amount_mismatch",
            HoldReason::AmountOverflow => "amount_overflow",
            HoldReason::NegativeAmount { .. } => "negative_amount",
            HoldReason::NegativeCount { .. } => "negative_count",
            HoldReason::NonPositiveUnitValue { .. } => "non_positive_unit_value",
            HoldReason::MixedCurrencies { .. } => "mixed_currencies",
            HoldReason::FutureDate { .. } => "future_date",
            HoldReason::DateBeforeFloor { .. } => "date_before_floor",
            HoldReason::RetrievedOnInFuture { .. } => "retrieved_on_in_future",
            HoldReason::RetrievedOnBeforeFloor { .. } => "retrieved_on_before_floor",
            HoldReason::RetrievedOnTooOld { .. } => "retrieved_on_too_old",
            HoldReason::AuditAmountNotZero { .. } => "audit_amount_not_zero",
            HoldReason::AuditPickupGroupNotZero { .. } => "audit_pickup_group_not_zero",
        }
    }
}

/// All reasons to hold `item`; empty means it may be pushed.
pub fn check(item: &UploadItem, now: OffsetDateTime, policy: &QualityPolicy) -> Vec<HoldReason> {
    let mut reasons = Vec::new();
    let when = item.transaction_date_time();
    if when.is_after(now, policy.future_margin) {
        reasons.push(HoldReason::FutureDate {
            transaction_date_time: when.clone(),
        });
    }
    if when.is_before(policy.date_floor) {
        reasons.push(HoldReason::DateBeforeFloor {
            transaction_date_time: when.clone(),
            floor: floor_text(policy.date_floor),
        });
    }
    check_retrieved_on(item.retrieved_on(), now, policy, &mut reasons);
    match item {
        UploadItem::Transaction(t) => check_transaction(t, &mut reasons),
        UploadItem::Audit(a) => check_audit(a, &mut reasons),
    }
    reasons
}

fn check_retrieved_on(
    retrieved: &RetrievedOn,
    now: OffsetDateTime,
    policy: &QualityPolicy,
    reasons: &mut Vec<HoldReason>,
) {
    let at = retrieved.unix_timestamp_nanos();
    let now = now.unix_timestamp_nanos();
    if at > now + policy.retrieved_future_margin.whole_nanoseconds() {
        reasons.push(HoldReason::RetrievedOnInFuture {
            retrieved_on: retrieved.clone(),
        });
    }
    if at < policy.date_floor.unix_timestamp_nanos() {
        reasons.push(HoldReason::RetrievedOnBeforeFloor {
            retrieved_on: retrieved.clone(),
            floor: floor_text(policy.date_floor),
        });
    } else if let Some(max_age) = policy.retrieved_max_age
        && at < now - max_age.whole_nanoseconds()
    {
        reasons.push(HoldReason::RetrievedOnTooOld {
            retrieved_on: retrieved.clone(),
            max_age_hours: max_age.whole_hours(),
        });
    }
}

fn check_transaction(t: &Transaction, reasons: &mut Vec<HoldReason>) {
    if t.amount.is_negative() {
        reasons.push(HoldReason::NegativeAmount { amount: t.amount });
    }
    for (index, d) in t.denominations.iter().enumerate() {
        if d.count < 0 {
            reasons.push(HoldReason::NegativeCount {
                index,
                count: d.count,
            });
        }
        if d.unit_value.is_negative() || d.unit_value.is_zero() {
            reasons.push(HoldReason::NonPositiveUnitValue {
                index,
                unit_value: d.unit_value,
            });
        }
    }
    let Some(first) = t.denominations.first() else {
        // No denominations (manual drops, pickups, end of day): nothing to add up.
        return;
    };
    if t.denominations.iter().any(|d| d.currency != first.currency) {
        let mut currencies: Vec<Currency> = t.denominations.iter().map(|d| d.currency).collect();
        currencies.sort();
        currencies.dedup();
        // Adding up several currencies means nothing, so no amount check.
        reasons.push(HoldReason::MixedCurrencies { currencies });
        return;
    }
    match denomination_sum(t) {
        None => reasons.push(HoldReason::AmountOverflow),
        Some(sum) if sum != t.amount.value() => reasons.push(HoldReason::AmountMismatch {
            amount: t.amount,
            sum: Amount::from_decimal(sum),
        }),
        Some(_) => {}
    }
}

/// Exact sum of `UnitValue x Count`; `None` on overflow.
pub fn denomination_sum(t: &Transaction) -> Option<Decimal> {
    t.denominations.iter().try_fold(Decimal::ZERO, |acc, d| {
        d.unit_value
            .value()
            .checked_mul(Decimal::from(d.count))
            .and_then(|v| acc.checked_add(v))
    })
}

fn check_audit(a: &AuditTransaction, reasons: &mut Vec<HoldReason>) {
    if !a.amount.is_zero() {
        reasons.push(HoldReason::AuditAmountNotZero { amount: a.amount });
    }
    if a.pickup_group_id != 0 {
        reasons.push(HoldReason::AuditPickupGroupNotZero {
            pickup_group_id: a.pickup_group_id,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::parse_upload;
    use ::time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-06-01 12:00 UTC);

    fn tx(amount: &str, denoms: &str, when: &str) -> UploadItem {
        let body = format!(
            r#"{{"Transactions":[{{"PickupGroupId":1,"SerialNumber":"UT07761","RetrievedOn":"2024-05-01T00:00:00Z","TransactionDateTime":"{when}","UserName":"U","TransactionType":"CashIn","Amount":{amount},"Denominations":[{denoms}]}}]}}"#
        );
        let parsed = parse_upload(body.as_bytes()).unwrap();
        parsed.items[0].result.clone().unwrap()
    }

    fn codes(item: &UploadItem) -> Vec<&'static str> {
        check(item, NOW, &QualityPolicy::default())
            .iter()
            .map(HoldReason::code)
            .collect()
    }

    const D20: &str = r#"{"UnitValue":20.0000,"Count":53,"Currency":"USD"}"#;
    const D100: &str = r#"{"UnitValue":100.0000,"Count":45,"Currency":"USD"}"#;

    #[test]
    fn sample_adds_up() {
        let t = tx(
            "5560.0",
            &format!("{D20},{D100}"),
            "2018-12-07T11:54:27-06:00",
        );
        assert!(codes(&t).is_empty());
    }

    #[test]
    fn mismatch_reports_exact_sum() {
        let t = tx("5560.01", &format!("{D20},{D100}"), "2018-12-07T11:54:27");
        let reasons = check(&t, NOW, &QualityPolicy::default());
        assert_eq!(reasons.len(), 1);
        assert_eq!(
            reasons[0].to_string(),
            "Amount 5560.01 is not the sum of the denominations (5560.0000)"
        );
        let json = serde_json::to_string(&reasons[0]).unwrap();
        assert_eq!(
            json,
            r#"{"code":"amount_mismatch","amount":"5560.01","sum":"5560.0000"}"#
        );
        assert_eq!(
            serde_json::from_str::<HoldReason>(&json).unwrap(),
            reasons[0]
        );
    }

    #[test]
    fn no_denominations_no_sum_check() {
        assert!(codes(&tx("123.45", "", "2024-01-01T00:00:00")).is_empty());
    }

    #[test]
    fn negatives_and_overflow() {
        let d = r#"{"UnitValue":20,"Count":-1,"Currency":"USD"}"#;
        assert_eq!(
            codes(&tx("-20", d, "2024-01-01T00:00:00")),
            ["negative_amount", "negative_count"]
        );
        let d = r#"{"UnitValue":0,"Count":1,"Currency":"USD"}"#;
        assert_eq!(
            codes(&tx("0", d, "2024-01-01T00:00:00")),
            ["non_positive_unit_value"]
        );
        let big = r#"{"UnitValue":79228162514264337593543950335,"Count":2,"Currency":"USD"}"#;
        assert_eq!(
            codes(&tx("1", big, "2024-01-01T00:00:00")),
            ["amount_overflow"]
        );
    }

    #[test]
    fn mixed_currencies() {
        let d = r#"{"UnitValue":20,"Count":1,"Currency":"USD"},{"UnitValue":20,"Count":1,"Currency":"CAD"}"#;
        let t = tx("40", d, "2024-01-01T00:00:00");
        let reasons = check(&t, NOW, &QualityPolicy::default());
        assert_eq!(
            reasons[0].to_string(),
            "denominations mix currencies (CAD, USD)"
        );
        assert_eq!(reasons.len(), 1);
    }

    #[test]
    fn future_dates() {
        // No offset: local - 14h must pass now + 1h.
        assert!(codes(&tx("0", "", "2024-06-02T03:00:00")).is_empty());
        assert_eq!(codes(&tx("0", "", "2024-06-02T03:00:01")), ["future_date"]);
        assert_eq!(codes(&tx("0", "", "2024-06-01T13:00:01Z")), ["future_date"]);
        assert!(codes(&tx("0", "", "2024-06-01T13:00:00Z")).is_empty());
        let strict = QualityPolicy {
            future_margin: Duration::ZERO,
            ..QualityPolicy::default()
        };
        let t = tx("0", "", "2024-06-01T12:00:01Z");
        assert_eq!(check(&t, NOW, &strict).len(), 1);
    }

    #[test]
    fn dates_before_the_floor_are_held() {
        assert_eq!(
            codes(&tx("0", "", "1970-01-01T00:00:00")),
            ["date_before_floor"]
        );
        let t = tx("0", "", "0001-01-01T00:00:00");
        let reasons = check(&t, NOW, &QualityPolicy::default());
        assert_eq!(
            reasons[0].to_string(),
            "TransactionDateTime 0001-01-01T00:00:00 is before 2000-01-01: the safe's clock is wrong"
        );
        // Within a zone's reach of the floor: not certainly before it.
        assert!(codes(&tx("0", "", "1999-12-31T20:00:00")).is_empty());
        assert!(codes(&tx("0", "", "2000-01-01T00:00:00")).is_empty());
    }

    fn retrieved(at: &str) -> UploadItem {
        let body = format!(
            r#"{{"Transactions":[{{"PickupGroupId":1,"SerialNumber":"UT07761","RetrievedOn":"{at}","TransactionDateTime":"2024-05-01T00:00:00","UserName":"U","TransactionType":"CashIn","Amount":0}}]}}"#
        );
        parse_upload(body.as_bytes()).unwrap().items[0]
            .result
            .clone()
            .unwrap()
    }

    #[test]
    fn retrieved_on_far_from_now_is_held() {
        // NOW is 2024-06-01T12:00Z; the margin is one hour.
        assert!(codes(&retrieved("2024-06-01T13:00:00Z")).is_empty());
        assert!(codes(&retrieved("2024-06-01T07:00:00-06:00")).is_empty());
        assert_eq!(
            codes(&retrieved("2024-06-01T13:00:01Z")),
            ["retrieved_on_in_future"]
        );
        assert_eq!(
            codes(&retrieved("2024-06-01T08:00:01-05:00")),
            ["retrieved_on_in_future"]
        );
        assert_eq!(
            codes(&retrieved("1970-01-01T00:00:00Z")),
            ["retrieved_on_before_floor"]
        );
        // Old read times are normal by default (re-sends, backfills)...
        assert!(codes(&retrieved("2019-09-12T14:11:20.387Z")).is_empty());
        // ...and held when a maximum age is configured.
        let policy = QualityPolicy {
            retrieved_max_age: Some(Duration::days(30)),
            ..QualityPolicy::default()
        };
        let old = retrieved("2024-05-02T11:59:59Z");
        let reasons = check(&old, NOW, &policy);
        assert_eq!(
            reasons.iter().map(HoldReason::code).collect::<Vec<_>>(),
            ["retrieved_on_too_old"]
        );
        assert_eq!(
            reasons[0].to_string(),
            "RetrievedOn 2024-05-02T11:59:59Z is more than 720 hours before the upload"
        );
        assert!(check(&retrieved("2024-05-02T12:00:01Z"), NOW, &policy).is_empty());
    }

    #[test]
    fn audit_rules() {
        let body = r#"{"AuditTransactions":[{"PickupGroupId":5,"SerialNumber":"UT07761","RetrievedOn":"2024-05-01T00:00:00Z","TransactionDateTime":"2024-05-01T00:00:00","UserName":"U","TransactionType":"DoorOpened","Amount":1.5,"DoorName":"Storage vault open"}]}"#;
        let parsed = parse_upload(body.as_bytes()).unwrap();
        let a = parsed.items[0].result.clone().unwrap();
        assert_eq!(
            codes(&a),
            ["audit_amount_not_zero", "audit_pickup_group_not_zero"]
        );
        let ok = body
            .replace("\"PickupGroupId\":5", "\"PickupGroupId\":0")
            .replace("1.5", "0.0");
        let parsed = parse_upload(ok.as_bytes()).unwrap();
        assert!(codes(&parsed.items[0].result.clone().unwrap()).is_empty());
    }

    #[test]
    fn every_reason_serialises_with_its_code() {
        let reasons = vec![
            HoldReason::AmountOverflow,
            HoldReason::NegativeCount {
                index: 1,
                count: -2,
            },
            HoldReason::FutureDate {
                transaction_date_time: SafeDateTime::parse("2030-01-01T00:00:00").unwrap(),
            },
            HoldReason::MixedCurrencies {
                currencies: vec![Currency::parse("USD").unwrap()],
            },
            HoldReason::AuditPickupGroupNotZero { pickup_group_id: 3 },
            HoldReason::DateBeforeFloor {
                transaction_date_time: SafeDateTime::parse("1970-01-01T00:00:00").unwrap(),
                floor: "2000-01-01".into(),
            },
            HoldReason::RetrievedOnInFuture {
                retrieved_on: RetrievedOn::parse("2030-01-01T00:00:00Z").unwrap(),
            },
            HoldReason::RetrievedOnBeforeFloor {
                retrieved_on: RetrievedOn::parse("1970-01-01T00:00:00Z").unwrap(),
                floor: "2000-01-01".into(),
            },
            HoldReason::RetrievedOnTooOld {
                retrieved_on: RetrievedOn::parse("2020-01-01T00:00:00Z").unwrap(),
                max_age_hours: 24,
            },
        ];
        for r in reasons {
            let v: serde_json::Value = serde_json::to_value(&r).unwrap();
            assert_eq!(v["code"], r.code());
            let back: HoldReason = serde_json::from_value(v).unwrap();
            assert_eq!(back, r);
        }
    }
}
