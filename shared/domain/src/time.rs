//! Timestamps as safes and SafeSync write them.
//!
//! Both kinds keep the string received, verbatim, for output: the spec says
//! `TransactionDateTime` is passed through as received, and re-formatting
//! `RetrievedOn` would change digits receivers may compare.
//!
//! * [`RetrievedOn`]: `YYYY-MM-DDTHH:MM:SS[.f{1,7}]` then `Z` or `±HH:MM`.
//!   The documentation says UTC, but the captured real payload carries
//!   `-06:00`, so any offset is accepted; an offset (or `Z`) is required.
//! * [`SafeDateTime`] (`TransactionDateTime`): the same shape with the offset
//!   optional. A safe reports in its own local time, usually without offset.
//!
//! Both check real calendar dates and times (no Feb 30, no hour 24, no leap
//! second 60). Offsets are `±HH:MM` with `HH <= 23` and `MM <= 59`.

use std::fmt;

use ::time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Fraction digits allowed: .NET writes up to 7 (100 ns ticks).
pub const MAX_FRACTION_DIGITS: usize = 7;

/// Without an offset, a local time may belong to any zone from UTC-12 to UTC+14.
/// The earliest instant it can denote is therefore `local - 14h`.
pub const MAX_ZONE_AHEAD_OF_UTC: ::time::Duration = ::time::Duration::hours(14);

/// ...and the latest is `local + 12h` (UTC-12 is the westernmost zone).
pub const MAX_ZONE_BEHIND_UTC: ::time::Duration = ::time::Duration::hours(12);

/// What is wrong with a timestamp. Carries the text received (clipped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{received:?} is not a valid timestamp: {problem}")]
pub struct TimestampError {
    pub received: String,
    pub problem: TimestampProblem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampProblem {
    #[error("expected YYYY-MM-DDTHH:MM:SS")]
    Shape,
    #[error("no such calendar date")]
    Date,
    #[error("no such time of day")]
    TimeOfDay,
    #[error("a '.' must be followed by 1 to 7 fraction digits")]
    Fraction,
    #[error("expected 'Z' or a +HH:MM / -HH:MM offset")]
    Offset,
    #[error("an offset ('Z' or +HH:MM / -HH:MM) is required")]
    MissingOffset,
    #[error("unexpected text after the timestamp")]
    Trailing,
}

struct Parsed {
    local: PrimitiveDateTime,
    /// Number of fraction digits written (0..=7).
    fraction_digits: u8,
    offset: Option<UtcOffset>,
}

fn digits(b: &[u8], range: std::ops::Range<usize>) -> Option<u32> {
    let part = b.get(range)?;
    part.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn parse(input: &str, offset_required: bool) -> Result<Parsed, TimestampError> {
    let fail = |problem| TimestampError {
        received: crate::money::clip(input),
        problem,
    };
    let b = input.as_bytes();
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return Err(fail(TimestampProblem::Shape));
    }
    let field = |r| digits(b, r).ok_or_else(|| fail(TimestampProblem::Shape));
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);

    let mut i = 19;
    let mut nanos = 0u32;
    let mut fraction_digits = 0u8;
    if sep(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > MAX_FRACTION_DIGITS {
            return Err(fail(TimestampProblem::Fraction));
        }
        let value = digits(b, start..i).ok_or_else(|| fail(TimestampProblem::Fraction))?;
        nanos = value * 10u32.pow((9 - n) as u32);
        fraction_digits = n as u8;
    }

    let offset = match b.get(i) {
        None => None,
        Some(b'Z') => {
            i += 1;
            Some(UtcOffset::UTC)
        }
        Some(&sign @ (b'+' | b'-')) => {
            if !sep(i + 3, b':') {
                return Err(fail(TimestampProblem::Offset));
            }
            let oh = digits(b, i + 1..i + 3).ok_or_else(|| fail(TimestampProblem::Offset))?;
            let om = digits(b, i + 4..i + 6).ok_or_else(|| fail(TimestampProblem::Offset))?;
            if oh > 23 || om > 59 {
                return Err(fail(TimestampProblem::Offset));
            }
            let (h, m) = (oh as i8, om as i8);
            let (h, m) = if sign == b'-' { (-h, -m) } else { (h, m) };
            i += 6;
            Some(UtcOffset::from_hms(h, m, 0).map_err(|_| fail(TimestampProblem::Offset))?)
        }
        Some(_) => return Err(fail(TimestampProblem::Offset)),
    };
    if i != b.len() {
        return Err(fail(TimestampProblem::Trailing));
    }
    if offset.is_none() && offset_required {
        return Err(fail(TimestampProblem::MissingOffset));
    }

