//! Transaction and audit types, and the two message kinds.
//!
//! The public documentation uses two vocabularies for transaction types
//! (`CashIn` / `ValidatedCashIn`, `ChangeRequest` / `ChangePurchase`) and older
//! drafts used numeric codes. Input accepts all of them; output always uses the
//! canonical (first) name so receivers see a single spelling.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A type name or code that is not in either vocabulary. Names the value received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {received}")]
pub struct UnknownTypeError {
    /// `"transaction type"` or `"audit type"`.
    pub what: &'static str,
    /// The value as received, quoted if it was a string, clipped if long.
    pub received: String,
}

impl UnknownTypeError {
    fn name(what: &'static str, received: &str) -> Self {
        const MAX: usize = 64;
        let shown = match received.char_indices().nth(MAX) {
            Some((cut, _)) => format!("{:?}...", &received[..cut]),
            None => format!("{received:?}"),
        };
        UnknownTypeError {
            what,
            received: shown,
        }
    }
    fn code(what: &'static str, code: impl fmt::Display) -> Self {
        UnknownTypeError {
            what,
            received: format!("code {code}"),
        }
    }
}

/// What a safe did. Canonical names are the ones sent out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransactionType {
    CashIn,
    Servicing,
    ChangeRequest,
    ManualCashTransaction,
    CoinDispenseBuyChange,
    NoteDispenseBuyChange,
    CoinDispense,
    NoteDispense,
    TubeRemoved,
    TubeLoaded,
    EndOfDay,
    TubeDumped,
    Placeholder,
}

/// (type, canonical name, other vocabulary's name, legacy numeric code)
const TRANSACTION_TYPES: [(TransactionType, &str, Option<&str>, Option<u64>); 13] = {
    use TransactionType::*;
    [
        (CashIn, "CashIn", Some("ValidatedCashIn"), Some(30)),
        (Servicing, "Servicing", None, Some(31)),
        (
            ChangeRequest,
            "ChangeRequest",
            Some("ChangePurchase"),
            Some(32),
        ),
        (
            ManualCashTransaction,
            "ManualCashTransaction",
            None,
            Some(51),
        ),
        (CoinDispenseBuyChange, "CoinDispenseBuyChange", None, None),
        (NoteDispenseBuyChange, "NoteDispenseBuyChange", None, None),
        (CoinDispense, "CoinDispense", None, Some(90)),
        (NoteDispense, "NoteDispense", None, Some(91)),
        (TubeRemoved, "TubeRemoved", None, Some(92)),
        (TubeLoaded, "TubeLoaded", None, Some(93)),
        (EndOfDay, "EndOfDay", None, Some(100)),
        (TubeDumped, "TubeDumped", None, None),
        (Placeholder, "Placeholder", None, None),
    ]
};

impl TransactionType {
    /// Every type, in declaration order.
    pub const ALL: [TransactionType; 13] = {
        let mut all = [TransactionType::CashIn; 13];
        let mut i = 0;
        while i < 13 {
            all[i] = TRANSACTION_TYPES[i].0;
            i += 1;
        }
        all
    };

    fn row(
        self,
    ) -> &'static (
        TransactionType,
        &'static str,
        Option<&'static str>,
        Option<u64>,
    ) {
        // The table is in declaration order, so the discriminant indexes it.
        &TRANSACTION_TYPES[self as usize]
    }

    /// The name sent to customers (`CashIn`, `ChangeRequest`, ...).
    pub fn canonical_name(self) -> &'static str {
        self.row().1
    }

    /// The other vocabulary's name for this type, if it has one (`ValidatedCashIn`).
    pub fn alias(self) -> Option<&'static str> {
        self.row().2
    }

    /// The legacy numeric code from older drafts, if it had one.
    pub fn legacy_code(self) -> Option<u64> {
        self.row().3
    }

    /// Whether `name` names this type in either vocabulary, ASCII case-insensitively.
    /// Used by endpoint whitelists, which may be written in either vocabulary.
    pub fn matches_name(self, name: &str) -> bool {
        let name = name.trim_matches(|c: char| c.is_ascii_whitespace());
        self.canonical_name().eq_ignore_ascii_case(name)
            || self.alias().is_some_and(|a| a.eq_ignore_ascii_case(name))
    }

    /// Parses a name from either vocabulary (ASCII case-insensitive), or a
    /// legacy numeric code written as a string of digits.
    pub fn parse(input: &str) -> Result<Self, UnknownTypeError> {
        if let Some(t) = TRANSACTION_TYPES
            .iter()
            .find(|row| row.0.matches_name(input))
        {
            return Ok(t.0);
        }
        let digits = input.trim_matches(|c: char| c.is_ascii_whitespace());
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return match digits.parse::<u64>() {
                Ok(code) => Self::from_code(code),
                Err(_) => Err(UnknownTypeError::code("transaction type", digits)),
            };
        }
        Err(UnknownTypeError::name("transaction type", input))
    }

    /// Maps a legacy numeric code (30, 31, 32, 51, 90..=93, 100).
    pub fn from_code(code: u64) -> Result<Self, UnknownTypeError> {
        TRANSACTION_TYPES
            .iter()
            .find(|row| row.3 == Some(code))
            .map(|row| row.0)
            .ok_or_else(|| UnknownTypeError::code("transaction type", code))
    }
}

