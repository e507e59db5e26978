//! End to end on this host, as root: the workload's calls must arrive as exactly matching
//! spans and logs, over gRPC and over HTTP. kspan picks its probe itself (`auto`).

mod common;

use kspan_e2e::{judge_dir, Destination, Transport, Verdict};

async fn capture(name: &str, transport: Transport, kspan_args: &[&str]) -> Verdict {
    let mut config = common::config(name, common::scenarios(&[]), kspan_args);
    config.destination = Destination::Receiver(transport);
    common::run(&config).await;
    judge_dir(&config.out_dir)
        .unwrap_or_else(|error| panic!("cannot judge {}: {error:#}", config.out_dir.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_arrives_over_grpc() {
    common::assert_exact(&capture("grpc", Transport::Grpc, &[]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_arrives_over_http() {
    common::assert_exact(&capture("http", Transport::Http, &[]).await);
}

/// The check must fail when capture is broken: here a comm filter no thread matches.
#[tokio::test(flavor = "multi_thread")]
async fn broken_capture_is_detected() {
    let verdict = capture("broken", Transport::Grpc, &["--comm", "no-such-thread"]).await;
    assert!(
        !verdict.passed(),
        "a run that captured nothing passed the check"
    );
    assert_eq!(verdict.spans, 0);
    assert!(
        verdict
            .mismatches
            .iter()
            .any(|m| m.contains("spans received")),
        "{:?}",
        verdict.mismatches
    );
}
