//! Heavy concurrency on this host, as root (its own test binary, so no other test competes
//! for the two cores while it runs).
//! The workload's manifest (or its call count) is the ground truth; kspan's summary must
//! account for every call that did not arrive.

mod common;

use kspan_e2e::judge_dir;

fn assert_passed(verdict: &kspan_e2e::Verdict) {
    assert!(verdict.passed(), "{verdict}");
}

/// 16 threads × 10,000 calls: every span matches its own call (thread, order, arguments,
/// result, time window), with no cross-thread mix-ups and nothing lost.
#[tokio::test(flavor = "multi_thread")]
async fn sixteen_threads_of_ten_thousand_calls_each_match_exactly() {
    let workload = common::scenarios(&[
        "--scenario",
        "threads",
        "--threads",
        "16",
        "--calls",
        "10000",
    ]);
    // 160,000 calls are exported after the workload ends; on a busy machine that takes longer
    // than the default 5 s stop deadline (which has tests of its own): this run judges exactness.
    let config = common::config("threads-16x10000", workload, &["--shutdown-timeout", "50s"]);
    common::run(&config).await;
    let verdict = judge_dir(&config.out_dir).expect("judge");
    assert_eq!(verdict.expected, 160_000);
    assert_passed(&verdict);
}
