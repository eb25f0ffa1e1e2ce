//! Pages over key ranges: counting for `Total`, skipping to a page number,
//! resuming after a cursor. Written against [`Reader`] (one DynamoDB
//! `Query` page per call) so the walk is unit-tested in memory.

use futures_util::{StreamExt, stream};

use crate::ranges::{Cursor, KeyRange};

/// What else an item must match besides its key (a filter expression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// `Transactions` or `AuditTransactions`.
    pub kind: String,
    /// Canonical type names; empty = all.
    pub types: Vec<String>,
}

/// One item read: its sort key and its stored payload (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub sort_key: String,
    pub payload: String,
}

/// One `Select=COUNT` page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountPage {
    pub count: u64,
    /// Where the next page of this range starts (DynamoDB's
    /// `LastEvaluatedKey`'s sort key); absent: the range is done.
    pub next: Option<String>,
}

/// One page of items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPage {
    pub rows: Vec<Row>,
    pub next: Option<String>,
}

/// A source of query pages over one safe's key range. `start` is a `next`
/// this reader returned for the same range (exclusive).
pub trait Reader {
    type Error;
    fn count_page(
        &self,
        range: &KeyRange,
        m: &Match,
        start: Option<&str>,
    ) -> impl std::future::Future<Output = Result<CountPage, Self::Error>> + Send;
    /// At most `limit` items are evaluated (DynamoDB's `Limit`): fewer may match.
    fn read_page(
        &self,
        range: &KeyRange,
        m: &Match,
        start: Option<&str>,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<ReadPage, Self::Error>> + Send;
}

/// A page of results and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// (serial, row), in order.
    pub items: Vec<(String, Row)>,
    /// The last item returned, when more items follow it.
    pub more_after: Option<Cursor>,
}

/// Where a counted position lies: the range, the page start inside it and
/// how many matches come before that page.
#[derive(Debug, Clone)]
struct Checkpoint {
    range: usize,
    start: Option<String>,
    before: u64,
    count: u64,
}

/// The smallest `Limit` per read: small pages cost round trips, not read
/// units (a query's read units follow the bytes it evaluates).
const MIN_LIMIT: usize = 25;

/// Reads `want` matching items from `ranges[first..]`, starting at `start`
/// inside the first range and dropping the first `discard` matches.
async fn collect<R: Reader>(
    reader: &R,
    ranges: &[KeyRange],
    m: &Match,
    first: usize,
    mut start: Option<String>,
    mut discard: u64,
    want: usize,
) -> Result<Vec<(String, Row)>, R::Error> {
    let mut out: Vec<(String, Row)> = Vec::with_capacity(want.min(1024));
    for range in ranges.iter().skip(first) {
        loop {
            let remaining = want - out.len() + usize::try_from(discard).unwrap_or(usize::MAX);
            let limit = remaining.saturating_add(1).max(MIN_LIMIT);
            let page = reader.read_page(range, m, start.as_deref(), limit).await?;
            for row in page.rows {
                if discard > 0 {
                    discard -= 1;
                    continue;
                }
                out.push((range.serial.to_string(), row));
                if out.len() == want {
                    return Ok(out);
                }
            }
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        start = None;
    }
    Ok(out)
}

fn page_of(mut items: Vec<(String, Row)>, size: usize) -> Page {
    let more = items.len() > size;
    items.truncate(size);
    let more_after = if more {
        items.last().map(|(serial, row)| Cursor {
            serial: serial.clone(),
            sort_key: row.sort_key.clone(),
        })
    } else {
        None
    };
    Page { items, more_after }
}

/// Safes counted at once: ranges are different partitions, so a customer
/// with many safes waits for the slowest of a few queries, not their sum.
pub const COUNT_CONCURRENCY: usize = 8;

/// One `Select=COUNT` page of a range: where it starts, how many match.
type Counted = (Option<String>, u64);

/// The `Select=COUNT` pages of one range.
async fn count_range<R: Reader>(
    reader: &R,
    range: &KeyRange,
    m: &Match,
) -> Result<Vec<Counted>, R::Error> {
    let mut pages = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let p = reader.count_page(range, m, start.as_deref()).await?;
        pages.push((start.clone(), p.count));
        match p.next {
            Some(next) => start = Some(next),
            None => return Ok(pages),
        }
    }
}

