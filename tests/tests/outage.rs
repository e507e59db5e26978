//! A collector outage of 30 s in the middle of a run, on this host, as root: kspan keeps
//! running, buffers what it captured and delivers it when the collector is back. Delivered
//! plus counted-as-dropped must equal the calls made, exactly (here: nothing is dropped).

mod common;

use std::time::Duration;

use kspan_e2e::{judge_dir, Outage};

#[tokio::test(flavor = "multi_thread")]
async fn calls_made_during_a_collector_outage_arrive_after_it() {
    let workload =
        common::scenarios(&["--scenario", "random", "--rate", "1000", "--duration", "40"]);
    let mut config = common::config("collector-outage", workload, &[]);
    config.receiver_outage = Some(Outage {
        after: Duration::from_secs(5),
        length: Duration::from_secs(30),
    });
    common::run(&config).await;
    let verdict = judge_dir(&config.out_dir).expect("judge");
    // Paced calls for 40 s around a 30 s outage: on a loaded machine the workload makes fewer
    // than its 40,000, but still calls throughout the outage.
    assert!(
        verdict.expected >= 1_000,
        "only {} calls were made",
        verdict.expected
    );
    assert!(verdict.passed(), "{verdict}");
    let log =
        std::fs::read_to_string(config.out_dir.join(kspan_e2e::artifacts::KSPAN_LOG)).unwrap();
    assert!(
        log.contains("export failed; keeping the calls for retry"),
        "the outage was not noticed:\n{log}"
    );
    assert!(
        log.contains("export recovered"),
        "no recovery was logged:\n{log}"
    );
}
