//! `NextPageToken`: where the next page starts, opaque to customers (pure).
//!
//! base64url of a small JSON document: the customer and route it was issued
//! for, the filters, page size and number, the `Total` counted for the first
//! page, and the last item returned. Nothing in it grants access: the
//! ranges are computed again from the authenticated customer's periods on
//! every request, and the cursor only says where to resume inside them. A
//! token of another customer or route, or one that does not decode, is
//! refused (400).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use platformsync_domain::endpoint::CustomerId;
use platformsync_domain::serial::SerialNumber;

use crate::ranges::Cursor;
use crate::request::{Filters, MAX_PAGE_SIZE};

const VERSION: u8 = 1;
/// Tokens longer than this are not ours.
const MAX_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Wire {
    v: u8,
    /// Customer id.
    c: String,
    /// Message kind (`Transactions` or `AuditTransactions`).
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    y: Vec<String>,
    /// Page size, next page number, total.
    n: u32,
    p: u32,
    total: u64,
    /// Cursor: serial and sort key of the last item returned.
    a: String,
    b: String,
}

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    pub customer_id: CustomerId,
    pub kind: String,
    pub filters: Filters,
    pub page_size: u32,
    /// The page this token fetches.
    pub page: u32,
    pub total: u64,
    pub cursor: Cursor,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("PageToken is not a token this API issued")]
    Malformed,
    #[error("PageToken was issued for another key's customer or another route")]
    NotYours,
}

pub fn encode(t: &PageToken) -> String {
    let wire = Wire {
        v: VERSION,
        c: t.customer_id.to_string(),
        k: t.kind.clone(),
        s: t.filters.serial.as_ref().map(SerialNumber::to_string),
        f: t.filters.from.clone(),
        t: t.filters.to.clone(),
        y: t.filters.types.clone(),
        n: t.page_size,
        p: t.page,
        total: t.total,
        a: t.cursor.serial.clone(),
        b: t.cursor.sort_key.clone(),
    };
    // Serialising strings and numbers cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap_or_default())
}

/// Decodes a token and checks it was issued to `customer_id` for `kind`.
pub fn decode(raw: &str, customer_id: &CustomerId, kind: &str) -> Result<PageToken, TokenError> {
    if raw.len() > MAX_LEN {
        return Err(TokenError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(raw.trim().trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    let w: Wire = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if w.v != VERSION || !(1..=MAX_PAGE_SIZE).contains(&w.n) || w.b.is_empty() {
        return Err(TokenError::Malformed);
    }
    if *customer_id != w.c.as_str() || w.k != kind {
        return Err(TokenError::NotYours);
    }
    let serial = w.s.as_deref().map(SerialNumber::parse).transpose();
    Ok(PageToken {
        customer_id: customer_id.clone(),
        kind: w.k,
        filters: Filters {
            serial: serial.map_err(|_| TokenError::Malformed)?,
            from: w.f,
            to: w.t,
            types: w.y,
        },
        page_size: w.n,
        page: w.p,
        total: w.total,
        cursor: Cursor {
            serial: w.a,
            sort_key: w.b,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(id: &str) -> CustomerId {
        CustomerId::parse(id).unwrap()
    }

    fn token() -> PageToken {
        PageToken {
            customer_id: customer("acme"),
            kind: "Transactions".into(),
            filters: Filters {
                serial: Some(SerialNumber::parse("UT1").unwrap()),
                from: Some("2024-01-01T00:00:00.0000000".into()),
                to: None,
                types: vec!["CashIn".into()],
            },
            page_size: 100,
            page: 3,
            total: 2500,
            cursor: Cursor {
                serial: "UT1".into(),
                sort_key: "2024-01-02T00:00:00.0000000#seq:UT1:00000000000000000001".into(),
            },
        }
    }

    #[test]
    fn round_trip() {
        let t = token();
        let raw = encode(&t);
        assert!(
            raw.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe: {raw}"
        );
        assert_eq!(decode(&raw, &customer("acme"), "Transactions").unwrap(), t);
    }

    #[test]
    fn refused_tokens() {
        let raw = encode(&token());
        assert_eq!(
            decode(&raw, &customer("other"), "Transactions"),
            Err(TokenError::NotYours)
        );
        assert_eq!(
            decode(&raw, &customer("acme"), "AuditTransactions"),
            Err(TokenError::NotYours)
        );
        for bad in ["", "!!", "e30", &raw[..raw.len() - 4], &"A".repeat(5000)] {
            assert_eq!(
                decode(bad, &customer("acme"), "Transactions"),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        let mut zero = token();
        zero.page_size = 0;
        assert_eq!(
            decode(&encode(&zero), &customer("acme"), "Transactions"),
            Err(TokenError::Malformed)
        );
    }
}
