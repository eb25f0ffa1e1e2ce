//! The figures of a run as Markdown: printed, and written to
//! `docs/reliability.md` by `make chaos`.

use std::fmt::Write;

use crate::run::{ChaosOptions, Outcome};

/// What the document says before the figures (the same every run).
const INTRO: &str = r#"# Reliability: `make chaos`

`make chaos` runs the whole local pipeline (moto, the fault proxy in front of
it, the runner, the reference receiver) under sustained, mixed failure and
reports what reached each endpoint. It stops by itself: faults for
`--chaos-seconds`, then at most `--drain-deadline-seconds` (counted from the
end of the faults or the last upload, whichever is later) for everything to
be delivered, then `--settle-seconds` of watching for late repeats. It exits
non-zero when anything was lost, delivered under two or more MessageIds,
leaked to another customer or past a whitelist, or when a MessageId was
re-sent with other content.

With the defaults (100,000 transactions, 500 safes, 3 customers, 6
endpoints, 20 kills) the faults last 15 minutes and the drain deadline is
30 minutes, so a run takes at most about 47 minutes plus the build. A smaller
run: `make chaos CHAOS_ARGS="--transactions 2000 --safes 40 --kills 3
--chaos-seconds 90"`. To replay a run, give `infra/scripts/chaos.sh` the
arguments of its command line below.

Same seed and settings, same faults: the load, the kill times, the AWS
bursts, the outage and the receiver's draws all come from `--seed`. (What the
pipeline does in between depends on timing, so two runs of one seed can still
differ in the figures; a failure found once is replayed by its command line.)

| fault | how |
|---|---|
| AWS throttling | the fault proxy (`infra/faults`) fails DynamoDB and SQS calls of the runner (all of them, or `PutItem`, `GetItem`, `SendMessageBatch`) in seeded bursts, in each protocol's wire format |
| runner crashes | SIGKILL at seeded times, restarted 0.5-4 s later; in-flight SQS messages come back after the runner's visibility timeout |
| receiver | per push, seeded: 500, 201 (not delivered), connection dropped, or an answer 0.8-1.2x the push's attempt timeout late |
| endpoint outage | one endpoint answers 503 for a while |
| SafeSync re-sends | uploads re-read at random (same transactions, new `RetrievedOn`); 5xx and connection errors re-sent |

Figures: **delivered** counts transactions a POST answered 200 carried (the
receiver logs every request: a repeat of a MessageId is compared with the
first by a digest of its content, never silently dropped). **Under two
MessageIds**: transactions delivered in POSTs of two or more MessageIds (a
duplicate the receiver could not drop). **Repeated POSTs**: 200s for a
MessageId already answered 200 (allowed: a retry after a lost answer).
**Leaked**: transactions of another customer's safes. **Order inversions**:
transactions that arrived after a later one of the same safe (allowed after
failures, by the delivery rules). **Drain**: from the end of the faults to
the last expected transaction delivered.
"#;

fn seconds(s: f64) -> String {
    format!("{s:.0} s")
}

