//! The same export requests as [`CallEncoder`](crate::CallEncoder) writes, built the ordinary
//! way through `opentelemetry-proto`'s prost structs: the oracle the hand-written encoder is
//! checked against field for field, and the baseline its speed is measured beside.

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
    trace::v1::{span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status},
};

use kspan_decode::{flag_names, ArgValue, Call, CallDetail, CgroupLookup};

use crate::{
    ids::TraceGrouping,
    resource::{ResourcePer, Resources},
    wire::{key_value, unix_nanos},
};

/// Builds requests with prost structs, under the same resources, scope and trace grouping as
/// the encoder it is compared with.
pub struct ProstBaseline {
    grouping: TraceGrouping,
    resources: Resources,
    scope: InstrumentationScope,
}

impl ProstBaseline {
    /// A baseline for an encoder made with the same arguments.
    pub fn new(
        grouping: TraceGrouping,
        resources: &Resources,
        scope: &InstrumentationScope,
    ) -> Self {
        Self {
            grouping,
            resources: resources.clone(),
            scope: scope.clone(),
        }
    }

    /// One span per call, grouped under resources as the encoder groups them.
    pub fn traces_request(&self, calls: &[Call]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: self
                .groups(calls)
                .into_iter()
                .map(|(resource, calls)| ResourceSpans {
                    resource: Some(resource),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(self.scope.clone()),
                        spans: calls.into_iter().map(|call| self.span(call)).collect(),
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                })
                .collect(),
        }
    }

    /// One log record per call, observed at `observed` (ns since the UNIX epoch).
    pub fn logs_request(&self, calls: &[Call], observed: u64) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: self
                .groups(calls)
                .into_iter()
                .map(|(resource, calls)| ResourceLogs {
                    resource: Some(resource),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(self.scope.clone()),
                        log_records: calls
                            .into_iter()
                            .map(|call| self.log_record(call, observed))
                            .collect(),
                        ..ScopeLogs::default()
                    }],
                    ..ResourceLogs::default()
                })
                .collect(),
        }
    }

    /// The calls under each resource: all under kspan's, or per process ordered by (pid,
    /// process name, cgroup id), each group in the order the calls came.
    fn groups<'a>(&self, calls: &'a [Call]) -> Vec<(Resource, Vec<&'a Call>)> {
        match self.resources.per() {
            ResourcePer::Host => vec![(self.resources.agent(), calls.iter().collect())],
            ResourcePer::Process => {
                let key = |call: &&'a Call| (call.pid, call.process_name.clone(), call.cgroup_id);
                let mut sorted: Vec<&Call> = calls.iter().collect();
                sorted.sort_by_key(key);
                sorted
                    .chunk_by(|a, b| key(a) == key(b))
                    .map(|group| (self.process_resource(group[0]), group.to_vec()))
                    .collect()
            }
        }
    }

    fn process_resource(&self, call: &Call) -> Resource {
        let mut attributes = self.resources.shared().to_vec();
        let name = &call.process_name;
        attributes.push(text("service.name", self.resources.service_name(name)));
        attributes.push(int("process.pid", call.pid.into()));
        attributes.push(text("process.executable.name", name));
        let details = call.process_details.as_deref();
        if let Some(path) = details.and_then(|d| d.executable_path.as_deref()) {
            attributes.push(text("process.executable.path", path));
        }
        if let Some(line) = details.and_then(|d| d.command_line.as_deref()) {
            attributes.push(text("process.command_line", line));
        }
        let cgroup = call.cgroup.as_deref().and_then(CgroupLookup::cgroup);
        if let Some(identity) = cgroup.map(|cgroup| &cgroup.identity) {
            if let Some(id) = &identity.container_id {
                attributes.push(text("container.id", id));
            }
            if let Some(runtime) = identity.runtime {
                attributes.push(text("container.runtime.name", runtime.name()));
            }
            if let Some(uid) = &identity.pod_uid {
                attributes.push(text("k8s.pod.uid", uid));
            }
        }
        Resource {
            attributes,
            ..Resource::default()
        }
    }

    fn span(&self, call: &Call) -> Span {
        let ids = self.grouping.ids(call);
        Span {
            trace_id: ids.trace.to_bytes().to_vec(),
            span_id: ids.span.to_bytes().to_vec(),
            parent_span_id: ids
                .parent
                .map_or_else(Vec::new, |parent| parent.to_bytes().to_vec()),
            name: call.name().to_string(),
            kind: SpanKind::Internal.into(),
            start_time_unix_nano: unix_nanos(call.start),
            end_time_unix_nano: unix_nanos(call.end),
            attributes: attributes(call),
            status: call.error().map(|errno| Status {
                message: errno.into_owned(),
                code: StatusCode::Error.into(),
            }),
            // W3C sampled: every call is recorded.
            flags: 1,
            ..Span::default()
        }
    }

    fn log_record(&self, call: &Call, observed: u64) -> LogRecord {
        let ids = self.grouping.ids(call);
        let failed = call.error().is_some();
        let severity = if failed {
            SeverityNumber::Warn
        } else {
            SeverityNumber::Info
        };
        LogRecord {
            time_unix_nano: unix_nanos(call.end),
            observed_time_unix_nano: observed,
            severity_number: severity.into(),
            severity_text: if failed { "WARN" } else { "INFO" }.to_string(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(call.summary().to_string())),
            }),
            attributes: attributes(call),
            flags: 1,
            trace_id: ids.trace.to_bytes().to_vec(),
            span_id: ids.span.to_bytes().to_vec(),
            event_name: call.event_name().to_string(),
            ..LogRecord::default()
        }
    }
}

