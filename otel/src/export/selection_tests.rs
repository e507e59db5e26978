//! `OTEL_TRACES_EXPORTER=none` / `OTEL_LOGS_EXPORTER=none`: the signal turned off never reaches
//! the collector (no request, nothing counted for it), the other is delivered whole.

use kspan_receiver::{Receiver, ReceiverConfig};

use super::outage_tests::{free_port, sink_of, submit, PATIENCE};
use super::*;

use crate::ExportSnapshot;

async fn only(protocol: Protocol, traces: bool, logs: bool) {
    const CALLS: u64 = 300;
    let addr = free_port();
    let config = match protocol {
        Protocol::Grpc => ReceiverConfig {
            grpc_addr: Some(addr),
            ..ReceiverConfig::default()
        },
        Protocol::HttpProtobuf => ReceiverConfig {
            http_addr: Some(addr),
            ..ReceiverConfig::default()
        },
    };
    let receiver = Receiver::start(config).await.unwrap();
    let selection = SignalSelection {
        traces,
        logs,
        ..SignalSelection::ALL
    };
    let sink = sink_of(
        format!("http://{addr}"),
        protocol,
        Duration::from_secs(10),
        selection,
    );
    let pipeline = Pipeline::start(sink, PipelineConfig::default()).unwrap();
    submit(&pipeline, 0..CALLS as u32);
    let stats = pipeline.stats();
    pipeline.shutdown(Instant::now() + PATIENCE).await;
    let count = |on: bool| if on { CALLS } else { 0 };
    assert_eq!(
        stats.snapshot(),
        ExportSnapshot {
            accepted: CALLS,
            spans_exported: count(traces),
            logs_exported: count(logs),
            ..ExportSnapshot::default()
        }
    );
    let received = receiver.store().stats();
    assert_eq!(
        (received.spans as u64, received.logs as u64),
        (count(traces), count(logs)),
        "traces {traces}, logs {logs}"
    );
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_logs_off_only_spans_are_sent() {
    only(Protocol::Grpc, true, false).await;
    only(Protocol::HttpProtobuf, true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_traces_off_only_log_records_are_sent() {
    only(Protocol::Grpc, false, true).await;
    only(Protocol::HttpProtobuf, false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_both_off_calls_are_counted_and_nothing_is_sent() {
    only(Protocol::Grpc, false, false).await;
}
