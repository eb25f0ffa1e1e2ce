//! A pull request's query string, read into filters and paging (pure).

use platformsync_domain::serial::SerialNumber;
use platformsync_domain::time::SafeDateTime;
use platformsync_domain::types::{AuditType, MessageKind, TransactionType};

/// Most transactions per page (the push API's batch limit too).
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;

/// The query parameters, as documented (matched ASCII case-insensitively).
pub const PARAMETERS: [&str; 7] = [
    "SerialNumber",
    "From",
    "To",
    "TransactionType",
    "Page",
    "PageSize",
    "PageToken",
];

/// What the customer filters on. Times are bounds in the form of the
/// transactions table's sort-key prefix (safe-local, offset dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub serial: Option<SerialNumber>,
    /// Inclusive.
    pub from: Option<String>,
    /// Exclusive.
    pub to: Option<String>,
    /// Canonical type names, sorted, without repeats; empty = all.
    pub types: Vec<String>,
}

/// Which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paging {
    Number {
        page: u32,
        size: u32,
    },
    /// The raw `PageToken`, decoded by [`crate::token`].
    Token(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub filters: Filters,
    /// Parameters the customer gave (so a token can be checked against them).
    pub given: Given,
    pub paging: Paging,
}

/// Which of the filter and size parameters were present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    pub filters: bool,
    pub page: Option<u32>,
    pub size: Option<u32>,
}

/// A query string we cannot serve: 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct BadRequest {
    pub parameter: String,
    pub message: String,
}

fn bad(parameter: &str, message: impl Into<String>) -> BadRequest {
    BadRequest {
        parameter: parameter.to_owned(),
        message: message.into(),
    }
}

/// A `From` / `To` value as a bound: `YYYY-MM-DD` (midnight) or a
/// `TransactionDateTime`-shaped time (`YYYY-MM-DDTHH:MM:SS[.fffffff]`, an
/// offset is ignored: safe-local wall time, as the table sorts).
pub fn time_bound(parameter: &str, value: &str) -> Result<String, BadRequest> {
    let value = value.trim();
    let full = if value.len() == 10 {
        format!("{value}T00:00:00")
    } else {
        value.to_owned()
    };
    SafeDateTime::parse(&full)
        .map(|t| t.sort_key())
        .map_err(|e| bad(parameter, e.to_string()))
}

/// A type name of the route's kind, either vocabulary (or a legacy code),
/// as its canonical name.
pub fn type_name(kind: MessageKind, value: &str) -> Result<String, BadRequest> {
    let name = match kind {
        MessageKind::Transactions => TransactionType::parse(value).map(|t| t.canonical_name()),
        MessageKind::AuditTransactions => AuditType::parse(value).map(|t| t.canonical_name()),
    };
    name.map(str::to_owned)
        .map_err(|e| bad("TransactionType", e.to_string()))
}

fn number(parameter: &str, value: &str) -> Result<u32, BadRequest> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| bad(parameter, format!("{value:?} is not a whole number")))
}