/// `Total` and page `page` of `size` items: counts every match (ranges
/// [`COUNT_CONCURRENCY`] at a time), then reads from the counted page that
/// holds the first item wanted.
pub async fn by_number<R: Reader>(
    reader: &R,
    ranges: &[KeyRange],
    m: &Match,
    page: u32,
    size: u32,
) -> Result<(u64, Page), R::Error> {
    let counted: Vec<Result<Vec<Counted>, R::Error>> = stream::iter(
        ranges
            .iter()
            .map(|range| count_range(reader, range, m))
            .collect::<Vec<_>>(),
    )
    .buffered(COUNT_CONCURRENCY)
    .collect()
    .await;
    let mut checkpoints = Vec::new();
    let mut total = 0u64;
    for (i, pages) in counted.into_iter().enumerate() {
        for (start, count) in pages? {
            if count > 0 {
                checkpoints.push(Checkpoint {
                    range: i,
                    start,
                    before: total,
                    count,
                });
            }
            total += count;
        }
    }
    let skip = u64::from(page) * u64::from(size);
    let Some(at) = checkpoints.iter().find(|c| c.before + c.count > skip) else {
        return Ok((
            total,
            Page {
                items: Vec::new(),
                more_after: None,
            },
        ));
    };
    let items = collect(
        reader,
        ranges,
        m,
        at.range,
        at.start.clone(),
        skip - at.before,
        size as usize + 1,
    )
    .await?;
    Ok((total, page_of(items, size as usize)))
}

/// The `size` items after the cursor `ranges` were cut at
/// ([`crate::ranges::key_ranges`] with a cursor).
pub async fn after_cursor<R: Reader>(
    reader: &R,
    ranges: &[KeyRange],
    m: &Match,
    size: u32,
) -> Result<Page, R::Error> {
    let items = collect(reader, ranges, m, 0, None, 0, size as usize + 1).await?;
    Ok(page_of(items, size as usize))
}

/// An in-memory [`Reader`] with DynamoDB's paging behaviour (a page holds
/// at most `page_items` evaluated items; `Limit` counts evaluated items;
/// the filter applies after), for unit tests.
#[cfg(test)]
pub mod memory {
    use super::*;
    use crate::ranges::contains;
    use std::sync::Mutex;

    pub struct Item {
        pub serial: String,
        pub sort_key: String,
        pub kind: String,
        pub type_name: String,
    }

    pub struct MemoryReader {
        /// Sorted by (serial, sort key).
        pub items: Vec<Item>,
        pub page_items: usize,
        pub calls: Mutex<usize>,
        pub evaluated: Mutex<usize>,
    }

    impl MemoryReader {
        pub fn new(mut items: Vec<Item>, page_items: usize) -> Self {
            items.sort_by(|a, b| (&a.serial, &a.sort_key).cmp(&(&b.serial, &b.sort_key)));
            Self {
                items,
                page_items,
                calls: Mutex::new(0),
                evaluated: Mutex::new(0),
            }
        }

        fn page(
            &self,
            range: &KeyRange,
            m: &Match,
            start: Option<&str>,
            limit: usize,
        ) -> (Vec<&Item>, Option<String>) {
            *self.calls.lock().unwrap() += 1;
            let in_range: Vec<&Item> = self
                .items
                .iter()
                .filter(|i| contains(range, &i.serial, &i.sort_key))
                .filter(|i| start.is_none_or(|s| i.sort_key.as_str() > s))
                .collect();
            let n = in_range.len().min(limit).min(self.page_items);
            *self.evaluated.lock().unwrap() += n;
            let next = (n < in_range.len()).then(|| in_range[n - 1].sort_key.clone());
            let matched = in_range[..n]
                .iter()
                .copied()
                .filter(|i| {
                    i.kind == m.kind && (m.types.is_empty() || m.types.contains(&i.type_name))
                })
                .collect();
            (matched, next)
        }
    }

    impl Reader for MemoryReader {
        type Error = std::convert::Infallible;

        async fn count_page(
            &self,
            range: &KeyRange,
            m: &Match,
            start: Option<&str>,
        ) -> Result<CountPage, Self::Error> {
            let (matched, next) = self.page(range, m, start, usize::MAX);
            Ok(CountPage {
                count: matched.len() as u64,
                next,
            })
        }

