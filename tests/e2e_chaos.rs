//! `make chaos` in small, as one end-to-end test: the pipeline behind the
//! fault proxy, AWS throttling bursts, two runner SIGKILLs, a receiver
//! failing at random (500, 201, dropped connections, answers near the
//! timeout), one endpoint down for a while, SafeSync re-sending uploads;
//! then nothing may be lost, delivered under two MessageIds or leaked, and
//! everything must arrive within the deadline.
//!
//! Needs the local stack and the built runner (`make test` provides both).

use platformsync_chaos::{ChaosOptions, FaultOptions, LoadOptions, report, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_chaos_run_loses_nothing_duplicates_nothing_and_leaks_nothing() {
    platformsync_tests::skip_on!(
        platformsync_tests::Emulator::LocalStack,
        "LocalStack releases a FIFO group while its head is in flight (docs/local-stack.md, departure 1): \
         the outage endpoint's batches are attempted side by side and its backlog does not drain within \
         the small run's deadline; nothing is lost, it is still queued"
    );
    let root = platformsync_tests::repo_root();
    let seed = 19;
    let options = ChaosOptions {
        state_dir: root.join(".local/e2e-chaos"),
        root,
        load: LoadOptions {
            seed,
            transactions: 1_200,
            safes: 24,
            customers: 3,
            endpoints_per_customer: 2,
            upload_size: 200,
            resend_rate: 0.5,
        },
        faults: FaultOptions {
            seed,
            chaos_seconds: 60.0,
            kills: 2,
            error_rate: 0.05,
            created_rate: 0.02,
            drop_rate: 0.02,
            slow_rate: 0.02,
            attempt_timeout_seconds: 5,
            outage_seconds: 20.0,
            aws_burst_seconds: 4.0,
            aws_gap_seconds: 10.0,
            aws_faults: vec!["throttle".into()],
        },
        drain_deadline_seconds: 240.0,
        settle_seconds: 15.0,
        visibility_timeout_seconds: 20,
        progress_seconds: 0.0,
    };
    let outcome = run(&options).await.expect("the chaos run completes");
    let text = report::markdown("(tests/e2e_chaos.rs)", &options, &outcome, "test");
    println!("{text}");

    // The faults did happen.
    assert_eq!(outcome.kills.len(), 2, "{text}");
    assert!(outcome.outage.is_some(), "{text}");
    assert!(
        !outcome.aws_failed.is_empty(),
        "AWS calls were failed: {text}"
    );
    let failed_on_purpose: usize = outcome
        .endpoints
        .iter()
        .flat_map(|e| &e.posts_by_outcome)
        .filter(|(k, _)| !matches!(k.as_str(), "recorded" | "repeat"))
        .map(|(_, n)| n)
        .sum();
    assert!(failed_on_purpose > 0, "the receiver failed pushes: {text}");

    // And nothing was lost, duplicated or leaked.
    for e in &outcome.endpoints {
        assert_eq!(e.lost, 0, "{} lost transactions:\n{text}", e.id);
        assert_eq!(e.under_two_message_ids, 0, "{}:\n{text}", e.id);
        assert_eq!(e.leaked + e.unexpected, 0, "{}:\n{text}", e.id);
        assert_eq!(e.repeats_with_other_content, 0, "{}:\n{text}", e.id);
    }
    assert!(
        outcome.drained_seconds.is_some(),
        "drained within the deadline:\n{text}"
    );
    assert!(!outcome.failed());
}
