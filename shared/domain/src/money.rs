//! Exact money.
//!
//! Amounts travel as JSON numbers whose text matters to receivers (`20.0000`,
//! `5560.0`). They are parsed from the raw number text with
//! [`Decimal::from_str_exact`] and written back from the decimal's own text, so
//! no value ever passes through binary floating point and the scale received is
//! the scale sent. [`Amount::normalized`] drops trailing zeros where equality
//! by value is wanted (dedup keys).
//!
//! Writing relies on `serde_json`'s `raw_value` feature: the decimal's text is
//! wrapped in a [`RawValue`] and emitted verbatim as a JSON number. Other
//! serializers see `RawValue`'s private struct form, so these types are meant to
//! be serialised with `serde_json`; storage layers keep the JSON text.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Why a number text is not an exact decimal we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not JSON number syntax at all (`NaN`, `Infinity`, `+5`, `1_000`, `.5`).
    #[error("{received} is not a JSON number")]
    NotANumber { received: String },
    /// `1e3`, `2.5E-2`: money is never written this way and exponents make
    /// the received scale ambiguous, so they are refused rather than guessed at.
    #[error("{received} uses exponent notation, which is not accepted for money")]
    Exponent { received: String },
    /// More than 28 fraction digits or a magnitude beyond about 7.9e28.
    #[error(
        "{received} is out of range for an exact decimal (at most 28 fraction digits and 29 significant digits, |value| < 7.9e28)"
    )]
    OutOfRange { received: String },
}

/// Shortens what is echoed in messages.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 48;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Checks RFC 8259 number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
/// Returns whether it has an exponent part.
fn json_number_shape(text: &str) -> Option<bool> {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = after_digits(b, i),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i = after_one_or_more_digits(b, i + 1)?;
    }
    let exponent = matches!(b.get(i), Some(b'e' | b'E'));
    if exponent {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = after_one_or_more_digits(b, i)?;
    }
    (i == b.len()).then_some(exponent)
}

/// Where the run of ASCII digits starting at `i` ends (`i` when there is none).
fn after_digits(b: &[u8], i: usize) -> usize {
    i + b[i.min(b.len())..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count()
}

/// [`after_digits`], for a run the grammar requires (a fraction, an exponent).
fn after_one_or_more_digits(b: &[u8], i: usize) -> Option<usize> {
    let end = after_digits(b, i);
    (end > i).then_some(end)
}

/// Parses the text of a JSON number into an exact decimal, keeping its scale.
pub fn parse_decimal_text(text: &str) -> Result<Decimal, DecimalError> {
    match json_number_shape(text) {
        None => Err(DecimalError::NotANumber {
            received: clip(text),
        }),
        Some(true) => Err(DecimalError::Exponent {
            received: clip(text),
        }),
        Some(false) => Decimal::from_str_exact(text).map_err(|_| DecimalError::OutOfRange {
            received: clip(text),
        }),
    }
}

macro_rules! exact_decimal {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// Equality and hashing are by value, as for [`Decimal`] (`20.0 == 20.00`);
        /// compare the [`Display`](fmt::Display) text where the scale matters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(Decimal);

        impl $name {
            pub const ZERO: $name = $name(Decimal::ZERO);

            /// Parses JSON number text (`5560.0`), keeping its scale.
            pub fn parse(text: &str) -> Result<Self, DecimalError> {
                parse_decimal_text(text).map($name)
            }

            pub const fn from_decimal(value: Decimal) -> Self {
                $name(value)
            }

            /// The decimal as received, scale included.
            pub const fn value(&self) -> Decimal {
                self.0
            }

            /// Value with trailing fraction zeros removed: `20.00` and `20` give the same.
            pub fn normalized(&self) -> Decimal {
                self.0.normalize()
            }

            pub fn is_negative(&self) -> bool {
                self.0.is_sign_negative() && !self.0.is_zero()
            }

            pub fn is_zero(&self) -> bool {
                self.0.is_zero()
            }

            /// Same value regardless of scale.
            pub fn value_eq(&self, other: &Self) -> bool {
                self.0 == other.0
            }

            /// The number as a raw JSON value, for writers assembling JSON by hand.
            pub fn to_raw_json(&self) -> Box<RawValue> {
                raw_number(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = DecimalError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                raw_number(self.0).serialize(serializer)
            }
        }

        /// Reads a JSON *number* from `serde_json` text; a string is refused,
        /// and so is any deserializer that cannot hand over the raw text
        /// (a `serde_json::Value` has already lost the exact digits).
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <&RawValue>::deserialize(deserializer)?;
                let text = raw.get();
                match text.as_bytes().first() {
                    Some(b'-' | b'0'..=b'9') => Self::parse(text).map_err(serde::de::Error::custom),
                    _ => Err(serde::de::Error::custom(format_args!(
                        concat!("expected ", $what, " as a JSON number, got {}"),
                        clip(text)
                    ))),
                }
            }
        }
    };
}

exact_decimal!(
    /// A transaction's total cash value, exact, with the scale it was received with.
    Amount,
    "an amount"
);
exact_decimal!(
    /// A bill or coin's face value, exact, with the scale it was received with.
    UnitValue,
    "a unit value"
);

fn raw_number(value: Decimal) -> Box<RawValue> {
    let text = value.to_string();
    // A Decimal's text is always a plain JSON number (`-?digits(.digits)?`).
    RawValue::from_string(text).unwrap_or_else(|_| unreachable_number())
}

