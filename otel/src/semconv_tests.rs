//! Every attribute kspan emits in an OpenTelemetry namespace is one the semantic conventions
//! define, spelled as the `opentelemetry-semantic-conventions` crate spells it: a misspelled or
//! outdated name fails here, and a name the crate drops fails the build.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{InstrumentationScope, KeyValue},
    metrics::v1::metric,
};
use opentelemetry_semantic_conventions::attribute;
use prost::Message as _;

use kspan_decode::{
    test_support::{sample_call, sample_declared_call, with_signalfd},
    Call, ProcessDetails,
};

use crate::{
    counters::Snapshot, ids::TraceGrouping, wire::CallEncoder, HostInfo, ResourcePer, Resources,
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
const CONVENTIONAL: [&str; 19] = [
    attribute::PROCESS_PID,
    attribute::PROCESS_EXECUTABLE_NAME,
    attribute::PROCESS_EXECUTABLE_PATH,
    attribute::PROCESS_COMMAND_LINE,
    attribute::PROCESS_USER_ID,
    attribute::PROCESS_REAL_USER_ID,
    attribute::THREAD_ID,
    attribute::THREAD_NAME,
    attribute::ERROR_TYPE,
    attribute::SERVICE_NAME,
    attribute::SERVICE_INSTANCE_ID,
    attribute::HOST_NAME,
    attribute::HOST_ID,
    attribute::HOST_ARCH,
    attribute::OS_TYPE,
    attribute::OS_NAME,
    attribute::OS_VERSION,
    attribute::TELEMETRY_DISTRO_NAME,
    attribute::TELEMETRY_DISTRO_VERSION,
];

/// Every attribute key in kspan's output: the resources (per process with every detail, and
/// kspan's own), the spans and log records of a successful and a failed call, and the health
/// metrics' points.
fn emitted_keys() -> BTreeSet<String> {
    let host = HostInfo {
        host_name: "node-1".into(),
        host_id: Some("0123abcd".into()),
        kernel_release: "6.1.0".into(),
        os_name: Some("Debian GNU/Linux".into()),
    };
    let details = ProcessDetails {
        executable_path: Some("/usr/bin/app".into()),
        command_line: Some("app --flag".into()),
    };
    let calls = [
        Call {
            process_details: Some(Arc::new(details)),
            ..sample_call()
        },
        with_signalfd(|call| call.ret = -libc::EINVAL),
        sample_declared_call(),
    ];
    let mut keys = BTreeSet::new();
    let mut add = |attributes: &[KeyValue]| keys.extend(attributes.iter().map(|kv| kv.key.clone()));
    for per in [ResourcePer::Process, ResourcePer::Host] {
        let resources = Resources::new(&host, per, "instance-1".into(), vec![], None);
        add(&resources.agent().attributes);
        let encoder = CallEncoder::new(
            TraceGrouping::new("boot", Duration::from_secs(60)),
            &resources,
            &InstrumentationScope::default(),
        );
        let traces = ExportTraceServiceRequest::decode(encoder.traces_request(&calls).as_slice())
            .expect("valid protobuf");
        for resource_spans in &traces.resource_spans {
            add(&resource_spans
                .resource
                .clone()
                .unwrap_or_default()
                .attributes);
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                add(&span.attributes);
            }
        }
        let logs = ExportLogsServiceRequest::decode(encoder.logs_request(&calls).as_slice())
            .expect("valid protobuf");
        for resource_logs in &logs.resource_logs {
            add(&resource_logs
                .resource
                .clone()
                .unwrap_or_default()
                .attributes);
            for record in resource_logs.scope_logs.iter().flat_map(|s| &s.log_records) {
                add(&record.attributes);
            }
        }
    }
    let now = std::time::SystemTime::now();
    for metric in Snapshot::default().to_metrics(now, now) {
        let points: Vec<_> = match metric.data {
            Some(metric::Data::Sum(sum)) => sum.data_points,
            Some(metric::Data::Gauge(gauge)) => gauge.data_points,
            _ => Vec::new(),
        };
        for point in points {
            add(&point.attributes);
        }
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
    // kspan's own attributes stay in its own namespaces; a declared probe's are named by its
    // declaration (by default under the probe's name: `openat.` for the sample).
    let foreign: Vec<_> = emitted
        .iter()
        .filter(|key| !standard.contains(key.as_str()))
        .filter(|key| {
            !["signalfd.", "kspan.", "openat."]
                .iter()
                .any(|ns| key.starts_with(ns))
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "outside kspan's namespaces: {foreign:?}"
    );
}
