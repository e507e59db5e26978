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
    let mut config = common::config("overload", workload, &["--ring-buffer-bytes", "4096"]);
    config.kspan_env = vec![("OTEL_METRIC_EXPORT_INTERVAL".into(), "200".into())];
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

    // The same figures reach the collector as kspan's health metrics: periodically, and at exit.
    let health = store.metrics_requests();
    assert!(
        health.len() >= 2,
        "expected periodic health exports and a final one, got {} requests",
        health.len()
    );
    let last = health.last().expect("a final health export");
    let calls_captured: i64 = points(last, "kspan.calls.captured")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        calls_captured as u64,
        summary["calls_read"].as_u64().expect("calls_read"),
        "kspan.calls.captured vs the summary: {summary}"
    );
    let lost_by_stage = points(last, "kspan.calls.lost");
    assert_eq!(
        lost_by_stage.iter().map(|(_, v)| v).sum::<i64>() as u64,
        lost,
        "kspan.calls.lost {lost_by_stage:?} vs the summary: {summary}"
    );
    assert!(
        lost_by_stage.iter().any(|(stage, v)| stage == "ring_buffer"
            && *v as u64 == summary["kernel"]["ring_buffer_full"].as_u64().unwrap_or(0)),
        "ring-buffer losses by stage {lost_by_stage:?} vs the summary: {summary}"
    );
}

/// A metric's data points in one export: (first attribute's string value, value).
fn points(
    request: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    name: &str,
) -> Vec<(String, i64)> {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
    let metric = request
        .resource_metrics
        .iter()
        .flat_map(|resource| &resource.scope_metrics)
        .flat_map(|scope| &scope.metrics)
        .find(|metric| metric.name == name)
        .unwrap_or_else(|| panic!("no {name} in the health export"));
    let data_points = match &metric.data {
        Some(Data::Sum(sum)) => &sum.data_points,
        Some(Data::Gauge(gauge)) => &gauge.data_points,
        other => panic!("{name}: unexpected data {other:?}"),
    };
    data_points
        .iter()
        .map(|point| {
            let label = point
                .attributes
                .first()
                .and_then(|kv| kspan_receiver::inspect::as_str(kv.value.as_ref()?))
                .unwrap_or_default()
                .to_string();
            match point.value {
                Some(Value::AsInt(value)) => (label, value),
                other => panic!("{name}: not an integer point: {other:?}"),
            }
        })
        .collect()
}
