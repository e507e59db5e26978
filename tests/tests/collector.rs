//! Through a real OpenTelemetry collector, as root: kspan → rotel (installed by `cargo xtask
//! setup`) over gRPC or HTTP/protobuf → OTLP/gRPC → the receiver. The judge passes unchanged,
//! and kspan's health metrics arrive with its summary's figures. A collector that takes no
//! metrics costs one warning, and not one span or log record.

mod common;

use kspan_e2e::{artifacts, health_mismatches, judge_dir, CaptureConfig, Destination, Transport};

fn through_rotel(
    name: &str,
    transport: Transport,
    accepts_metrics: bool,
    workload: &[&str],
) -> CaptureConfig {
    let mut config = common::config(name, common::scenarios(workload), &[]);
    config.destination = Destination::Rotel {
        transport,
        accepts_metrics,
    };
    config
}

/// Every call arrives exactly, and so do the health figures.
async fn every_call_and_health_figure_arrives(name: &str, transport: Transport) {
    let config = through_rotel(name, transport, true, &[]);
    common::run(&config).await;
    let verdict = judge_dir(&config.out_dir)
        .unwrap_or_else(|error| panic!("cannot judge {}: {error:#}", config.out_dir.display()));
    common::assert_exact(&verdict);
    let health = health_mismatches(&config.out_dir).expect("health metrics readable");
    assert!(
        health.is_empty(),
        "kspan's health metrics through rotel:\n  {}",
        health.join("\n  ")
    );
    let warnings = health_warnings(&config);
    assert!(warnings.is_empty(), "{warnings:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_and_health_figure_arrives_through_rotel_over_grpc() {
    every_call_and_health_figure_arrives("rotel-grpc", Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_and_health_figure_arrives_through_rotel_over_http() {
    every_call_and_health_figure_arrives("rotel-http", Transport::Http).await;
}

/// rotel without its metrics receiver, as a Collector whose config has no metrics pipeline:
/// over 2 s of calls and 20 metric intervals of 100 ms kspan warns once, naming the answer
/// (`answer`), and every call still arrives as span and log record.
async fn a_collector_without_metrics_costs_one_warning(
    name: &str,
    transport: Transport,
    answer: &str,
) {
    let mut config = through_rotel(
        name,
        transport,
        false,
        &["--rate", "150", "--duration", "2"],
    );
    config.kspan_env = vec![("OTEL_METRIC_EXPORT_INTERVAL".into(), "100".into())];
    common::run(&config).await;
    let verdict = judge_dir(&config.out_dir)
        .unwrap_or_else(|error| panic!("cannot judge {}: {error:#}", config.out_dir.display()));
    common::assert_exact(&verdict);
    let warnings = health_warnings(&config);
    assert_eq!(
        warnings.len(),
        1,
        "one warning about health metrics, got {warnings:#?}"
    );
    assert!(
        warnings[0].contains("health metrics export refused: they are off for this run")
            && warnings[0].contains(answer),
        "the warning says health metrics are off and names the answer ({answer}): {}",
        warnings[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_without_metrics_costs_one_warning_over_grpc() {
    a_collector_without_metrics_costs_one_warning(
        "rotel-no-metrics-grpc",
        Transport::Grpc,
        "Unimplemented",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_without_metrics_costs_one_warning_over_http() {
    a_collector_without_metrics_costs_one_warning(
        "rotel-no-metrics-http",
        Transport::Http,
        "HTTP 404",
    )
    .await;
}

/// kspan's warnings about its health metrics, one per line of its log.
fn health_warnings(config: &CaptureConfig) -> Vec<String> {
    let log =
        std::fs::read_to_string(config.out_dir.join(artifacts::KSPAN_LOG)).expect("kspan's log");
    log.lines()
        .filter(|line| line.contains(" WARN ") && line.contains("health metric"))
        .map(String::from)
        .collect()
}