/// The whole document: intro, then this run.
pub fn markdown(command_line: &str, o: &ChaosOptions, r: &Outcome, date: &str) -> String {
    let mut out = String::from(INTRO);
    let _ = writeln!(out, "\n## Last run\n");
    let _ = writeln!(out, "```sh\n{command_line}\n```\n");
    let _ = writeln!(
        out,
        "{date}, seed **{}**, stage `{}`: {} transactions from {} safes, {} customers, {} endpoints; \
         {} uploads of about {} items ({} re-reads); {} runner kills; {} AWS bursts ({}) of {}; \
         receiver rates 500 {} / 201 {} / drop {} / slow {} (attempt timeout {} s); outage {}; \
         faults for {}, drain deadline {}.\n",
        o.load.seed,
        r.stage,
        o.load.transactions,
        o.load.safes,
        o.load.customers,
        r.endpoints.len(),
        r.uploads.uploads,
        o.load.upload_size,
        r.uploads.rereads,
        r.kills.len(),
        r.aws_bursts,
        seconds(r.aws_burst_seconds),
        o.faults.aws_faults.join(", "),
        r.receiver_rates.error_rate,
        r.receiver_rates.created_rate,
        r.receiver_rates.drop_rate,
        r.receiver_rates.slow_rate,
        o.faults.attempt_timeout_seconds,
        r.outage
            .as_ref()
            .map_or("none".to_owned(), |(e, at, len)| format!(
                "{e} for {} from {}",
                seconds(*len),
                seconds(*at)
            )),
        seconds(o.faults.chaos_seconds),
        seconds(o.drain_deadline_seconds),
    );
    let verdict = if r.failed() {
        "**FAILED**: something was lost, duplicated or leaked (see the table)"
    } else {
        "**passed**: nothing lost, nothing under two MessageIds, nothing leaked"
    };
    let drain = match (r.drained_seconds, r.drain_after_last_failure()) {
        (Some(at), _) if at <= r.faults_stopped_seconds => format!(
            "everything delivered at {}, while the faults still went on (until {}): drained 0 s after the last failure",
            seconds(at),
            seconds(r.faults_stopped_seconds)
        ),
        (_, Some(d)) => format!("drained {} after the last failure", seconds(d)),
        _ => format!(
            "**not drained** within the deadline ({})",
            seconds(r.drain_deadline_seconds)
        ),
    };
    let _ = writeln!(out, "Verdict: {verdict}; {drain}.\n");

    let _ = writeln!(
        out,
        "| endpoint | expected | delivered | lost | under 2+ MessageIds | repeated POSTs | leaked | not whitelisted | order inversions (safes) | POSTs | notices |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for e in &r.endpoints {
        let notices = r
            .notices
            .get(&e.id)
            .map(|k| {
                k.iter()
                    .map(|(kind, n)| format!("{kind} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "0".into());
        let repeats = if e.repeats_with_other_content > 0 {
            format!(
                "{} (**{} with other content**)",
                e.repeated_posts, e.repeats_with_other_content
            )
        } else {
            e.repeated_posts.to_string()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} |",
            e.id,
            e.expected,
            e.delivered,
            e.lost,
            e.under_two_message_ids,
            repeats,
            e.leaked,
            e.unexpected,
            e.order_inversions,
            e.safes_with_inversions,
            e.posts,
            notices
        );
    }
    let sum = |f: fn(&crate::verdict::EndpointFigures) -> usize| -> usize {
        r.endpoints.iter().map(f).sum()
    };
    let _ = writeln!(
        out,
        "| **total** | {} | {} | {} | {} | {} | {} | {} | {} | {} | |\n",
        sum(|e| e.expected),
        sum(|e| e.delivered),
        sum(|e| e.lost),
        sum(|e| e.under_two_message_ids),
        sum(|e| e.repeated_posts),
        sum(|e| e.leaked),
        sum(|e| e.unexpected),
        sum(|e| e.order_inversions),
        sum(|e| e.posts),
    );
    let other: Vec<String> = r
        .notices
        .iter()
        .filter(|(id, _)| !r.endpoints.iter().any(|e| &e.id == *id))
        .map(|(id, k)| format!("{id}: {k:?}"))
        .collect();
    if !other.is_empty() {
        let _ = writeln!(out, "Other notices: {}.\n", other.join("; "));
    }

    let _ = writeln!(out, "What the receiver answered, per endpoint:\n");
    for e in &r.endpoints {
        let parts: Vec<String> = e
            .posts_by_outcome
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "- {}: {}", e.id, parts.join(", "));
    }
    let u = &r.uploads;
    let _ = writeln!(
        out,
        "\nUploads: {} sent ({} items), {} attempts ({} re-sent after a 5xx, {} after a connection error), \
         {} given up; answered Accepted {}, Duplicates {}, Held {}, Unowned {}, Rejected {}; last one in at {}.\n",
        u.uploads,
        u.items,
        u.attempts,
        u.retried_5xx,
        u.retried_connection,
        u.failed,
        u.accepted,
        u.duplicates,
        u.held,
        u.unowned,
        u.rejected,
        seconds(u.last_upload_seconds)
    );
    let kills: Vec<String> = r
        .kills
        .iter()
        .map(|k| {
            format!(
                "{:.0} s (+{:.1} s)",
                k.at_seconds, k.restarted_after_seconds
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "Runner kills (at, back after): {}; failed restarts (tried again): {}.\n",
        if kills.is_empty() {
            "none".to_owned()
        } else {
            kills.join(", ")
        },
        r.restart_failures
    );
    let failed: Vec<String> = r
        .aws_failed
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "AWS calls through the proxy: {}; failed on purpose: {}.\n",
        r.aws_calls,
        if failed.is_empty() {
            "none".to_owned()
        } else {
            failed.join(", ")
        }
    );
    let peaks: Vec<String> = r
        .peak_queue_depths
        .iter()
        .map(|(q, n)| format!("{q} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "Peak queue depths (visible + in flight, sampled every 5 s): {}.\n",
        peaks.join(", ")
    );
    let _ = writeln!(
        out,
        "Timeline: faults stopped at {}; last upload in at {}; {}; run took {}.",
        seconds(r.faults_stopped_seconds),
        seconds(r.uploads.last_upload_seconds),
        r.drained_seconds
            .map_or("not everything delivered".to_owned(), |d| format!(
                "everything delivered at {}",
                seconds(d)
            )),
        seconds(r.total_seconds)
    );
    out
}
