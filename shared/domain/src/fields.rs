//! Validated string fields of a transaction.
//!
//! Each is a newtype so a value that broke the spec's format rule cannot be
//! built at all. They deref to `str` so callers can read them like strings.

use std::fmt;
use std::ops::Deref;

use serde::{Serialize, Serializer};

/// A field value that breaks its format rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{received:?} is not a valid {field}: {rule}")]
pub struct FormatError {
    /// Wire name of the field.
    pub field: &'static str,
    /// The value received, clipped.
    pub received: String,
    /// The rule it broke.
    pub rule: &'static str,
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $wire:literal, $rule:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Box<str>);

        impl $name {
            /// Wire name of the field.
            pub const FIELD: &'static str = $wire;
            /// The format rule, in words.
            pub const RULE: &'static str = $rule;

            pub fn parse(input: &str) -> Result<Self, FormatError> {
                let check: fn(&str) -> bool = $check;
                if check(input) {
                    Ok($name(input.into()))
                } else {
                    Err(FormatError {
                        field: $wire,
                        received: crate::money::clip(input),
                        rule: $rule,
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<str>::deserialize(deserializer)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Longest user name accepted, in characters.
pub const MAX_USER_NAME_CHARS: usize = 128;
/// Longest door name accepted, in characters.
pub const MAX_DOOR_NAME_CHARS: usize = 128;

fn all_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn text_field(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().nth(max).is_none() && !s.chars().any(char::is_control)
}

validated_string!(
    /// Who was logged in at the safe (`AUTOEOD` for the automatic end of day).
    /// Kept as received; must not be blank.
    UserName,
    "UserName",
    "1 to 128 characters, not blank, no control characters",
    |s| text_field(s, MAX_USER_NAME_CHARS)
);

validated_string!(
    /// Register name: up to 8 ASCII letters or digits. An empty string is
    /// refused (send `null` or leave the field out instead).
    Register,
    "Register",
    "1 to 8 ASCII letters or digits",
    |s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
);

validated_string!(
    /// Change purchase number: up to 15 digits.
    ChangePurchaseNumber,
    "ChangePurchaseNumber",
    "1 to 15 digits",
    |s| all_digits(s, 1, 15)
);

validated_string!(
    /// Deposit reference number: 4 to 15 digits.
    DepositReferenceNumber,
    "DepositReferenceNumber",
    "4 to 15 digits",
    |s| all_digits(s, 4, 15)
);

/// ISO 4217-shaped currency code: three upper-case ASCII letters (`USD`).
/// Not checked against the ISO list, which changes. Stored inline: every
/// denomination has one, and it should cost no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Wire name of the field.
    pub const FIELD: &'static str = "Currency";
    /// The format rule, in words.
    pub const RULE: &'static str = "3 upper-case letters (ISO 4217)";

    pub fn parse(input: &str) -> Result<Self, FormatError> {
        match input.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(FormatError {
                field: Self::FIELD,
                received: crate::money::clip(input),
                rule: Self::RULE,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> [u8; 3] {
        self.0
    }
}

impl Deref for Currency {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Currency {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({:?})", self.as_str())
    }
}

impl std::str::FromStr for Currency {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

validated_string!(
    /// Door name on audit records (`Storage vault open`).
    DoorName,
    "DoorName",
    "1 to 128 characters, not blank, no control characters",
    |s| text_field(s, MAX_DOOR_NAME_CHARS)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register() {
        for ok in ["0", "R1", "ABCDEFGH", "12345678"] {
            assert!(Register::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "ABCDEFGHI", "R-1", "R 1", "É"] {
            assert!(Register::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn change_purchase_and_deposit_reference() {
        assert!(ChangePurchaseNumber::parse("1").is_ok());
        assert!(ChangePurchaseNumber::parse("123456789012345").is_ok());
        assert!(ChangePurchaseNumber::parse("1234567890123456").is_err());
        assert!(ChangePurchaseNumber::parse("").is_err());
        assert!(ChangePurchaseNumber::parse("12a").is_err());
        assert!(DepositReferenceNumber::parse("123").is_err());
        assert!(DepositReferenceNumber::parse("1234").is_ok());
        assert!(DepositReferenceNumber::parse("123456789012345").is_ok());
        assert!(DepositReferenceNumber::parse("1234567890123456").is_err());
        assert!(DepositReferenceNumber::parse("١٢٣٤").is_err());
    }

    #[test]
    fn currency() {
        assert!(Currency::parse("USD").is_ok());
        for bad in ["usd", "US", "USDX", "U5D", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        let e = Currency::parse("usd").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"usd\" is not a valid Currency: 3 upper-case letters (ISO 4217)"
        );
    }

    #[test]
    fn user_name() {
        assert!(UserName::parse("JOSE CHAVEZ").is_ok());
        assert!(UserName::parse("AUTOEOD").is_ok());
        assert!(UserName::parse(&"é".repeat(128)).is_ok());
        assert!(UserName::parse(&"é".repeat(129)).is_err());
        assert!(UserName::parse("").is_err());
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse("a\nb").is_err());
        assert_eq!(&*UserName::parse(" x ").unwrap(), " x ");
    }
}