/// What happened at a safe's doors and locks (audit records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuditType {
    Login,
    Logoff,
    LockOpened,
    LockClosed,
    DoorOpened,
    DoorClosed,
    DoorWhine,
    DoorWhineOverride,
}

const AUDIT_TYPES: [(AuditType, &str); 8] = {
    use AuditType::*;
    [
        (Login, "Login"),
        (Logoff, "Logoff"),
        (LockOpened, "LockOpened"),
        (LockClosed, "LockClosed"),
        (DoorOpened, "DoorOpened"),
        (DoorClosed, "DoorClosed"),
        (DoorWhine, "DoorWhine"),
        (DoorWhineOverride, "DoorWhineOverride"),
    ]
};

impl AuditType {
    /// Every audit type, in declaration order.
    pub const ALL: [AuditType; 8] = {
        let mut all = [AuditType::Login; 8];
        let mut i = 0;
        while i < 8 {
            all[i] = AUDIT_TYPES[i].0;
            i += 1;
        }
        all
    };

    pub fn canonical_name(self) -> &'static str {
        AUDIT_TYPES[self as usize].1
    }

    /// Audit types have a single vocabulary; kept for symmetry with [`TransactionType::alias`].
    pub fn alias(self) -> Option<&'static str> {
        None
    }

    pub fn matches_name(self, name: &str) -> bool {
        self.canonical_name()
            .eq_ignore_ascii_case(name.trim_matches(|c: char| c.is_ascii_whitespace()))
    }

    /// Parses an audit type name, ASCII case-insensitively.
    pub fn parse(input: &str) -> Result<Self, UnknownTypeError> {
        AUDIT_TYPES
            .iter()
            .find(|row| row.0.matches_name(input))
            .map(|row| row.0)
            .ok_or_else(|| UnknownTypeError::name("audit type", input))
    }

    /// Audit types never had numeric codes; any number is unknown.
    pub fn from_code(code: u64) -> Result<Self, UnknownTypeError> {
        Err(UnknownTypeError::code("audit type", code))
    }
}

/// The two message kinds: the upload's two arrays and the push payload's array name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    Transactions,
    AuditTransactions,
}

impl MessageKind {
    pub const ALL: [MessageKind; 2] = [MessageKind::Transactions, MessageKind::AuditTransactions];

    /// The JSON property name of the array: `Transactions` or `AuditTransactions`.
    pub fn wire_name(self) -> &'static str {
        match self {
            MessageKind::Transactions => "Transactions",
            MessageKind::AuditTransactions => "AuditTransactions",
        }
    }

    /// Exact (case-sensitive) wire name, as the JSON bodies use it.
    pub fn from_wire_name(name: &str) -> Option<Self> {
        match name {
            "Transactions" => Some(MessageKind::Transactions),
            "AuditTransactions" => Some(MessageKind::AuditTransactions),
            _ => None,
        }
    }
}

macro_rules! display_serde_by_name {
    ($ty:ty, $expecting:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.canonical_name())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownTypeError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.canonical_name())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        <$ty>::parse(v).map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        <$ty>::from_code(v).map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        match u64::try_from(v) {
                            Ok(v) => self.visit_u64(v),
                            Err(_) => Err(E::custom(UnknownTypeError::code($expecting, v))),
                        }
                    }
                }
                deserializer.deserialize_any(V)
            }
        }
    };
}

display_serde_by_name!(TransactionType, "transaction type");
display_serde_by_name!(AuditType, "audit type");

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

impl Serialize for MessageKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.wire_name())
    }
}