/// Reads a raw query string (`a=1&b=2`, percent-encoded).
pub fn parse(kind: MessageKind, query: &str) -> Result<PullRequest, BadRequest> {
    let mut filters = Filters::default();
    let mut given = Given::default();
    let mut token: Option<String> = None;
    let mut seen: Vec<&'static str> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let Some(param) = PARAMETERS
            .iter()
            .copied()
            .find(|p| p.eq_ignore_ascii_case(&name))
        else {
            return Err(bad(
                &name,
                format!("unknown parameter; known: {}", PARAMETERS.join(", ")),
            ));
        };
        if param != "TransactionType" {
            if seen.contains(&param) {
                return Err(bad(param, "given more than once"));
            }
            seen.push(param);
        }
        match param {
            "SerialNumber" => {
                let serial = SerialNumber::parse(&value).map_err(|e| bad(param, e.to_string()))?;
                filters.serial = Some(serial);
                given.filters = true;
            }
            "From" => {
                filters.from = Some(time_bound(param, &value)?);
                given.filters = true;
            }
            "To" => {
                filters.to = Some(time_bound(param, &value)?);
                given.filters = true;
            }
            "TransactionType" => {
                for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                    filters.types.push(type_name(kind, v)?);
                }
                given.filters = true;
            }
            "Page" => given.page = Some(number(param, &value)?),
            "PageSize" => {
                let size = number(param, &value)?;
                if !(1..=MAX_PAGE_SIZE).contains(&size) {
                    return Err(bad(param, format!("must be 1 to {MAX_PAGE_SIZE}")));
                }
                given.size = Some(size);
            }
            _ => token = Some(value.into_owned()),
        }
    }
    filters.types.sort();
    filters.types.dedup();
    if let (Some(from), Some(to)) = (&filters.from, &filters.to)
        && from >= to
    {
        return Err(bad(
            "To",
            "must be after From (From is inclusive, To exclusive)",
        ));
    }
    let paging = match token {
        Some(t) => Paging::Token(t),
        None => Paging::Number {
            page: given.page.unwrap_or(0),
            size: given.size.unwrap_or(DEFAULT_PAGE_SIZE),
        },
    };
    Ok(PullRequest {
        filters,
        given,
        paging,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(query: &str) -> PullRequest {
        parse(MessageKind::Transactions, query).unwrap()
    }

    fn err(query: &str) -> BadRequest {
        parse(MessageKind::Transactions, query).unwrap_err()
    }

    #[test]
    fn defaults() {
        let r = ok("");
        assert_eq!(r.filters, Filters::default());
        assert_eq!(
            r.paging,
            Paging::Number {
                page: 0,
                size: DEFAULT_PAGE_SIZE
            }
        );
        assert!(!r.given.filters);
    }

    #[test]
    fn filters_are_normalised() {
        let r = ok(
            "serialnumber=ut01234&From=2024-06-01&To=2024-06-02T12%3A30%3A00.5-06%3A00\
             &TransactionType=ValidatedCashIn,Servicing&TransactionType=cashin&Page=2&PageSize=50",
        );
        assert_eq!(
            r.filters.serial.as_ref().map(SerialNumber::as_str),
            Some("UT01234")
        );
        assert_eq!(
            r.filters.from.as_deref(),
            Some("2024-06-01T00:00:00.0000000")
        );
        assert_eq!(r.filters.to.as_deref(), Some("2024-06-02T12:30:00.5000000"));
        assert_eq!(r.filters.types, vec!["CashIn", "Servicing"]);
        assert_eq!(r.paging, Paging::Number { page: 2, size: 50 });
        assert!(r.given.filters);
    }

    #[test]
    fn legacy_codes_and_audit_types() {
        assert_eq!(ok("TransactionType=30").filters.types, vec!["CashIn"]);
        let audit = parse(MessageKind::AuditTransactions, "TransactionType=DoorOpened").unwrap();
        assert_eq!(audit.filters.types, vec!["DoorOpened"]);
        // A transaction type on the audit route is not an audit type.
        assert!(parse(MessageKind::AuditTransactions, "TransactionType=CashIn").is_err());
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(err("Sort=asc").parameter, "Sort");
        assert_eq!(err("PageSize=0").parameter, "PageSize");
        assert_eq!(err("PageSize=1001").parameter, "PageSize");
        assert_eq!(err("Page=-1").parameter, "Page");
        assert_eq!(err("From=2024-13-01").parameter, "From");
        assert_eq!(err("SerialNumber=a b").parameter, "SerialNumber");
        assert_eq!(err("TransactionType=Teleport").parameter, "TransactionType");
        assert_eq!(err("Page=1&Page=2").parameter, "Page");
        assert_eq!(err("From=2024-06-02&To=2024-06-01").parameter, "To");
        assert_eq!(err("From=2024-06-01&To=2024-06-01").parameter, "To");
    }

    #[test]
    fn a_token_is_kept_raw() {
        assert_eq!(ok("PageToken=abc").paging, Paging::Token("abc".into()));
        assert_eq!(ok("PageToken=abc&PageSize=5").given.size, Some(5));
    }
}
