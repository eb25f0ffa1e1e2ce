//! Who owned a safe when: dated assignments and the periods they make.
//!
//! A transaction belongs to the customer that owned its safe at the
//! transaction's `TransactionDateTime` (safe-local wall time), not to
//! whoever owns the safe when someone looks. Bounds are written like the
//! transactions table's sort-key prefix (`YYYY-MM-DDTHH:MM:SS.fffffff`,
//! safe-local, offset dropped), so a bound compares with a sort key as plain
//! strings. An assignment holds from its `from` until the next one's.

use crate::endpoint::CustomerId;
use crate::serial::SerialNumber;
use serde::{Deserialize, Serialize};

/// `from` of an assignment that holds since the safe's first transaction
/// (safes assigned before assignments had dates).
pub const BEGINNING: &str = "0001-01-01T00:00:00.0000000";

/// Length of a time bound: `YYYY-MM-DDTHH:MM:SS.fffffff`.
pub const BOUND_LEN: usize = 27;

/// One assignment: from `from` on, the safe belongs to `customer_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Assignment {
    pub serial_number: SerialNumber,
    pub customer_id: CustomerId,
    /// Safe-local wall time, [`BOUND_LEN`] characters.
    pub from: String,
    /// When the assignment was made (RFC 3339, UTC), for staff.
    pub assigned_at: String,
}

/// A customer's ownership of a safe over `[from, until)`; `until` absent =
/// still owned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Period {
    pub serial_number: SerialNumber,
    pub customer_id: CustomerId,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// The periods a history makes: sorted by `from`, each until the next
/// assignment, consecutive assignments to the same customer merged.
pub fn periods(history: &[Assignment]) -> Vec<Period> {
    let mut sorted: Vec<&Assignment> = history.iter().collect();
    sorted.sort_by(|a, b| a.from.cmp(&b.from));
    let mut out: Vec<Period> = Vec::new();
    for a in sorted {
        if let Some(last) = out.last_mut() {
            if last.customer_id == a.customer_id {
                continue;
            }
            last.until = Some(a.from.clone());
        }
        out.push(Period {
            serial_number: a.serial_number.clone(),
            customer_id: a.customer_id.clone(),
            from: a.from.clone(),
            until: None,
        });
    }
    out
}

/// The customer owning the safe at safe-local time `at` (a bound or a sort
/// key: compared as strings), by `history`.
pub fn owner_at<'a>(history: &'a [Assignment], at: &str) -> Option<&'a CustomerId> {
    history
        .iter()
        .filter(|a| a.from.as_str() <= at)
        .max_by(|a, b| a.from.cmp(&b.from))
        .map(|a| &a.customer_id)
}

/// What the fan-out needs to route one safe's transactions: its dated
/// history and its undated owner (the safe's owner from before dates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Oldest first; empty for a safe assigned before dates existed.
    pub history: Vec<Assignment>,
    /// The undated owner.
    pub current: Option<CustomerId>,
}

impl Ownership {
    /// The customer owning the safe at safe-local time `at` (a sort key or
    /// its time part): by the history when there is one, else the undated
    /// owner. `None`: nobody owned it then.
    pub fn owner_at(&self, at: &str) -> Option<&CustomerId> {
        if self.history.is_empty() {
            self.current.as_ref()
        } else {
            owner_at(&self.history, at)
        }
    }

    /// Every customer the safe ever had.
    pub fn owners_ever(&self) -> impl Iterator<Item = &CustomerId> {
        self.history
            .iter()
            .map(|a| &a.customer_id)
            .chain(self.current.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str) -> CustomerId {
        CustomerId::parse(id).unwrap()
    }

    fn a(customer: &str, from: &str) -> Assignment {
        Assignment {
            serial_number: SerialNumber::parse("UT1").unwrap(),
            customer_id: c(customer),
            from: format!("{from}T00:00:00.0000000"),
            assigned_at: String::new(),
        }
    }

    fn p(customer: &str, from: &str, until: Option<&str>) -> Period {
        Period {
            serial_number: SerialNumber::parse("UT1").unwrap(),
            customer_id: c(customer),
            from: format!("{from}T00:00:00.0000000"),
            until: until.map(|u| format!("{u}T00:00:00.0000000")),
        }
    }

    #[test]
    fn periods_run_until_the_next_assignment_and_merge_repeats() {
        let history = vec![
            a("b", "2024-03-01"),
            a("a", "2024-01-01"),
            a("a", "2024-02-01"),
            a("a", "2024-04-01"),
        ];
        assert_eq!(
            periods(&history),
            vec![
                p("a", "2024-01-01", Some("2024-03-01")),
                p("b", "2024-03-01", Some("2024-04-01")),
                p("a", "2024-04-01", None),
            ]
        );
        assert!(periods(&[]).is_empty());
    }

    #[test]
    fn owner_at_a_time() {
        let history = vec![a("a", "2024-01-01"), a("b", "2024-03-01")];
        assert_eq!(owner_at(&history, "2023-12-31T23:59:59.9999999"), None);
        assert_eq!(
            owner_at(&history, "2024-01-01T00:00:00.0000000"),
            Some(&c("a"))
        );
        assert_eq!(
            owner_at(&history, "2024-02-29T23:59:59.9999999#seq:UT1:1"),
            Some(&c("a"))
        );
        assert_eq!(
            owner_at(&history, "2024-03-01T00:00:00.0000000#x"),
            Some(&c("b"))
        );
    }

    #[test]
    fn ownership_uses_the_history_else_the_undated_owner() {
        let undated = Ownership {
            history: vec![],
            current: Some(c("a")),
        };
        assert_eq!(
            undated.owner_at("2000-01-01T00:00:00.0000000"),
            Some(&c("a"))
        );
        let moved = Ownership {
            history: vec![a("a", "2024-01-01"), a("b", "2024-03-01")],
            current: Some(c("b")),
        };
        assert_eq!(
            moved.owner_at("2024-02-01T00:00:00.0000000#k"),
            Some(&c("a"))
        );
        assert_eq!(moved.owner_at("2024-03-02T00:00:00.0000000"), Some(&c("b")));
        assert_eq!(moved.owner_at("2023-01-01T00:00:00.0000000"), None);
        assert_eq!(Ownership::default().owner_at("2024-01-01"), None);
        let ever: Vec<&str> = moved.owners_ever().map(CustomerId::as_str).collect();
        assert_eq!(ever, ["a", "b", "b"]);
    }

    #[test]
    fn bounds_sort_like_sort_keys() {
        assert_eq!(BEGINNING.len(), BOUND_LEN);
        assert!(BEGINNING < "1970-01-01T00:00:00.0000000");
    }
}
