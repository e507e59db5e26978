//! Every attribute kspan emits in an OpenTelemetry namespace is one the semantic conventions
//! define, spelled as the `opentelemetry-semantic-conventions` crate spells it: a misspelled or
//! outdated name fails here, and a name the crate drops fails the build.

use std::{collections::BTreeSet, time::Duration};

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::InstrumentationScope,
    metrics::v1::metric,
    resource::v1::Resource,
};
use opentelemetry_semantic_conventions::attribute;
use prost::Message as _;

use kspan_decode::{test_support::sample_call, Call};

use crate::{
    agent_resource,
    health::{Health, LossStage},
    ids::TraceGrouping,
    wire::CallEncoder,
    HostInfo,
};

/// The namespaces OpenTelemetry's semantic conventions own.
const STANDARD_NAMESPACES: [&str; 9] = [
    "process.",
    "thread.",
    "host.",
    "os.",
    "service.",
    "container.",
    "k8s.",
    "error.",
    "telemetry.",
];

/// What kspan emits in those namespaces, named by the crate's constants.
const CONVENTIONAL: [&str; 15] = [
    attribute::PROCESS_PID,
    attribute::PROCESS_EXECUTABLE_NAME,
    attribute::PROCESS_USER_ID,
    attribute::PROCESS_REAL_USER_ID,
    attribute::THREAD_ID,
    attribute::THREAD_NAME,
    attribute::ERROR_TYPE,
    attribute::SERVICE_NAME,
    attribute::SERVICE_VERSION,
    attribute::HOST_NAME,
    attribute::OS_TYPE,
    attribute::OS_VERSION,
    attribute::TELEMETRY_SDK_NAME,
    attribute::TELEMETRY_SDK_LANGUAGE,
    attribute::TELEMETRY_SDK_VERSION,
];

/// Every attribute key in kspan's output: the resource, the spans and log records of a
/// successful and a failed call, and the health metrics' points.
fn emitted_keys() -> BTreeSet<String> {
    let host = HostInfo {
        host_name: "test".into(),
        kernel_release: "6.0".into(),
    };
    let resource = agent_resource(&host).expect("the test's environment sets no OTEL_* variable");
    let mut keys: BTreeSet<String> = resource.iter().map(|(key, _)| key.to_string()).collect();
    let encoder = CallEncoder::new(
        TraceGrouping::new("boot", Duration::from_secs(60)),
        &Resource::default(),
        &InstrumentationScope::default(),
    );
    let calls = [
        sample_call(),
        Call {
            ret: -libc::EINVAL,
            ..sample_call()
        },
    ];
    let traces = ExportTraceServiceRequest::decode(encoder.traces_request(&calls).as_slice())
        .expect("valid protobuf");
    let logs = ExportLogsServiceRequest::decode(encoder.logs_request(&calls).as_slice())
        .expect("valid protobuf");
    let span_keys = traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .flat_map(|span| &span.attributes);
    let log_keys = logs
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .flat_map(|record| &record.attributes);
    keys.extend(span_keys.chain(log_keys).map(|kv| kv.key.clone()));
    let health = Health {
        lost: vec![(LossStage::Export, 1)],
        ..Health::default()
    };
    let now = std::time::SystemTime::now();
    for metric in health.to_metrics(now, now) {
        let points: Vec<_> = match metric.data {
            Some(metric::Data::Sum(sum)) => sum.data_points,
            Some(metric::Data::Gauge(gauge)) => gauge.data_points,
            _ => Vec::new(),
        };
        keys.extend(
            points
                .iter()
                .flat_map(|point| &point.attributes)
                .map(|kv| kv.key.clone()),
        );
    }
    keys
}

#[test]
fn every_attribute_in_a_standard_namespace_is_a_semantic_convention() {
    let emitted = emitted_keys();
    let standard: BTreeSet<&str> = emitted
        .iter()
        .map(String::as_str)
        .filter(|key| STANDARD_NAMESPACES.iter().any(|ns| key.starts_with(ns)))
        .collect();
    let conventional: BTreeSet<&str> = CONVENTIONAL.into_iter().collect();
    let unknown: Vec<_> = standard.difference(&conventional).collect();
    assert!(
        unknown.is_empty(),
        "emitted in a standard namespace but not a semantic convention kspan uses: {unknown:?}"
    );
    // The list holds exactly what is emitted, so it cannot keep a name kspan no longer sends.
    let unused: Vec<_> = conventional.difference(&standard).collect();
    assert!(unused.is_empty(), "listed but never emitted: {unused:?}");
    // kspan's own attributes stay in its own namespaces.
    let foreign: Vec<_> = emitted
        .iter()
        .filter(|key| !standard.contains(key.as_str()))
        .filter(|key| !["signalfd.", "kspan."].iter().any(|ns| key.starts_with(ns)))
        .collect();
    assert!(
        foreign.is_empty(),
        "outside kspan's namespaces: {foreign:?}"
    );
}
