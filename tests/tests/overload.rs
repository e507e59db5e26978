//! Overload on this host, as root (its own test binary: it saturates the CPU on purpose).

mod common;

use kspan_e2e::{artifacts, Workload};

fn summary(dir: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(artifacts::SUMMARY)).expect("kspan's summary");
    serde_json::from_str(&text).expect("summary JSON")
}

/// A ring buffer of one page and the tight benchmark loop: kspan must lose calls, and its lost
/// counter must equal calls made minus spans received, exactly.
#[tokio::test(flavor = "multi_thread")]
async fn overload_losses_are_counted_exactly() {
    let updates = 300_000;
    let workload = Workload::Bench { calls: updates };
    let config = common::config("overload", workload, &["--ring-buffer-bytes", "4096"]);
    common::run(&config).await;
    let summary = summary(&config.out_dir);
    let store = kspan_receiver::Store::read_jsonl(&config.out_dir.join(artifacts::RECEIVED))
        .expect("received");
    let received = store.stats();
    let made = updates + 1; // the bench loop creates its signalfd with one more call
    let lost = summary["lost"].as_u64().expect("lost");
    assert!(
        summary["kernel"]["ring_buffer_full"].as_u64() > Some(0),
        "no overload happened: {summary}"
    );
    assert_eq!(
        received.spans as u64 + lost,
        made,
        "spans {} + lost {lost} != calls made {made}: {summary}",
        received.spans
    );
    assert_eq!(
        received.logs, received.spans,
        "every received span has its log"
    );
}
