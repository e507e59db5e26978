//! Against a real OTLP receiver that is down at first and comes up later. The tests wait for
//! events (requests refused, counters moving), never for a time an idle machine would need.

use std::{
    net::{SocketAddr, TcpListener},
    sync::atomic::AtomicU64,
};

use kspan_receiver::{Receiver, ReceiverConfig};

use super::*;
use kspan_decode::test_support::sample_call;

use crate::{
    ids::TraceGrouping,
    resource::{HostInfo, ResourcePer, Resources},
    ExportSnapshot,
};

/// How long a test waits for an event before it fails: enough for a loaded 2-core machine.
pub(super) const PATIENCE: Duration = Duration::from_secs(60);

pub(super) fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// An OTLP sink to `endpoint` with a per-request `timeout`.
pub(super) fn sink_to(endpoint: String, protocol: Protocol, timeout: Duration) -> Sink {
    sink_of(endpoint, protocol, timeout, SignalSelection::ALL)
}

/// An OTLP sink to `endpoint` sending the `selection`'s signals.
pub(super) fn sink_of(
    endpoint: String,
    protocol: Protocol,
    timeout: Duration,
    selection: SignalSelection,
) -> Sink {
    let config = OtlpConfig {
        protocol: Some(protocol),
        endpoint: Some(endpoint),
        headers: vec![],
        ca_certificate: None,
        timeout: Some(timeout),
        env: crate::Env::fixed::<&str, &str>([]),
    };
    let host = HostInfo {
        host_name: "test".into(),
        host_id: None,
        kernel_release: "6.0".into(),
        os_name: None,
    };
    let resources = Resources::new(&host, ResourcePer::Process, "test".into(), vec![], None);
    let grouping = TraceGrouping::new("boot", Duration::from_secs(60));
    Sink::Otlp(Box::new(
        OtlpSink::new(&config, selection, &resources, grouping).unwrap(),
    ))
}

fn sink(addr: SocketAddr, protocol: Protocol) -> Sink {
    sink_to(format!("http://{addr}"), protocol, Duration::from_secs(2))
}

/// Submits calls with thread ids `tids`.
pub(super) fn submit(pipeline: &Pipeline, tids: std::ops::Range<u32>) {
    for tid in tids {
        pipeline.submit(vec![Call {
            tid,
            ..sample_call()
        }]);
    }
}

/// Polls `condition` until it holds; fails after [`PATIENCE`], saying what it waited for.
pub(super) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads a counter.
pub(super) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn receiver_config(addr: SocketAddr, protocol: Protocol) -> ReceiverConfig {
    match protocol {
        Protocol::Grpc => ReceiverConfig {
            grpc_addr: Some(addr),
            ..ReceiverConfig::default()
        },
        Protocol::HttpProtobuf => ReceiverConfig {
            http_addr: Some(addr),
            ..ReceiverConfig::default()
        },
    }
}

/// The counters once every one of `calls` calls was delivered, nothing lost.
fn all_delivered(calls: u64, export_errors: u64) -> ExportSnapshot {
    ExportSnapshot {
        accepted: calls,
        spans_exported: calls,
        logs_exported: calls,
        export_errors,
        ..ExportSnapshot::default()
    }
}

async fn survives_an_outage(protocol: Protocol) {
    let addr = free_port();
    let config = PipelineConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        flush_interval: Duration::from_millis(20),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(sink(addr, protocol), config).unwrap();
    submit(&pipeline, 0..300);
    let stats = pipeline.stats();
    // Exports fail against the closed port, and are retried.
    wait_until("two failed exports", || read(&stats.export_errors) >= 2).await;
    assert_eq!(stats.snapshot().spans_exported, 0);
    let receiver = Receiver::start(receiver_config(addr, protocol))
        .await
        .unwrap();
    submit(&pipeline, 300..600);
    pipeline.shutdown(Instant::now() + PATIENCE).await;
    let snapshot = stats.snapshot();
    assert_eq!(
        snapshot,
        all_delivered(600, snapshot.export_errors),
        "expected every call delivered"
    );
    let received = receiver.store().stats();
    assert_eq!((received.spans, received.logs), (600, 600));
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_backlog_is_delivered_after_an_outage() {
    survives_an_outage(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backlog_is_delivered_after_an_outage() {
    survives_an_outage(Protocol::HttpProtobuf).await;
}

/// The collector comes back only after the stop has begun (a collector restart, then the
/// agent's stop, as in a rolling node update): the final flush keeps retrying the backlog and
/// delivers all of it before the deadline. Before, the flush tried each batch once and counted
/// it failed.
async fn the_final_flush_waits_for_the_collector(protocol: Protocol) {
    let addr = free_port();
    let config = PipelineConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        flush_interval: Duration::from_millis(20),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(sink(addr, protocol), config).unwrap();
    submit(&pipeline, 0..300);
    let stats = pipeline.stats();
    wait_until("a failed export", || read(&stats.export_errors) >= 1).await;
    let errors_before_the_stop = read(&stats.export_errors);
    let flush = tokio::spawn(pipeline.shutdown(Instant::now() + PATIENCE));
    // The flush itself fails at least once while the collector is still down.
    wait_until("a failed export during the final flush", || {
        read(&stats.export_errors) > errors_before_the_stop
    })
    .await;
    assert!(
        !flush.is_finished(),
        "the flush gave up: {:?}",
        stats.snapshot()
    );
    let receiver = Receiver::start(receiver_config(addr, protocol))
        .await
        .unwrap();
    flush.await.unwrap();
    let snapshot = stats.snapshot();
    assert_eq!(
        snapshot,
        all_delivered(300, snapshot.export_errors),
        "expected every call delivered"
    );
    let received = receiver.store().stats();
    assert_eq!((received.spans, received.logs), (300, 300));
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_final_flush_delivers_once_the_collector_is_back() {
    the_final_flush_waits_for_the_collector(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_final_flush_delivers_once_the_collector_is_back() {
    the_final_flush_waits_for_the_collector(Protocol::HttpProtobuf).await;
}

/// A collector that stays down: what the backlog still holds at the deadline is lost at stop,
/// named as such; what was pushed out of the full backlog before is failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_backlog_are_failed_and_the_rest_lost_at_the_stop() {
    let config = PipelineConfig {
        backlog_capacity: 100,
        max_batch: 50,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        flush_interval: Duration::from_millis(5),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(sink(free_port(), Protocol::Grpc), config).unwrap();
    submit(&pipeline, 0..500);
    let stats = pipeline.stats();
    wait_until("every call moved into the backlog", || {
        stats.snapshot().queued == 0 && read(&stats.spans_failed) >= 400
    })
    .await;
    pipeline
        .shutdown(Instant::now() + Duration::from_millis(300))
        .await;
    let snapshot = stats.snapshot();
    let lost_at_stop = snapshot.spans_lost_at_stop;
    assert_eq!(
        snapshot,
        ExportSnapshot {
            accepted: 500,
            spans_failed: 500 - lost_at_stop,
            logs_failed: 500 - lost_at_stop,
            spans_lost_at_stop: lost_at_stop,
            logs_lost_at_stop: lost_at_stop,
            export_errors: snapshot.export_errors,
            ..ExportSnapshot::default()
        }
    );
    // The backlog held 100 calls when the stop came: those are the ones lost at the stop.
    assert_eq!(lost_at_stop, 100, "{snapshot:?}");
}