#[cold]
fn unreachable_number() -> Box<RawValue> {
    // Decimal's Display never yields non-JSON text; if it ever did, 0 is safer than a panic.
    RawValue::from_string("0".to_owned()).unwrap_or_default()
}

/// `serde(with = ...)` helper: an [`Amount`] or [`UnitValue`] as a JSON
/// *string*, for stored records (hold reasons) that may go through non-JSON
/// serializers. One module for both: each is its `Display` text and parses
/// back through `FromStr`, scale kept.
pub mod as_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = std::borrow::Cow::<str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_scale() {
        for s in [
            "20.0000", "5560.0", "0", "0.0", "60.0000", "-12.50", "100", "0.01",
        ] {
            let a = Amount::parse(s).unwrap();
            assert_eq!(a.to_string(), s);
            assert_eq!(serde_json::to_string(&a).unwrap(), s);
            let back: Amount = serde_json::from_str(s).unwrap();
            assert_eq!(back, a);
        }
    }

    #[test]
    fn normalized_ignores_scale() {
        let a = Amount::parse("20.0").unwrap();
        let b = Amount::parse("20.00").unwrap();
        let c = Amount::parse("20").unwrap();
        assert_eq!(a, b);
        assert_ne!(a.to_string(), b.to_string());
        assert_eq!(a.normalized(), b.normalized());
        assert_eq!(a.normalized(), c.normalized());
        assert_eq!(a.normalized().to_string(), "20");
        assert!(a.value_eq(&b));
    }

    #[test]
    fn digit_runs_end_where_the_digits_do() {
        assert_eq!(after_digits(b"123.4", 0), 3);
        assert_eq!(after_digits(b"123.4", 3), 3);
        assert_eq!(after_digits(b"123.4", 4), 5);
        assert_eq!(after_digits(b"12", 2), 2);
        assert_eq!(after_digits(b"12", 7), 7);
        assert_eq!(after_one_or_more_digits(b"1.e5", 2), None);
        assert_eq!(after_one_or_more_digits(b"1.25", 2), Some(4));
        assert_eq!(after_one_or_more_digits(b"1.", 2), None);
    }

    #[test]
    fn extremes() {
        let max = "79228162514264337593543950335";
        assert_eq!(Amount::parse(max).unwrap().to_string(), max);
        let tiny = "0.0000000000000000000000000001";
        assert_eq!(Amount::parse(tiny).unwrap().to_string(), tiny);
        assert_refused(
            &[
                "79228162514264337593543950336",
                "1234567890123456789012345678901234567890",
                "0.00000000000000000000000000001",
            ],
            |e| matches!(e, DecimalError::OutOfRange { .. }),
        );
    }

    /// Every one of `texts` is refused as `how` says.
    fn assert_refused(texts: &[&str], how: impl Fn(&DecimalError) -> bool) {
        for s in texts {
            let parsed = Amount::parse(s);
            assert!(parsed.as_ref().is_err_and(&how), "{s}: {parsed:?}");
        }
    }

    #[test]
    fn refuses_non_numbers_and_exponents() {
        assert_refused(
            &[
                "NaN",
                "nan",
                "Infinity",
                "-Infinity",
                "+5",
                "1_000",
                ".5",
                "5.",
                "01",
                "",
                " 5",
                "5 ",
                "0x10",
                "1,5",
            ],
            |e| matches!(e, DecimalError::NotANumber { .. }),
        );
        for s in ["1e400", "1E2", "2.5e-2", "1e+1"] {
            let e = Amount::parse(s).unwrap_err();
            assert!(matches!(e, DecimalError::Exponent { .. }), "{s}");
            assert!(e.to_string().contains(s));
        }
    }

    #[test]
    fn deserialize_refuses_strings_and_values() {
        let e = serde_json::from_str::<Amount>("\"NaN\"").unwrap_err();
        assert!(e.to_string().contains("got \"NaN\""), "{e}");
        let v = serde_json::json!(1.5);
        assert!(serde_json::from_value::<Amount>(v).is_err());
    }

    #[test]
    fn negative_and_zero() {
        assert!(Amount::parse("-0.01").unwrap().is_negative());
        assert!(!Amount::parse("-0.0").unwrap().is_negative());
        assert!(Amount::parse("-0.0").unwrap().is_zero());
        assert!(!Amount::parse("0").unwrap().is_negative());
    }

    #[test]
    fn string_helpers_round_trip() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct S {
            #[serde(with = "as_string")]
            a: Amount,
        }
        let s = S {
            a: Amount::parse("20.0000").unwrap(),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"a":"20.0000"}"#);
        assert_eq!(serde_json::from_str::<S>(&json).unwrap(), s);
    }

    proptest! {
        #[test]
        fn long_or_odd_numbers_never_panic(text in "-?[0-9]{1,120}(\\.[0-9]{1,120})?([eE][+-]?[0-9]{1,5})?") {
            let _ = Amount::parse(&text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = Amount::parse(&text);
        }

        #[test]
        fn text_round_trips(int in "-?(0|[1-9][0-9]{0,20})", frac in proptest::option::of("[0-9]{1,7}")) {
            let text = match &frac { Some(f) => format!("{int}.{f}"), None => int.clone() };
            let a = Amount::parse(&text).unwrap();
            // Negative zero is the one spelling Decimal does not keep.
            if !a.is_zero() || !text.starts_with('-') {
                prop_assert_eq!(a.to_string(), text.clone());
                prop_assert_eq!(serde_json::to_string(&a).unwrap(), text);
            }
        }
    }
}
