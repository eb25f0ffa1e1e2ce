//! The answers customers see (pure).
//!
//! A page is `{"Total", "Page", "PageSize", "Transactions" (or
//! "AuditTransactions"), "NextPageToken"?}`; each transaction is its stored
//! payload v1 text, unchanged, so decimals keep their digits (`20.0000`)
//! and the JSON is exactly what the push sent. Error answers are
//! `platformsync_aws::apigw::error`, the same shape as the ingest API's.

/// Renders a page. `payloads` are JSON objects as stored.
pub fn page<'a>(
    array: &str,
    total: u64,
    page: u32,
    page_size: u32,
    payloads: impl IntoIterator<Item = &'a str>,
    next_page_token: Option<&str>,
) -> String {
    let mut out = String::with_capacity(128);
    out.push_str(&format!(
        "{{\"Total\":{total},\"Page\":{page},\"PageSize\":{page_size},"
    ));
    out.push_str(&serde_json::to_string(array).unwrap_or_default());
    out.push_str(":[");
    for (i, p) in payloads.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(p);
    }
    out.push(']');
    if let Some(t) = next_page_token {
        out.push_str(",\"NextPageToken\":");
        out.push_str(&serde_json::to_string(t).unwrap_or_default());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_pass_through_byte_for_byte() {
        let body = page(
            "Transactions",
            2,
            0,
            1000,
            [
                r#"{"Amount":5560.0,"UnitValue":20.0000}"#,
                r#"{"Amount":1}"#,
            ],
            Some("tok"),
        );
        assert_eq!(
            body,
            r#"{"Total":2,"Page":0,"PageSize":1000,"Transactions":[{"Amount":5560.0,"UnitValue":20.0000},{"Amount":1}],"NextPageToken":"tok"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Transactions"].as_array().unwrap().len(), 2);
        let empty = page("AuditTransactions", 0, 3, 10, [], None);
        assert_eq!(
            empty,
            r#"{"Total":0,"Page":3,"PageSize":10,"AuditTransactions":[]}"#
        );
    }
}
