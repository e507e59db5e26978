//! Against collectors that misbehave on purpose (`kspan_receiver::hostile`): one that never
//! answers, one whose answer never ends or is huge, one that answers too late.

use kspan_receiver::{
    hostile::{HostileCollector, HostileStats, Hostility},
    Transport,
};

use super::outage_tests::{read, sink_to, submit, wait_until, PATIENCE};
use super::*;
use kspan_decode::test_support::sample_call;

use crate::ExportSnapshot;

pub(super) fn transport(protocol: Protocol) -> Transport {
    match protocol {
        Protocol::Grpc => Transport::Grpc,
        Protocol::HttpProtobuf => Transport::Http,
    }
}

/// One batch of `calls` calls, closed only when full, so the requests a test expects do not
/// depend on how fast the machine submits.
pub(super) fn one_batch_of(calls: usize) -> PipelineConfig {
    PipelineConfig {
        max_batch: calls,
        flush_interval: PATIENCE,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        ..PipelineConfig::default()
    }
}

pub(super) async fn collector(protocol: Protocol, hostility: Hostility) -> HostileCollector {
    HostileCollector::start(
        transport(protocol),
        "127.0.0.1:0".parse().unwrap(),
        hostility,
    )
    .await
    .unwrap()
}

/// A collector that accepts connections and never answers, 12,000 calls waiting: the stop
/// ends at its deadline (plus a margin for a loaded machine), far sooner than the requests'
/// own 10 s timeouts would let it (3 rounds of 4 batches: 30 s before the deadline existed),
/// and every call is counted lost at the stop.
async fn a_silent_collector_cannot_hold_the_stop(protocol: Protocol) {
    const CALLS: u64 = 12_000;
    let silent = collector(protocol, Hostility::Silent).await;
    let sink = sink_to(silent.endpoint(), protocol, Duration::from_secs(10));
    let pipeline = Pipeline::start(sink, PipelineConfig::default()).unwrap();
    submit(&pipeline, 0..CALLS as u32);
    let stats = pipeline.stats();
    wait_until("every call taken from the queue, requests waiting", || {
        stats.snapshot().queued == 0 && HostileStats::get(&silent.stats().connections) > 0
    })
    .await;
    let allowed = Duration::from_secs(2);
    let margin = Duration::from_secs(10);
    let stop = Instant::now();
    pipeline.shutdown(stop + allowed).await;
    let took = stop.elapsed();
    assert!(
        took < allowed + margin,
        "the stop took {took:?} with a deadline of {allowed:?}"
    );
    assert_eq!(
        stats.snapshot(),
        ExportSnapshot {
            accepted: CALLS,
            spans_lost_at_stop: CALLS,
            logs_lost_at_stop: CALLS,
            ..ExportSnapshot::default()
        }
    );
    println!("stop against a silent collector, {CALLS} calls waiting: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_silent_collector_stop_is_bounded_by_the_deadline() {
    a_silent_collector_cannot_hold_the_stop(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_silent_collector_stop_is_bounded_by_the_deadline() {
    a_silent_collector_cannot_hold_the_stop(Protocol::HttpProtobuf).await;
}

/// The most a client may have taken of one hostile answer: the cap, plus what the sockets on
/// both ends buffer before the client closes the connection (loopback buffers grow to a few
/// MiB). An exporter reading the whole body takes gigabytes within its request timeout.
const TAKEN_PER_ANSWER: u64 = 48 << 20;

/// A `200 OK` whose body never ends, or is 100 MB: reading stops at the cap, the request is
/// counted as delivered by its status, and the collector could push no more than the
/// sockets hold.
async fn an_endless_or_huge_body_is_not_read(hostility: Hostility) {
    let hostile = collector(Protocol::HttpProtobuf, hostility).await;
    let sink = sink_to(
        hostile.endpoint(),
        Protocol::HttpProtobuf,
        Duration::from_secs(30),
    );
    let pipeline = Pipeline::start(sink, one_batch_of(100)).unwrap();
    submit(&pipeline, 0..100);
    let stats = pipeline.stats();
    pipeline.shutdown(Instant::now() + PATIENCE).await;
    assert_eq!(
        stats.snapshot(),
        ExportSnapshot {
            accepted: 100,
            spans_exported: 100,
            logs_exported: 100,
            ..ExportSnapshot::default()
        }
    );
    let server = hostile.stats();
    let (requests, written) = (
        HostileStats::get(&server.requests),
        HostileStats::get(&server.body_bytes_written),
    );
    assert_eq!(requests, 2, "one request for spans, one for logs");
    assert!(
        written <= requests * TAKEN_PER_ANSWER,
        "the client took {written} bytes of {requests} answers"
    );
    println!("{hostility:?}: {written} body bytes written for {requests} answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_http_body_is_read_no_further_than_the_cap() {
    an_endless_or_huge_body_is_not_read(Hostility::EndlessBody).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_http_body_is_read_no_further_than_the_cap() {
    an_endless_or_huge_body_is_not_read(Hostility::HugeBody(100_000_000)).await;
}

/// gRPC refuses a response over its 4 MiB limit by the message's length prefix (counted as a
/// failed request), and takes one of 1 MiB from the same collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_a_response_over_4_mib() {
    let calls = [sample_call()];
    let mut outcomes = Vec::new();
    for bytes in [1 << 20, 5 << 20] {
        let hostile = collector(Protocol::Grpc, Hostility::HugeBody(bytes)).await;
        let sink = sink_to(hostile.endpoint(), Protocol::Grpc, Duration::from_secs(30));
        let spans_only = Wanted {
            spans: true,
            logs: false,
        };
        let (spans, _) = sink.export(&calls, spans_only).await;
        outcomes.push((bytes, spans.expect("spans were wanted")));
    }
    assert_eq!(outcomes[0], (1 << 20, Ok(0)));
    let (_, refused) = &outcomes[1];
    let failure = refused.as_ref().expect_err("a 5 MiB answer was taken");
    assert_eq!(failure.kind, FailureKind::Retryable, "{failure}");
    assert!(
        failure.message.contains("message length too large"),
        "{failure}"
    );
}

/// A collector that takes each request but answers after the client's timeout: the calls
/// are retried (at least once), and when the stop comes before any answer they are counted
/// as possibly delivered, not lost. Before, they were counted failed while the collector
/// held them.
async fn unanswered_calls_are_possibly_delivered(protocol: Protocol) {
    let late = collector(
        protocol,
        Hostility::LateAnswer {
            delay: Duration::from_secs(3600),
            late: u64::MAX,
        },
    )
    .await;
    let sink = sink_to(late.endpoint(), protocol, Duration::from_millis(300));
    let pipeline = Pipeline::start(sink, one_batch_of(50)).unwrap();
    submit(&pipeline, 0..50);
    let stats = pipeline.stats();
    let server = late.stats();
    // Both signals were received twice: sent, unanswered, and sent again.
    wait_until("every call received twice", || {
        HostileStats::get(&server.spans) >= 100 && HostileStats::get(&server.logs) >= 100
    })
    .await;
    wait_until("a timed-out request", || read(&stats.export_errors) >= 1).await;
    pipeline
        .shutdown(Instant::now() + Duration::from_millis(100))
        .await;
    assert_eq!(
        stats.snapshot(),
        ExportSnapshot {
            accepted: 50,
            spans_possibly_delivered: 50,
            logs_possibly_delivered: 50,
            export_errors: stats.snapshot().export_errors,
            ..ExportSnapshot::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unanswered_calls_are_possibly_delivered_not_lost() {
    unanswered_calls_are_possibly_delivered(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_unanswered_calls_are_possibly_delivered_not_lost() {
    unanswered_calls_are_possibly_delivered(Protocol::HttpProtobuf).await;
}

/// The first attempt (spans and logs) goes unanswered, the retry is acknowledged: each call is
/// counted once, as exported, though the collector holds it twice (delivery is at least once).
async fn a_retried_batch_is_counted_once(protocol: Protocol) {
    let late = collector(
        protocol,
        Hostility::LateAnswer {
            delay: Duration::from_secs(3600),
            late: 2,
        },
    )
    .await;
    let sink = sink_to(late.endpoint(), protocol, Duration::from_millis(300));
    let pipeline = Pipeline::start(sink, one_batch_of(50)).unwrap();
    submit(&pipeline, 0..50);
    let stats = pipeline.stats();
    pipeline.shutdown(Instant::now() + PATIENCE).await;
    let snapshot = stats.snapshot();
    assert_eq!(
        snapshot,
        ExportSnapshot {
            accepted: 50,
            spans_exported: 50,
            logs_exported: 50,
            export_errors: snapshot.export_errors,
            ..ExportSnapshot::default()
        }
    );
    assert!(snapshot.export_errors >= 1, "{snapshot:?}");
    let server = late.stats();
    assert_eq!(
        (
            HostileStats::get(&server.spans),
            HostileStats::get(&server.logs)
        ),
        (100, 100),
        "the collector holds each call twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_retried_batch_is_counted_once() {
    a_retried_batch_is_counted_once(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_retried_batch_is_counted_once() {
    a_retried_batch_is_counted_once(Protocol::HttpProtobuf).await;
}