    let month = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| fail(TimestampProblem::Date))?;
    // year <= 9999 and day <= 99 by shape, so the casts are lossless.
    let date = Date::from_calendar_date(year as i32, month, day as u8)
        .map_err(|_| fail(TimestampProblem::Date))?;
    let time = Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos)
        .map_err(|_| fail(TimestampProblem::TimeOfDay))?;
    Ok(Parsed {
        local: PrimitiveDateTime::new(date, time),
        fraction_digits,
        offset,
    })
}

fn unix_nanos(local: PrimitiveDateTime, offset: UtcOffset) -> i128 {
    // Integer arithmetic: no overflow or panic even at year 0000 or 9999.
    local.assume_utc().unix_timestamp_nanos() - i128::from(offset.whole_seconds()) * 1_000_000_000
}

/// When SafeSync read a transaction off the safe. Offset required.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RetrievedOn {
    raw: Box<str>,
    unix_nanos: i128,
}

impl RetrievedOn {
    pub fn parse(input: &str) -> Result<Self, TimestampError> {
        let p = parse(input, true)?;
        let offset = p.offset.unwrap_or(UtcOffset::UTC);
        Ok(RetrievedOn {
            raw: input.into(),
            unix_nanos: unix_nanos(p.local, offset),
        })
    }

    /// The text as received.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The instant, as nanoseconds since the Unix epoch.
    pub fn unix_timestamp_nanos(&self) -> i128 {
        self.unix_nanos
    }

    /// The instant, in UTC. `None` only for years the `time` crate cannot hold after
    /// conversion (before 0000-01-01 UTC).
    pub fn to_utc(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(self.unix_nanos).ok()
    }
}

/// When a transaction happened, in the safe's local time; offset optional.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafeDateTime {
    raw: Box<str>,
    local: PrimitiveDateTime,
    offset: Option<UtcOffset>,
    fraction_digits: u8,
}

impl SafeDateTime {
    pub fn parse(input: &str) -> Result<Self, TimestampError> {
        let p = parse(input, false)?;
        Ok(SafeDateTime {
            raw: input.into(),
            local: p.local,
            offset: p.offset,
            fraction_digits: p.fraction_digits,
        })
    }

    /// The text as received (passed through to customers unchanged).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The wall-clock time on the safe, offset ignored.
    pub fn local(&self) -> PrimitiveDateTime {
        self.local
    }

    pub fn offset(&self) -> Option<UtcOffset> {
        self.offset
    }

    /// `YYYY-MM-DDTHH:MM:SS.fffffff`: local wall time, fraction padded to 7
    /// digits, offset dropped. Fixed width, so byte order is time order; it
    /// prefixes the table's sort key so a safe's transactions sort by when
    /// they happened in the safe's own time (the order customers receive).
    pub fn sort_key(&self) -> String {
        let mut key = String::with_capacity(27);
        // The raw text was validated: its first 19 bytes are ASCII `YYYY-MM-DDTHH:MM:SS`.
        key.push_str(self.raw.get(..19).unwrap_or_default());
        key.push('.');
        let digits = usize::from(self.fraction_digits);
        if digits > 0 {
            key.push_str(self.raw.get(20..20 + digits).unwrap_or_default());
        }
        for _ in digits..MAX_FRACTION_DIGITS {
            key.push('0');
        }
        key
    }

    /// The earliest UTC instant this timestamp can denote, as Unix nanoseconds:
    /// exact when an offset was sent; otherwise `local - 14h`, since a safe's
    /// zone is at most UTC+14. A time with no offset is therefore "in the
    /// future" only when even that earliest reading is after now.
    pub fn earliest_utc_unix_nanos(&self) -> i128 {
        match self.offset {
            Some(offset) => unix_nanos(self.local, offset),
            None => {
                unix_nanos(self.local, UtcOffset::UTC) - MAX_ZONE_AHEAD_OF_UTC.whole_nanoseconds()
            }
        }
    }

