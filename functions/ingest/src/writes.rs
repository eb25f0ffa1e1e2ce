//! Storing an upload's planned writes: each safe's in its time order, safes
//! side by side.

use futures_util::{StreamExt, stream};
use platformsync_aws::transactions::{Insertion, TransactionStore};

use crate::budget::{Budget, NotStored};
use crate::plan::Plan;

/// One conditional put per planned write; one result per write, in plan
/// order. A safe's puts go step after step in its time order, so the
/// stream carries its transactions in the order they happened (see
/// [`Plan::writes_by_safe`]); up to `concurrency` safes at once.
/// After a step with a failed write the rest of the safe's chain is not
/// sent (`Behind`): stored later, on the re-send, it would reach the
/// stream behind the failed one. A write not done by the budget's end is
/// `OutOfTime` (it may still land: the re-sent item is then a duplicate,
/// which the conditional put reports as such).
pub(crate) async fn write_all(
    transactions: &TransactionStore,
    plan: &Plan,
    budget: Budget,
    concurrency: usize,
) -> Vec<Result<Insertion, NotStored>> {
    // The futures are collected before they are streamed: a closure over
    // borrowed items inside the stream makes the handler future !Send
    // (rust-lang/rust#102211), and servers must be able to spawn it.
    let safes: Vec<_> = plan
        .writes_by_safe()
        .into_iter()
        .map(|steps| async move {
            let mut done = Vec::new();
            // Set by the first failed step: whether time ran out.
            let mut stopped: Option<bool> = None;
            for step in steps {
                if let Some(out_of_time) = stopped {
                    let why = || {
                        if out_of_time {
                            NotStored::OutOfTime
                        } else {
                            NotStored::Behind
                        }
                    };
                    done.extend(step.into_iter().map(|i| (i, Err(why()))));
                    continue;
                }
                let writes = step.iter().map(|&i| {
                    let record = &plan.writes[i].record;
                    budget.write(transactions.insert_new(record))
                });
                let results = futures_util::future::join_all(writes).await;
                if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
                    stopped = Some(matches!(e, NotStored::OutOfTime));
                }
                done.extend(step.into_iter().zip(results));
            }
            done
        })
        .collect();
    let mut results: Vec<(usize, Result<Insertion, NotStored>)> = stream::iter(safes)
        .buffer_unordered(concurrency)
        .flat_map(stream::iter)
        .collect()
        .await;
    // Every write is in exactly one safe's chain (`writes_by_safe`).
    debug_assert_eq!(results.len(), plan.writes.len());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}