impl<'de> Deserialize<'de> for MessageKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MessageKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"Transactions\" or \"AuditTransactions\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MessageKind, E> {
                MessageKind::from_wire_name(v)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransactionType as T;

    #[test]
    fn table_matches_declaration_order() {
        for (i, row) in TRANSACTION_TYPES.iter().enumerate() {
            assert_eq!(row.0 as usize, i);
        }
        for (i, row) in AUDIT_TYPES.iter().enumerate() {
            assert_eq!(row.0 as usize, i);
        }
    }

    #[test]
    fn every_canonical_name_parses_case_insensitively() {
        for t in T::ALL {
            let name = t.canonical_name();
            assert_eq!(T::parse(name).unwrap(), t);
            assert_eq!(T::parse(&name.to_ascii_lowercase()).unwrap(), t);
            assert_eq!(T::parse(&name.to_ascii_uppercase()).unwrap(), t);
            assert_eq!(t.to_string(), name);
        }
    }

    #[test]
    fn aliases() {
        assert_eq!(T::parse("ValidatedCashIn").unwrap(), T::CashIn);
        assert_eq!(T::parse("validatedcashin").unwrap(), T::CashIn);
        assert_eq!(T::parse("ChangePurchase").unwrap(), T::ChangeRequest);
        assert_eq!(T::parse("CHANGEPURCHASE").unwrap(), T::ChangeRequest);
        assert_eq!(T::CashIn.alias(), Some("ValidatedCashIn"));
        assert_eq!(T::ChangeRequest.alias(), Some("ChangePurchase"));
        let with_alias: Vec<_> = T::ALL.iter().filter(|t| t.alias().is_some()).collect();
        assert_eq!(with_alias.len(), 2);
    }

    #[test]
    fn every_legacy_code() {
        let expected = [
            (30, T::CashIn),
            (31, T::Servicing),
            (32, T::ChangeRequest),
            (51, T::ManualCashTransaction),
            (90, T::CoinDispense),
            (91, T::NoteDispense),
            (92, T::TubeRemoved),
            (93, T::TubeLoaded),
            (100, T::EndOfDay),
        ];
        for (code, t) in expected {
            assert_eq!(T::from_code(code).unwrap(), t);
            assert_eq!(T::parse(&code.to_string()).unwrap(), t);
            assert_eq!(serde_json::from_str::<T>(&code.to_string()).unwrap(), t);
            assert_eq!(
                serde_json::from_str::<T>(&format!("\"{code}\"")).unwrap(),
                t
            );
            assert_eq!(t.legacy_code(), Some(code));
        }
        let coded = T::ALL.iter().filter(|t| t.legacy_code().is_some()).count();
        assert_eq!(coded, expected.len());
    }

    #[test]
    fn unknown_types_name_the_value() {
        let e = T::parse("CashOut").unwrap_err();
        assert_eq!(e.to_string(), "unknown transaction type \"CashOut\"");
        let e = T::from_code(33).unwrap_err();
        assert_eq!(e.to_string(), "unknown transaction type code 33");
        let e = T::parse("99999999999999999999999").unwrap_err();
        assert!(e.to_string().contains("99999999999999999999999"));
        assert!(serde_json::from_str::<T>("-1").is_err());
        assert!(T::parse("").is_err());
        assert!(T::parse("Cash In").is_err());
        let e = AuditType::parse("Knock").unwrap_err();
        assert_eq!(e.to_string(), "unknown audit type \"Knock\"");
        assert!(AuditType::from_code(30).is_err());
    }

    #[test]
    fn whitelist_matching() {
        assert!(T::CashIn.matches_name("validatedcashin"));
        assert!(T::CashIn.matches_name("CashIn"));
        assert!(T::ChangeRequest.matches_name("changepurchase"));
        assert!(!T::CashIn.matches_name("ChangePurchase"));
        assert!(!T::Servicing.matches_name("31"));
    }

    #[test]
    fn audit_types() {
        for a in AuditType::ALL {
            assert_eq!(AuditType::parse(a.canonical_name()).unwrap(), a);
            assert_eq!(
                AuditType::parse(&a.canonical_name().to_ascii_lowercase()).unwrap(),
                a
            );
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<AuditType>(&json).unwrap(), a);
        }
    }

    #[test]
    fn serde_uses_canonical_names() {
        let t: T = serde_json::from_str("\"ValidatedCashIn\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"CashIn\"");
        let k: MessageKind = serde_json::from_str("\"AuditTransactions\"").unwrap();
        assert_eq!(k, MessageKind::AuditTransactions);
        assert_eq!(
            serde_json::to_string(&MessageKind::Transactions).unwrap(),
            "\"Transactions\""
        );
        assert!(serde_json::from_str::<MessageKind>("\"transactions\"").is_err());
    }
}