    /// The latest UTC instant this timestamp can denote, as Unix nanoseconds:
    /// exact with an offset; otherwise `local + 12h`. A time with no offset
    /// is "before" an instant only when even this latest reading is.
    pub fn latest_utc_unix_nanos(&self) -> i128 {
        match self.offset {
            Some(offset) => unix_nanos(self.local, offset),
            None => {
                unix_nanos(self.local, UtcOffset::UTC) + MAX_ZONE_BEHIND_UTC.whole_nanoseconds()
            }
        }
    }

    /// Whether this is certainly before `instant` (by [`Self::latest_utc_unix_nanos`]).
    pub fn is_before(&self, instant: OffsetDateTime) -> bool {
        self.latest_utc_unix_nanos() < instant.unix_timestamp_nanos()
    }

    /// [`Self::earliest_utc_unix_nanos`] as a date-time (`None` if out of the `time` crate's range).
    pub fn earliest_utc(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(self.earliest_utc_unix_nanos()).ok()
    }

    /// Whether this is later than `now + margin` by the rule of
    /// [`Self::earliest_utc_unix_nanos`].
    pub fn is_after(&self, now: OffsetDateTime, margin: ::time::Duration) -> bool {
        self.earliest_utc_unix_nanos() > now.unix_timestamp_nanos() + margin.whole_nanoseconds()
    }
}

macro_rules! string_form {
    ($ty:ty, $expecting:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.raw)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self.raw)
            }
        }
        impl std::str::FromStr for $ty {
            type Err = TimestampError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.raw)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        <$ty>::parse(v).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(V)
            }
        }
    };
}

string_form!(RetrievedOn, "an ISO 8601 timestamp with offset");
string_form!(SafeDateTime, "an ISO 8601 local timestamp");

#[cfg(test)]
mod tests {
    use super::*;
    use ::time::macros::datetime;

