//! The safe's identity.
//!
//! A safe is known only by its manufacturer serial number. Lengths and shapes
//! differ by manufacturer (`UT01234`, `LS2017031453`), so the project accepts
//! 3 to 32 characters of `[A-Za-z0-9-]` and stores them upper-cased once, here,
//! so every table key and comparison sees a single spelling.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Shortest serial number accepted.
pub const MIN_LEN: usize = 3;
/// Longest serial number accepted.
pub const MAX_LEN: usize = 32;

/// A validated, upper-cased safe serial number.
///
/// Surrounding ASCII whitespace is trimmed before validation: upstream systems
/// pad fixed-width columns, and a padded serial must not become a second safe.
/// Whitespace *inside* the serial is still rejected.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SerialNumber(Box<str>);

/// Why a serial number was refused. Carries the value received (trimmed) so
/// the message can be shown to whoever sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    #[error("serial number {received:?} has {len} characters; expected {MIN_LEN} to {MAX_LEN}")]
    Length { received: String, len: usize },
    #[error(
        "serial number {received:?} has {found:?} at position {position}; only A-Z, a-z, 0-9 and '-' are allowed"
    )]
    InvalidChar {
        received: String,
        found: char,
        position: usize,
    },
}

impl SerialNumber {
    /// Validates and upper-cases `input` (after trimming surrounding ASCII whitespace).
    pub fn parse(input: &str) -> Result<Self, SerialError> {
        let trimmed = input.trim_matches(|c: char| c.is_ascii_whitespace());
        if let Some((position, found)) = trimmed
            .chars()
            .enumerate()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(SerialError::InvalidChar {
                received: clip(trimmed),
                found,
                position,
            });
        }
        // Only ASCII is left, so bytes == chars.
        let len = trimmed.len();
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return Err(SerialError::Length {
                received: clip(trimmed),
                len,
            });
        }
        Ok(SerialNumber(trimmed.to_ascii_uppercase().into_boxed_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Error messages echo what was received; a megabyte of garbage must not be echoed whole.
fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

impl fmt::Display for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SerialNumber({})", self.0)
    }
}

impl AsRef<str> for SerialNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SerialNumber {
    type Err = SerialError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SerialNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SerialNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SerialNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a safe serial number string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SerialNumber, E> {
                SerialNumber::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_serials_and_uppercases() {
        for s in [
            "UT01234",
            "CT57679",
            "LS2017031453",
            "UH12345",
            "abc",
            "A-1",
        ] {
            let sn = SerialNumber::parse(s).unwrap();
            assert_eq!(sn.as_str(), s.to_ascii_uppercase());
        }
        assert_eq!(SerialNumber::parse("ut07761").unwrap().as_str(), "UT07761");
    }

    #[test]
    fn trims_surrounding_ascii_whitespace_only() {
        assert_eq!(
            SerialNumber::parse(" \tut07761\r\n").unwrap().as_str(),
            "UT07761"
        );
        assert!(matches!(
            SerialNumber::parse("UT 07761"),
            Err(SerialError::InvalidChar {
                found: ' ',
                position: 2,
                ..
            })
        ));
        // Non-ASCII whitespace is not trimmed: it is an invalid character.
        assert!(SerialNumber::parse("\u{a0}UT07761").is_err());
    }

    #[test]
    fn length_bounds() {
        assert!(SerialNumber::parse("AB").is_err());
        assert!(SerialNumber::parse("ABC").is_ok());
        assert!(SerialNumber::parse(&"A".repeat(32)).is_ok());
        let err = SerialNumber::parse(&"A".repeat(33)).unwrap_err();
        assert!(err.to_string().contains("33 characters"), "{err}");
        assert!(SerialNumber::parse("").is_err());
        assert!(SerialNumber::parse("   ").is_err());
    }

    #[test]
    fn rejects_other_characters() {
        for s in ["UT_0776", "UT.0776", "ÜT0776", "UT0776\u{0}", "UT/07"] {
            assert!(SerialNumber::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn long_garbage_is_clipped_in_errors() {
        let s = "é".repeat(10_000);
        let msg = SerialNumber::parse(&s).unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
    }

    #[test]
    fn serde_round_trip_validates() {
        let sn: SerialNumber = serde_json::from_str("\" ut07761 \"").unwrap();
        assert_eq!(serde_json::to_string(&sn).unwrap(), "\"UT07761\"");
        assert!(serde_json::from_str::<SerialNumber>("\"x\"").is_err());
        assert!(serde_json::from_str::<SerialNumber>("12345").is_err());
    }
}