        async fn read_page(
            &self,
            range: &KeyRange,
            m: &Match,
            start: Option<&str>,
            limit: usize,
        ) -> Result<ReadPage, Self::Error> {
            let (matched, next) = self.page(range, m, start, limit);
            Ok(ReadPage {
                rows: matched
                    .into_iter()
                    .map(|i| Row {
                        sort_key: i.sort_key.clone(),
                        payload: format!("{{\"K\":\"{}\"}}", i.sort_key),
                    })
                    .collect(),
                next,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::{Item, MemoryReader};
    use super::*;
    use crate::ranges::key_ranges;
    use crate::request::Filters;
    use platformsync_domain::endpoint::CustomerId;
    use platformsync_domain::ownership::Period;
    use platformsync_domain::serial::SerialNumber;

    fn items() -> Vec<Item> {
        let mut out = Vec::new();
        for serial in ["UTA", "UTB", "UTC"] {
            for i in 0..250 {
                out.push(Item {
                    serial: serial.into(),
                    sort_key: format!(
                        "2024-01-01T00:{:02}:{:02}.0000000#seq:{serial}:{i:020}",
                        i / 60,
                        i % 60
                    ),
                    kind: if i % 10 == 9 {
                        "AuditTransactions"
                    } else {
                        "Transactions"
                    }
                    .into(),
                    type_name: if i % 3 == 0 { "Servicing" } else { "CashIn" }.into(),
                });
            }
        }
        out
    }

    fn periods() -> Vec<Period> {
        ["UTA", "UTB", "UTC"]
            .iter()
            .map(|s| Period {
                serial_number: SerialNumber::parse(s).unwrap(),
                customer_id: CustomerId::parse("c").unwrap(),
                from: "0001-01-01T00:00:00.0000000".into(),
                until: None,
            })
            .collect()
    }

    fn tx() -> Match {
        Match {
            kind: "Transactions".into(),
            types: vec![],
        }
    }

    fn expected(reader: &MemoryReader, m: &Match) -> Vec<String> {
        reader
            .items
            .iter()
            .filter(|i| i.kind == m.kind && (m.types.is_empty() || m.types.contains(&i.type_name)))
            .map(|i| format!("{}|{}", i.serial, i.sort_key))
            .collect()
    }

    fn keys(page: &Page) -> Vec<String> {
        page.items
            .iter()
            .map(|(s, r)| format!("{s}|{}", r.sort_key))
            .collect()
    }

    #[tokio::test]
    async fn page_numbers_and_tokens_give_every_item_once_in_order() {
        for page_items in [7, 100, 10_000] {
            let reader = MemoryReader::new(items(), page_items);
            for m in [
                tx(),
                Match {
                    kind: "Transactions".into(),
                    types: vec!["Servicing".into()],
                },
            ] {
                let want = expected(&reader, &m);
                let ranges = key_ranges(&periods(), &Filters::default(), None);
                for size in [1u32, 33, 100, 1000] {
                    // By page number.
                    let mut got = Vec::new();
                    for n in 0.. {
                        let (total, page) = by_number(&reader, &ranges, &m, n, size).await.unwrap();
                        assert_eq!(total, want.len() as u64);
                        if page.items.is_empty() {
                            break;
                        }
                        assert_eq!(
                            page.more_after.is_some(),
                            got.len() + page.items.len() < want.len()
                        );
                        got.extend(keys(&page));
                    }
                    assert_eq!(got, want, "pages of {size}, {page_items} per query page");
                    // By cursor.
                    let (_, first) = by_number(&reader, &ranges, &m, 0, size).await.unwrap();
                    let mut got = keys(&first);
                    let mut cursor = first.more_after;
                    while let Some(c) = cursor {
                        let ranges = key_ranges(&periods(), &Filters::default(), Some(&c));
                        let page = after_cursor(&reader, &ranges, &m, size).await.unwrap();
                        assert!(!page.items.is_empty());
                        got.extend(keys(&page));
                        cursor = page.more_after;
                    }
                    assert_eq!(got, want, "cursor pages of {size}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_page_past_the_end_is_empty() {
        let reader = MemoryReader::new(items(), 100);
        let ranges = key_ranges(&periods(), &Filters::default(), None);
        let (total, page) = by_number(&reader, &ranges, &tx(), 100, 10).await.unwrap();
        assert_eq!(total, 675);
        assert!(page.items.is_empty() && page.more_after.is_none());
        let (total, page) = by_number(&reader, &[], &tx(), 0, 10).await.unwrap();
        assert_eq!((total, page.items.len()), (0, 0));
    }

    #[tokio::test]
    async fn cursor_reading_evaluates_little_more_than_it_returns() {
        let reader = MemoryReader::new(items(), 10_000);
        let ranges = key_ranges(&periods(), &Filters::default(), None);
        let page = after_cursor(&reader, &ranges, &tx(), 100).await.unwrap();
        assert_eq!(page.items.len(), 100);
        let evaluated = *reader.evaluated.lock().unwrap();
        assert!(
            evaluated <= 130,
            "evaluated {evaluated} for 100 (+1) matches"
        );
    }
}