    #[test]
    fn retrieved_on_fraction_digits() {
        for s in [
            "2019-09-12T14:11:20Z",
            "2019-09-12T14:11:20.387Z",
            "2019-09-12T14:11:20.3870000Z",
            "2019-09-12T14:11:20.3Z",
        ] {
            let r = RetrievedOn::parse(s).unwrap();
            assert_eq!(r.as_str(), s);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{s}\""));
        }
        let e = RetrievedOn::parse("2019-09-12T14:11:20.38700000Z").unwrap_err();
        assert_eq!(e.problem, TimestampProblem::Fraction);
        let e = RetrievedOn::parse("2019-09-12T14:11:20.Z").unwrap_err();
        assert_eq!(e.problem, TimestampProblem::Fraction);
    }

    #[test]
    fn retrieved_on_offsets() {
        let a = RetrievedOn::parse("2018-12-07T08:26:37.437-06:00").unwrap();
        let b = RetrievedOn::parse("2018-12-07T14:26:37.437Z").unwrap();
        assert_eq!(a.unix_timestamp_nanos(), b.unix_timestamp_nanos());
        assert_eq!(a.to_utc().unwrap(), datetime!(2018-12-07 14:26:37.437 UTC));
        assert!(RetrievedOn::parse("2018-12-07T08:26:37+05:30").is_ok());
        let e = RetrievedOn::parse("2018-12-07T08:26:37").unwrap_err();
        assert_eq!(e.problem, TimestampProblem::MissingOffset);
        for bad in [
            "2018-12-07T08:26:37+0600",
            "2018-12-07T08:26:37+24:00",
            "2018-12-07T08:26:37+06:60",
            "2018-12-07T08:26:37z",
            "2018-12-07T08:26:37+6:00",
        ] {
            assert!(RetrievedOn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn calendar_and_clock_are_checked() {
        for bad in [
            "2019-02-29T00:00:00",
            "2020-02-30T00:00:00",
            "2019-13-01T00:00:00",
            "2019-00-01T00:00:00",
            "2019-04-31T00:00:00",
            "2019-01-00T00:00:00",
        ] {
            assert_eq!(
                SafeDateTime::parse(bad).unwrap_err().problem,
                TimestampProblem::Date,
                "{bad}"
            );
        }
        assert!(SafeDateTime::parse("2020-02-29T00:00:00").is_ok());
        for bad in [
            "2019-01-01T24:00:00",
            "2019-01-01T23:60:00",
            "2019-01-01T23:59:60",
        ] {
            assert_eq!(
                SafeDateTime::parse(bad).unwrap_err().problem,
                TimestampProblem::TimeOfDay,
                "{bad}"
            );
        }
        for bad in [
            "",
            "2019-01-01",
            "2019-01-01 00:00:00",
            "2019-01-01t00:00:00",
            "19-01-01T00:00:00",
            "2019-1-01T00:00:00",
            "２０１９-01-01T00:00:00",
            "2019-01-01T00:00:0a",
        ] {
            assert_eq!(
                SafeDateTime::parse(bad).unwrap_err().problem,
                TimestampProblem::Shape,
                "{bad:?}"
            );
        }
        assert_eq!(
            SafeDateTime::parse("2019-01-01T00:00:00 ")
                .unwrap_err()
                .problem,
            TimestampProblem::Offset
        );
        assert_eq!(
            SafeDateTime::parse("2019-01-01T00:00:00Zx")
                .unwrap_err()
                .problem,
            TimestampProblem::Trailing
        );
    }

    #[test]
    fn safe_date_time_sort_key() {
        let cases = [
            ("2019-09-26T00:01:00", "2019-09-26T00:01:00.0000000"),
            ("2019-09-26T00:01:00.5", "2019-09-26T00:01:00.5000000"),
            ("2019-09-26T00:01:00.123", "2019-09-26T00:01:00.1230000"),
            ("2019-09-26T00:01:00.1234567", "2019-09-26T00:01:00.1234567"),
            ("2018-12-07T11:54:27-06:00", "2018-12-07T11:54:27.0000000"),
            (
                "2018-12-07T11:54:27.25+01:00",
                "2018-12-07T11:54:27.2500000",
            ),
            ("2018-12-07T11:54:27Z", "2018-12-07T11:54:27.0000000"),
        ];
        for (input, key) in cases {
            let t = SafeDateTime::parse(input).unwrap();
            assert_eq!(t.sort_key(), key);
            assert_eq!(t.as_str(), input);
        }
        assert!(SafeDateTime::parse("2019-09-26T00:01:00.12345678").is_err());
    }

    #[test]
    fn future_rule() {
        let now = datetime!(2024-06-01 12:00 UTC);
        let zero = ::time::Duration::ZERO;
        // No offset: in the future only if local - 14h > now.
        let t = SafeDateTime::parse("2024-06-02T02:00:00").unwrap();
        assert!(!t.is_after(now, zero));
        let t = SafeDateTime::parse("2024-06-02T02:00:01").unwrap();
        assert!(t.is_after(now, zero));
        assert!(!t.is_after(now, ::time::Duration::hours(1)));
        // Offset: exact.
        let t = SafeDateTime::parse("2024-06-01T12:00:01Z").unwrap();
        assert!(t.is_after(now, zero));
        let t = SafeDateTime::parse("2024-06-01T07:00:01-05:00").unwrap();
        assert!(t.is_after(now, zero));
        let t = SafeDateTime::parse("2024-06-01T07:00:00-05:00").unwrap();
        assert!(!t.is_after(now, zero));
        assert_eq!(
            SafeDateTime::parse("2024-06-02T02:00:00")
                .unwrap()
                .earliest_utc()
                .unwrap(),
            datetime!(2024-06-01 12:00 UTC)
        );
    }

    #[test]
    fn before_rule() {
        let floor = datetime!(2000-01-01 00:00 UTC);
        // No offset: before only if local + 12h < floor.
        assert!(
            !SafeDateTime::parse("1999-12-31T12:00:00")
                .unwrap()
                .is_before(floor)
        );
        assert!(
            SafeDateTime::parse("1999-12-31T11:59:59")
                .unwrap()
                .is_before(floor)
        );
        assert!(
            SafeDateTime::parse("1999-12-31T23:59:59Z")
                .unwrap()
                .is_before(floor)
        );
        assert!(
            !SafeDateTime::parse("1999-12-31T19:00:00-05:00")
                .unwrap()
                .is_before(floor)
        );
        assert!(
            SafeDateTime::parse("0001-01-01T00:00:00")
                .unwrap()
                .is_before(floor)
        );
    }

    #[test]
    fn extreme_years_do_not_panic() {
        let t = SafeDateTime::parse("0000-01-01T00:00:00").unwrap();
        assert!(t.earliest_utc().is_none() || t.earliest_utc().is_some());
        let t = SafeDateTime::parse("9999-12-31T23:59:59.9999999-23:59").unwrap();
        let _ = t.earliest_utc();
        let r = RetrievedOn::parse("9999-12-31T23:59:59-23:59").unwrap();
        let _ = r.to_utc();
    }
}