/// The call's attributes, shared by its span and log record (the README's attribute table).
fn attributes(call: &Call) -> Vec<KeyValue> {
    let mut attributes = vec![
        int("process.pid", call.pid.into()),
        int("thread.id", call.tid.into()),
        text("thread.name", &call.thread_name),
        text("process.executable.name", &call.process_name),
        int("process.user.id", call.euid.into()),
        int("process.real_user.id", call.uid.into()),
    ];
    match &call.detail {
        CallDetail::Signalfd(call) => attributes.extend([
            int("signalfd.ufd", call.ufd.into()),
            text("signalfd.operation", call.operation()),
            int("signalfd.flags", call.flags.into()),
            texts("signalfd.flags.names", flag_names(call.flags)),
            text("signalfd.mask", &call.mask.to_string()),
            texts("signalfd.mask.signals", call.mask.names()),
            text("signalfd.mask.source", call.mask_source_name()),
        ]),
        CallDetail::Declared(call) => {
            for (argument, value) in call.probe.arguments.iter().zip(&call.values) {
                let key = &argument.attribute;
                match value {
                    ArgValue::Int(value) => {
                        attributes.push(int(key, *value));
                        if let Some(decoder) = argument.decoder {
                            let names = decoder.names(*value).into_iter();
                            attributes.push(texts(&format!("{key}.names"), names));
                        }
                    }
                    ArgValue::String {
                        text: value,
                        truncated,
                    } => {
                        attributes.push(text(key, value));
                        if *truncated {
                            attributes.push(boolean(&format!("{key}.truncated")));
                        }
                    }
                    ArgValue::Unreadable => {
                        attributes.push(boolean(&format!("{key}.unreadable")));
                    }
                }
            }
        }
    }
    attributes.push(text("kspan.probe", call.probe_name()));
    attributes.push(int("kspan.cgroup.id", call.cgroup_id as i64));
    if let Some(lookup) = call.cgroup.as_deref() {
        match (lookup.cgroup(), lookup.unresolved_reason()) {
            (Some(cgroup), _) => attributes.push(text("kspan.cgroup.path", &cgroup.path)),
            (None, Some(reason)) => attributes.push(text("kspan.cgroup.unresolved", reason)),
            (None, None) => {}
        }
    }
    match (&call.detail, call.error()) {
        (_, Some(errno)) => attributes.push(text("error.type", &errno)),
        (CallDetail::Signalfd(call), None) => {
            attributes.extend(call.fd().map(|fd| int("signalfd.fd", fd.into())));
        }
        (CallDetail::Declared(call), None) => {
            let key = &call.probe.result_attribute;
            attributes.extend(call.result_value().map(|value| int(key, value)));
        }
    }
    attributes
}

/// A `true` flag attribute.
fn boolean(key: &str) -> KeyValue {
    key_value(key, Value::BoolValue(true))
}

fn int(key: &str, value: i64) -> KeyValue {
    key_value(key, Value::IntValue(value))
}

fn text(key: &str, value: &str) -> KeyValue {
    key_value(key, Value::StringValue(value.to_string()))
}

fn texts(key: &str, values: impl Iterator<Item = impl AsRef<str>>) -> KeyValue {
    let values = values
        .map(|value| AnyValue {
            value: Some(Value::StringValue(value.as_ref().to_string())),
        })
        .collect();
    key_value(key, Value::ArrayValue(ArrayValue { values }))
}
