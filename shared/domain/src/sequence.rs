//! Sequence-gap detection from the safes' own journal numbers.
//!
//! Items may carry `SequenceNumber`. Per safe we keep the highest number up to
//! which everything has been seen (`contiguous`) and the numbers seen beyond
//! it. What lies between is missing: either still on its way from SafeSync or
//! lost upstream, and support wants to know either way.
//!
//! Decisions:
//! - The first number ever seen from a safe is its baseline: a safe that
//!   joined PlatformSync at journal number 5,000 has no gap 1..4,999.
//! - At most [`MAX_PENDING`] numbers are kept beyond `contiguous`; past that
//!   the oldest gap is given up (it has been reported on every upload since it
//!   opened) so the state stays one small item.
//! - Numbers run up to `u64::MAX`: nothing here adds past it (a safe whose
//!   counter reached the top has seen everything up to it; there is no gap
//!   beyond).

use std::collections::BTreeSet;

/// Bound on the numbers remembered beyond the contiguous prefix.
pub const MAX_PENDING: usize = 5_000;

/// One run of missing numbers, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
}

impl Gap {
    /// How many numbers are missing (saturating: `0..=u64::MAX` has 2^64).
    pub fn len(&self) -> u64 {
        (self.to - self.from).saturating_add(1)
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A safe's journal progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every number up to and including this one has been seen.
    pub contiguous: u64,
    /// Numbers seen above `contiguous + 1`.
    pub pending: BTreeSet<u64>,
}

impl Progress {
    /// Progress of a safe seen for the first time, its lowest number the
    /// baseline.
    pub fn first_seen(numbers: impl IntoIterator<Item = u64>) -> Option<Self> {
        let numbers: BTreeSet<u64> = numbers.into_iter().collect();
        let first = *numbers.first()?;
        let mut p = Progress {
            contiguous: first.saturating_sub(1),
            pending: BTreeSet::new(),
        };
        p.observe(numbers);
        Some(p)
    }

    /// Takes in newly seen numbers (repeats and old numbers are harmless).
    pub fn observe(&mut self, numbers: impl IntoIterator<Item = u64>) {
        self.pending
            .extend(numbers.into_iter().filter(|n| *n > self.contiguous));
        self.advance();
        while self.pending.len() > MAX_PENDING {
            if let Some(lowest) = self.pending.first().copied() {
                // `pending` only holds numbers above `contiguous`, so `lowest >= 1`.
                self.contiguous = lowest.saturating_sub(1);
                self.advance();
            }
        }
    }

    fn advance(&mut self) {
        while let Some(next) = self.contiguous.checked_add(1)
            && self.pending.remove(&next)
        {
            self.contiguous = next;
        }
    }

    /// The runs of numbers still missing, lowest first.
    pub fn gaps(&self) -> Vec<Gap> {
        let mut gaps = Vec::new();
        // `None` once u64::MAX has been passed: nothing can be missing above it.
        let mut expected = self.contiguous.checked_add(1);
        for &n in &self.pending {
            let Some(from) = expected else { break };
            if n > from {
                gaps.push(Gap { from, to: n - 1 });
            }
            expected = n.checked_add(1);
        }
        gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_number_is_the_baseline() {
        let p = Progress::first_seen([5000, 5001, 5002]).unwrap();
        assert_eq!(p.contiguous, 5002);
        assert!(p.gaps().is_empty());
        assert!(Progress::first_seen([]).is_none());
    }

    #[test]
    fn gaps_open_and_close_as_numbers_arrive() {
        let mut p = Progress::first_seen([1, 2, 3, 7, 8, 10]).unwrap();
        assert_eq!(p.contiguous, 3);
        assert_eq!(
            p.gaps(),
            vec![Gap { from: 4, to: 6 }, Gap { from: 9, to: 9 }]
        );
        p.observe([4, 5, 6, 2, 1]);
        assert_eq!(p.contiguous, 8);
        assert_eq!(p.gaps(), vec![Gap { from: 9, to: 9 }]);
        p.observe([9]);
        assert_eq!(p.contiguous, 10);
        assert!(p.pending.is_empty());
        assert!(p.gaps().is_empty());
    }

    #[test]
    fn the_top_of_the_counter_is_an_ordinary_number() {
        let mut p = Progress::first_seen([u64::MAX]).unwrap();
        assert_eq!(p.contiguous, u64::MAX);
        assert!(p.gaps().is_empty());
        p.observe([u64::MAX, u64::MAX - 1, 0]);
        assert_eq!(p.contiguous, u64::MAX);
        let mut p = Progress::first_seen([u64::MAX - 3, u64::MAX]).unwrap();
        assert_eq!(
            p.gaps(),
            vec![Gap {
                from: u64::MAX - 2,
                to: u64::MAX - 1
            }]
        );
        p.observe([u64::MAX - 1, u64::MAX - 2]);
        assert_eq!(p.contiguous, u64::MAX);
        assert!(p.gaps().is_empty());
        assert_eq!(
            Gap {
                from: 0,
                to: u64::MAX
            }
            .len(),
            u64::MAX
        );
    }

    proptest::proptest! {
        /// Whatever numbers arrive, in whatever batches, near the top of the
        /// counter or anywhere: no panic, gaps are exactly the numbers not seen
        /// between the baseline and the highest seen, and `pending` stays bounded.
        #[test]
        fn never_panics_and_gaps_are_the_unseen_numbers(
            batches in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        (u64::MAX - 64)..=u64::MAX,
                        0u64..64,
                        proptest::num::u64::ANY,
                    ],
                    0..12,
                ),
                1..6,
            )
        ) {
            let mut seen = BTreeSet::new();
            let mut progress: Option<Progress> = None;
            for batch in &batches {
                seen.extend(batch.iter().copied());
                match &mut progress {
                    Some(p) => p.observe(batch.iter().copied()),
                    None => progress = Progress::first_seen(batch.iter().copied()),
                }
                if let Some(p) = &progress {
                    proptest::prop_assert!(p.pending.len() <= MAX_PENDING);
                    let gaps = p.gaps();
                    for g in &gaps {
                        proptest::prop_assert!(g.from <= g.to);
                        proptest::prop_assert!(g.from > p.contiguous);
                        // Small gaps only: checking a huge one would take forever.
                        if g.to - g.from < 1_000 {
                            for n in g.from..=g.to {
                                proptest::prop_assert!(!seen.contains(&n));
                            }
                        }
                    }
                    if let Some(&top) = seen.last() {
                        proptest::prop_assert!(p.contiguous <= top);
                    }
                }
            }
        }
    }

    #[test]
    fn pending_is_bounded_by_giving_up_the_oldest_gap() {
        let mut p = Progress::first_seen([1]).unwrap();
        p.observe((0..(MAX_PENDING as u64 + 10)).map(|i| 3 + 2 * i));
        assert!(p.pending.len() <= MAX_PENDING);
        assert!(p.contiguous > 1);
        assert_eq!(p.gaps().first().map(Gap::len), Some(1));
    }
}
