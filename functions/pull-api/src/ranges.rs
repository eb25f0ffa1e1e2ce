//! Key ranges of the transactions table a customer may read (pure).
//!
//! A sort key is `<time>#<dedup key>` with `<time>` 27 fixed-width
//! characters, and no sort key is a prefix of another. So, as strings:
//!
//! * every key with time `>= t` is `> t` (it continues with `#`);
//! * every key with time `< t` is `< t`, and a key with time `t` is `> t`:
//!   `BETWEEN lo AND t` stops right before time `t`;
//! * the keys after a key `k` are exactly those `>= k + " "` (a space
//!   sorts below every character a key contains).

use platformsync_domain::ownership::Period;
use platformsync_domain::serial::SerialNumber;

use crate::request::Filters;

/// Sort keys of one safe with `lo <= key <= hi` (`hi` absent: no upper bound).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyRange {
    pub serial: SerialNumber,
    pub lo: String,
    pub hi: Option<String>,
}

/// Where a reading stopped: the last item returned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub serial: String,
    pub sort_key: String,
}

/// The lower bound right after `sort_key`.
pub fn after(sort_key: &str) -> String {
    format!("{sort_key} ")
}

/// The ranges `periods` (the customer's) and `filters` allow, after
/// `cursor` if given, in the order items are returned: serial, then time.
pub fn key_ranges(periods: &[Period], filters: &Filters, cursor: Option<&Cursor>) -> Vec<KeyRange> {
    let mut out = Vec::new();
    for p in periods {
        if filters
            .serial
            .as_ref()
            .is_some_and(|s| *s != p.serial_number)
        {
            continue;
        }
        let mut lo = match &filters.from {
            Some(f) if *f > p.from => f.clone(),
            _ => p.from.clone(),
        };
        let hi = match (&p.until, &filters.to) {
            (Some(u), Some(t)) => Some(u.min(t).clone()),
            (Some(u), None) => Some(u.clone()),
            (None, t) => t.clone(),
        };
        if let Some(c) = cursor {
            if p.serial_number.as_str() < c.serial.as_str() {
                continue;
            }
            if p.serial_number.as_str() == c.serial {
                let resume = after(&c.sort_key);
                if resume > lo {
                    lo = resume;
                }
            }
        }
        if hi.as_ref().is_some_and(|h| lo >= *h) {
            continue;
        }
        out.push(KeyRange {
            serial: p.serial_number.clone(),
            lo,
            hi,
        });
    }
    out.sort();
    out
}

/// Whether `sort_key` of `serial` lies in `range` (what the query's key
/// condition selects).
pub fn contains(range: &KeyRange, serial: &str, sort_key: &str) -> bool {
    range.serial.as_str() == serial
        && range.lo.as_str() <= sort_key
        && range.hi.as_ref().is_none_or(|h| sort_key <= h.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use platformsync_domain::endpoint::CustomerId;

    const T: &str = "T00:00:00.0000000";

    fn t(day: &str) -> String {
        format!("2024-{day}{T}")
    }

    fn period(serial: &str, from: &str, until: Option<&str>) -> Period {
        Period {
            serial_number: SerialNumber::parse(serial).unwrap(),
            customer_id: CustomerId::parse("c").unwrap(),
            from: t(from),
            until: until.map(t),
        }
    }

    fn key(day: &str, id: &str) -> String {
        format!("{}#seq:X:{id}", t(day))
    }

    #[test]
    fn periods_are_cut_by_the_filters() {
        let periods = vec![
            period("UTB", "01-01", None),
            period("UTA", "01-01", Some("03-01")),
            period("UTA", "05-01", None),
        ];
        let all = key_ranges(&periods, &Filters::default(), None);
        assert_eq!(
            all,
            vec![
                KeyRange {
                    serial: "UTA".parse().unwrap(),
                    lo: t("01-01"),
                    hi: Some(t("03-01"))
                },
                KeyRange {
                    serial: "UTA".parse().unwrap(),
                    lo: t("05-01"),
                    hi: None
                },
                KeyRange {
                    serial: "UTB".parse().unwrap(),
                    lo: t("01-01"),
                    hi: None
                },
            ]
        );
        let filters = Filters {
            serial: Some(SerialNumber::parse("UTA").unwrap()),
            from: Some(t("02-01")),
            to: Some(t("04-01")),
            types: vec![],
        };
        assert_eq!(
            key_ranges(&periods, &filters, None),
            vec![KeyRange {
                serial: "UTA".parse().unwrap(),
                lo: t("02-01"),
                hi: Some(t("03-01"))
            }]
        );
    }

    #[test]
    fn bounds_select_by_time() {
        let r = KeyRange {
            serial: "UTA".parse().unwrap(),
            lo: t("02-01"),
            hi: Some(t("03-01")),
        };
        assert!(contains(&r, "UTA", &key("02-01", "1")), "From is inclusive");
        assert!(contains(&r, "UTA", &key("02-29", "9")));
        assert!(
            !contains(&r, "UTA", &key("03-01", "0")),
            "an end is exclusive"
        );
        assert!(!contains(&r, "UTA", &key("01-31", "9")));
        assert!(!contains(&r, "UTB", &key("02-02", "1")));
    }

    #[test]
    fn a_cursor_resumes_right_after_its_item() {
        let periods = vec![
            period("UTA", "01-01", None),
            period("UTB", "01-01", None),
            period("UTC", "01-01", None),
        ];
        let cursor = Cursor {
            serial: "UTB".into(),
            sort_key: key("02-01", "00000000000000000007"),
        };
        let ranges = key_ranges(&periods, &Filters::default(), Some(&cursor));
        assert_eq!(ranges.len(), 2, "A is done");
        assert_eq!(ranges[0].serial.as_str(), "UTB");
        assert!(!contains(&ranges[0], "UTB", &cursor.sort_key));
        assert!(contains(
            &ranges[0],
            "UTB",
            &key("02-01", "00000000000000000008")
        ));
        assert_eq!(ranges[1].lo, t("01-01"));
        // A cursor at the end of a bounded period leaves nothing of it.
        let bounded = vec![period("UTB", "01-01", Some("02-01"))];
        let end = Cursor {
            serial: "UTB".into(),
            sort_key: key("01-31", "1"),
        };
        assert!(key_ranges(&bounded, &Filters::default(), Some(&end)).len() == 1);
        let past = Cursor {
            serial: "UTB".into(),
            sort_key: t("02-01"),
        };
        assert!(key_ranges(&bounded, &Filters::default(), Some(&past)).is_empty());
    }
}
