//! Calls straight to OTLP protobuf bytes: the span and log record of each call are written field
//! by field into one buffer per request, with no message structs and no per-attribute
//! allocations in between (building `opentelemetry-proto` structs cost ~8 µs per call, most of
//! it malloc). Tests decode the bytes with prost and check every field.
//! The attribute names here are kspan's interface (see the README's attribute table); those in
//! an OpenTelemetry namespace are the semantic-conventions crate's constants.

use std::{fmt::Write as _, time::SystemTime};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_semantic_conventions::attribute;
use prost::{encoding::encoded_len_varint, Message};

use kspan_decode::{cgroup::ContainerIdentity, flag_names, Call, CgroupLookup};

use crate::{
    ids::{CallIds, TraceGrouping},
    resource::{ResourcePer, Resources},
};

/// Event name of the log record emitted for each call.
pub const LOG_EVENT_NAME: &str = "signalfd.call";

/// W3C trace flags: sampled (every call is recorded).
const SAMPLED: u32 = 1;

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

/// Field numbers, from opentelemetry-proto's `.proto` files.
mod field {
    pub const REQUEST_RESOURCE_ITEMS: u32 = 1; // resource_spans / resource_logs
    pub const RESOURCE: u32 = 1;
    pub const RESOURCE_ATTRIBUTES: u32 = 1;
    pub const SCOPE_ITEMS: u32 = 2; // scope_spans / scope_logs
    pub const SCOPE: u32 = 1;
    pub const ITEMS: u32 = 2; // spans / log_records

    pub const SPAN_TRACE_ID: u32 = 1;
    pub const SPAN_SPAN_ID: u32 = 2;
    pub const SPAN_NAME: u32 = 5;
    pub const SPAN_KIND: u32 = 6;
    pub const SPAN_START: u32 = 7;
    pub const SPAN_END: u32 = 8;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const SPAN_STATUS: u32 = 15;
    pub const SPAN_FLAGS: u32 = 16;
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;

    pub const LOG_TIME: u32 = 1;
    pub const LOG_SEVERITY_NUMBER: u32 = 2;
    pub const LOG_SEVERITY_TEXT: u32 = 3;
    pub const LOG_BODY: u32 = 5;
    pub const LOG_ATTRIBUTES: u32 = 6;
    pub const LOG_FLAGS: u32 = 8;
    pub const LOG_TRACE_ID: u32 = 9;
    pub const LOG_SPAN_ID: u32 = 10;
    pub const LOG_OBSERVED_TIME: u32 = 11;
    pub const LOG_EVENT_NAME: u32 = 12;

    pub const KEY_VALUE_KEY: u32 = 1;
    pub const KEY_VALUE_VALUE: u32 = 2;
    pub const ANY_STRING: u32 = 1;
    pub const ANY_INT: u32 = 3;
    pub const ANY_ARRAY: u32 = 5;
    pub const ARRAY_VALUES: u32 = 1;
}

/// `SPAN_KIND_INTERNAL`, `STATUS_CODE_ERROR`, `SEVERITY_NUMBER_INFO`, `SEVERITY_NUMBER_WARN`.
const SPAN_KIND_INTERNAL: u64 = 1;
const STATUS_CODE_ERROR: u64 = 2;
const SEVERITY_INFO: u64 = 9;
const SEVERITY_WARN: u64 = 13;

/// About what one span or log record takes: its length varint then needs two bytes, as it does
/// for 128 to 16,383 bytes.
const ITEM_BYTES: usize = 640;

/// Writes export requests for batches of calls, each under its resource and kspan's scope.
#[derive(Clone)]
pub struct CallEncoder {
    grouping: TraceGrouping,
    resources: Resources,
    /// kspan's own resource, encoded: every call's with [`ResourcePer::Host`].
    agent_resource: Vec<u8>,
    /// The attributes every process's resource shares, encoded as `Resource.attributes` items.
    shared_attributes: Vec<u8>,
    scope: Vec<u8>,
}

impl CallEncoder {
    /// Encodes what every request repeats once: the scope and the resources' shared part.
    pub fn new(
        grouping: TraceGrouping,
        resources: &Resources,
        scope: &InstrumentationScope,
    ) -> Self {
        let mut shared_attributes = Vec::new();
        for attribute in resources.shared() {
            bytes(
                &mut shared_attributes,
                field::RESOURCE_ATTRIBUTES,
                &attribute.encode_to_vec(),
            );
        }
        Self {
            grouping,
            resources: resources.clone(),
            agent_resource: resources.agent().encode_to_vec(),
            shared_attributes,
            scope: scope.encode_to_vec(),
        }
    }

    /// An `ExportTraceServiceRequest` with one span per call.
    pub fn traces_request(&self, calls: &[Call]) -> Vec<u8> {
        self.request(calls, |buf, call| self.span(buf, call))
    }

    /// An `ExportLogsServiceRequest` with one log record per call.
    pub fn logs_request(&self, calls: &[Call]) -> Vec<u8> {
        let observed = unix_nanos(SystemTime::now());
        self.request(calls, |buf, call| self.log_record(buf, call, observed))
    }

    /// Trace and logs requests share their shape: per resource, the resource, then the scope,
    /// then the items. With a resource per process, calls are grouped by process, each group
    /// in the order the calls came.
    fn request(&self, calls: &[Call], item: impl Fn(&mut Vec<u8>, &Call)) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256 + calls.len() * ITEM_BYTES);
        match self.resources.per() {
            ResourcePer::Host => {
                let resource =
                    |buf: &mut Vec<u8>| bytes(buf, field::RESOURCE, &self.agent_resource);
                self.resource_items(&mut buf, resource, calls.iter(), &item);
            }
            ResourcePer::Process => {
                // By name: a process whose name could not be read (it had exited) is
                // named by each calling thread, and each span must sit under its own name.
                // By cgroup too: the container and pod are the process's, and a process moved
                // to another cgroup is then described by each in turn.
                fn process<'a>(call: &&'a Call) -> (u32, &'a str, u64) {
                    (call.pid, &call.process_name, call.cgroup_id)
                }
                let mut by_process: Vec<&Call> = calls.iter().collect();
                by_process.sort_by(|a, b| process(a).cmp(&process(b)));
                for group in by_process.chunk_by(|a, b| process(a) == process(b)) {
                    let resource = |buf: &mut Vec<u8>| self.process_resource(buf, group[0]);
                    self.resource_items(&mut buf, resource, group.iter().copied(), &item);
                }
            }
        }
        buf
    }

    /// One `ResourceSpans` or `ResourceLogs`: the resource, then the scope and its items.
    fn resource_items<'a>(
        &self,
        buf: &mut Vec<u8>,
        resource: impl FnOnce(&mut Vec<u8>),
        calls: impl ExactSizeIterator<Item = &'a Call>,
        item: &impl Fn(&mut Vec<u8>, &Call),
    ) {
        let expected = 256 + self.shared_attributes.len() + calls.len() * ITEM_BYTES;
        sized_message(buf, field::REQUEST_RESOURCE_ITEMS, expected, |buf| {
            resource(buf);
            sized_message(buf, field::SCOPE_ITEMS, expected, |buf| {
                bytes(buf, field::SCOPE, &self.scope);
                for call in calls {
                    sized_message(buf, field::ITEMS, ITEM_BYTES, |buf| item(buf, call));
                }
            });
        });
    }

    /// The resource of the process that made `call`: the shared attributes, then its own.
    fn process_resource(&self, buf: &mut Vec<u8>, call: &Call) {
        let expected = self.shared_attributes.len() + 128;
        sized_message(buf, field::RESOURCE, expected, |buf| {
            buf.extend_from_slice(&self.shared_attributes);
            let name = &call.process_name;
            let attributes = field::RESOURCE_ATTRIBUTES;
            string_attribute(
                buf,
                attributes,
                attribute::SERVICE_NAME,
                self.resources.service_name(name),
            );
            int_attribute(buf, attributes, attribute::PROCESS_PID, call.pid.into());
            string_attribute(buf, attributes, attribute::PROCESS_EXECUTABLE_NAME, name);
            let details = call.process_details.as_deref();
            if let Some(path) = details.and_then(|d| d.executable_path.as_deref()) {
                string_attribute(buf, attributes, attribute::PROCESS_EXECUTABLE_PATH, path);
            }
            if let Some(line) = details.and_then(|d| d.command_line.as_deref()) {
                string_attribute(buf, attributes, attribute::PROCESS_COMMAND_LINE, line);
            }
            let cgroup = call.cgroup.as_deref().and_then(CgroupLookup::cgroup);
            if let Some(identity) = cgroup.map(|cgroup| &cgroup.identity) {
                container_attributes(buf, attributes, identity);
            }
        });
    }

    /// The call's span: INTERNAL, timed by the kernel, ERROR with the errno name on failure.
    fn span(&self, buf: &mut Vec<u8>, call: &Call) {
        let ids = self.grouping.ids(call);
        bytes(buf, field::SPAN_TRACE_ID, &ids.trace.to_bytes());
        bytes(buf, field::SPAN_SPAN_ID, &ids.span.to_bytes());
        bytes(buf, field::SPAN_NAME, call.name().as_bytes());
        varint(buf, field::SPAN_KIND, SPAN_KIND_INTERNAL);
        fixed64(buf, field::SPAN_START, unix_nanos(call.start));
        fixed64(buf, field::SPAN_END, unix_nanos(call.end));
        call_attributes(buf, field::SPAN_ATTRIBUTES, call);
        if let Some(errno) = call.error() {
            message(buf, field::SPAN_STATUS, |buf| {
                bytes(buf, field::STATUS_MESSAGE, errno.as_bytes());
                varint(buf, field::STATUS_CODE, STATUS_CODE_ERROR);
            });
        }
        fixed32(buf, field::SPAN_FLAGS, SAMPLED);
    }

    /// The call's log record, in the same trace and span: INFO on success, WARN on error.
    fn log_record(&self, buf: &mut Vec<u8>, call: &Call, observed: u64) {
        let (severity, text) = match call.fd() {
            Some(_) => (SEVERITY_INFO, "INFO"),
            None => (SEVERITY_WARN, "WARN"),
        };
        fixed64(buf, field::LOG_TIME, unix_nanos(call.end));
        varint(buf, field::LOG_SEVERITY_NUMBER, severity);
        bytes(buf, field::LOG_SEVERITY_TEXT, text.as_bytes());
        message(buf, field::LOG_BODY, |buf| {
            message(buf, field::ANY_STRING, |buf| {
                // Writing to a Vec cannot fail.
                let _ = write!(Utf8(buf), "{}", call.summary());
            });
        });
        call_attributes(buf, field::LOG_ATTRIBUTES, call);
        fixed32(buf, field::LOG_FLAGS, SAMPLED);
        let CallIds { trace, span } = self.grouping.ids(call);
        bytes(buf, field::LOG_TRACE_ID, &trace.to_bytes());
        bytes(buf, field::LOG_SPAN_ID, &span.to_bytes());
        fixed64(buf, field::LOG_OBSERVED_TIME, observed);
        bytes(buf, field::LOG_EVENT_NAME, LOG_EVENT_NAME.as_bytes());
    }
}

/// The attributes shared by a call's span and log record, each as a repeated `field`.
fn call_attributes(buf: &mut Vec<u8>, field: u32, call: &Call) {
    int_attribute(buf, field, attribute::PROCESS_PID, call.pid.into());
    int_attribute(buf, field, attribute::THREAD_ID, call.tid.into());
    string_attribute(buf, field, attribute::THREAD_NAME, &call.thread_name);
    string_attribute(
        buf,
        field,
        attribute::PROCESS_EXECUTABLE_NAME,
        &call.process_name,
    );
    int_attribute(buf, field, attribute::PROCESS_USER_ID, call.euid.into());
    int_attribute(buf, field, attribute::PROCESS_REAL_USER_ID, call.uid.into());
    int_attribute(buf, field, "signalfd.ufd", call.ufd.into());
    string_attribute(buf, field, "signalfd.operation", call.operation());
    int_attribute(buf, field, "signalfd.flags", call.flags.into());
    strings_attribute(buf, field, "signalfd.flags.names", flag_names(call.flags));
    let mut mask = [0u8; 18];
    string_attribute(
        buf,
        field,
        "signalfd.mask",
        mask_hex(call.mask.0, &mut mask),
    );
    strings_attribute(buf, field, "signalfd.mask.signals", call.mask.names());
    string_attribute(buf, field, "signalfd.mask.source", call.mask_source_name());
    string_attribute(buf, field, "kspan.probe", call.probe_name());
    int_attribute(buf, field, "kspan.cgroup.id", call.cgroup_id as i64);
    if let Some(lookup) = call.cgroup.as_deref() {
        match (lookup.cgroup(), lookup.unresolved_reason()) {
            (Some(cgroup), _) => string_attribute(buf, field, "kspan.cgroup.path", &cgroup.path),
            (None, Some(reason)) => string_attribute(buf, field, "kspan.cgroup.unresolved", reason),
            (None, None) => {}
        }
    }
    match (call.fd(), call.error()) {
        (Some(fd), _) => int_attribute(buf, field, "signalfd.fd", fd.into()),
        (None, Some(errno)) => string_attribute(buf, field, attribute::ERROR_TYPE, &errno),
        (None, None) => {}
    }
}

/// The container and pod a process runs in, on its resource (semantic conventions' names).
fn container_attributes(buf: &mut Vec<u8>, field: u32, identity: &ContainerIdentity) {
    if let Some(id) = &identity.container_id {
        string_attribute(buf, field, "container.id", id);
    }
    if let Some(runtime) = identity.runtime {
        string_attribute(buf, field, "container.runtime.name", runtime.name());
    }
    if let Some(uid) = &identity.pod_uid {
        string_attribute(buf, field, "k8s.pod.uid", uid);
    }
}

fn int_attribute(buf: &mut Vec<u8>, field: u32, key: &str, value: i64) {
    attribute(buf, field, key, |buf| {
        varint(buf, field::ANY_INT, value as u64)
    });
}

fn string_attribute(buf: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    attribute(buf, field, key, |buf| {
        bytes(buf, field::ANY_STRING, value.as_bytes())
    });
}

fn strings_attribute(
    buf: &mut Vec<u8>,
    field: u32,
    key: &str,
    values: impl Iterator<Item = impl AsRef<str>>,
) {
    attribute(buf, field, key, |buf| {
        message(buf, field::ANY_ARRAY, |buf| {
            for value in values {
                message(buf, field::ARRAY_VALUES, |buf| {
                    bytes(buf, field::ANY_STRING, value.as_ref().as_bytes());
                });
            }
        });
    });
}

/// Text written with `write!` straight into a request.
struct Utf8<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

fn mask_hex(mask: u64, out: &mut [u8; 18]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out[..2].copy_from_slice(b"0x");
    for (i, digit) in out[2..].iter_mut().enumerate() {
        *digit = DIGITS[((mask >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Only ASCII digits were written.
    std::str::from_utf8(out).unwrap_or_default()
}

fn attribute(buf: &mut Vec<u8>, field: u32, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
    message(buf, field, |buf| {
        bytes(buf, field::KEY_VALUE_KEY, key.as_bytes());
        message(buf, field::KEY_VALUE_VALUE, value);
    });
}

fn key(buf: &mut Vec<u8>, field: u32, wire_type: u32) {
    push_varint(buf, u64::from(field << 3 | wire_type));
}

fn varint(buf: &mut Vec<u8>, field: u32, value: u64) {
    key(buf, field, VARINT);
    push_varint(buf, value);
}

/// A protobuf varint, pushed byte by byte (prost's generic `encode_varint` goes through
/// `BufMut`; this is most of what a request's keys and lengths cost).
#[inline]
fn push_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    key(buf, field, FIXED64);
    buf.extend_from_slice(&value.to_le_bytes());
}

fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    key(buf, field, FIXED32);
    buf.extend_from_slice(&value.to_le_bytes());
}

fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(buf, field, LENGTH_DELIMITED);
    push_varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

/// A nested message, written in place after a one-byte length, which fits the small ones
/// (attributes, values); a body of 128 bytes or more is moved up to make room for its length.
fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(buf, field, LENGTH_DELIMITED);
    let length_at = buf.len();
    buf.push(0);
    let start = buf.len();
    body(buf);
    let length = buf.len() - start;
    if length < 0x80 {
        buf[length_at] = length as u8;
        return;
    }
    fit_length(buf, length_at, 1, length);
}

/// A nested message written in place: room is left for the length varint of a body of about
/// `expected` bytes, and the body is moved only when its length needs a varint of another size.
fn sized_message(buf: &mut Vec<u8>, field: u32, expected: usize, body: impl FnOnce(&mut Vec<u8>)) {
    key(buf, field, LENGTH_DELIMITED);
    let length_at = buf.len();
    let reserved = encoded_len_varint(expected as u64);
    buf.resize(length_at + reserved, 0);
    let start = buf.len();
    body(buf);
    fit_length(buf, length_at, reserved, buf.len() - start);
}

/// Writes the length of the `length`-byte body that follows `reserved` bytes at `length_at`,
/// moving the body if the varint needs another number of bytes.
fn fit_length(buf: &mut Vec<u8>, length_at: usize, reserved: usize, length: usize) {
    let start = length_at + reserved;
    let size = encoded_len_varint(length as u64);
    if size != reserved {
        if size > reserved {
            buf.resize(buf.len() + size - reserved, 0);
        }
        buf.copy_within(start..start + length, length_at + size);
        buf.truncate(length_at + size + length);
    }
    let mut length = length as u64;
    for byte in &mut buf[length_at..length_at + size] {
        // Every byte but the last has the continuation bit set.
        *byte = length as u8 & 0x7f | if length >= 0x80 { 0x80 } else { 0 };
        length >>= 7;
    }
}

/// An OTLP key-value pair, for the few messages built as structs (resource, metrics).
pub fn key_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// Nanoseconds since the UNIX epoch (0 before it, which the kernel clock cannot produce).
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry_proto::tonic::{
        collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
        common::v1::ArrayValue,
        logs::v1::{LogRecord, SeverityNumber},
        trace::v1::{span::SpanKind, status::StatusCode, Span, Status},
    };

    use super::*;
    use kspan_decode::test_support::sample_call;

    fn encoder_per(per: ResourcePer) -> CallEncoder {
        let host = crate::HostInfo {
            host_name: "node-1".into(),
            host_id: None,
            kernel_release: "6.1.0".into(),
            os_name: None,
        };
        let resources = Resources::new(&host, per, "instance-1".into(), vec![], None);
        let scope = InstrumentationScope {
            name: "kspan".into(),
            ..InstrumentationScope::default()
        };
        CallEncoder::new(
            TraceGrouping::new("boot", Duration::from_secs(60)),
            &resources,
            &scope,
        )
    }

    fn encoder() -> CallEncoder {
        encoder_per(ResourcePer::Host)
    }

    fn spans(calls: &[Call]) -> (ExportTraceServiceRequest, Vec<Span>) {
        let bytes = encoder().traces_request(calls);
        let request = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("valid protobuf");
        let spans = request.resource_spans[0].scope_spans[0].spans.clone();
        (request, spans)
    }

    fn logs(calls: &[Call]) -> Vec<LogRecord> {
        let bytes = encoder().logs_request(calls);
        let request = ExportLogsServiceRequest::decode(bytes.as_slice()).expect("valid protobuf");
        request.resource_logs[0].scope_logs[0].log_records.clone()
    }

    fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn text(value: &str) -> any_value::Value {
        any_value::Value::StringValue(value.to_string())
    }

    fn texts(values: &[&str]) -> any_value::Value {
        any_value::Value::ArrayValue(ArrayValue {
            values: values
                .iter()
                .map(|value| AnyValue {
                    value: Some(text(value)),
                })
                .collect(),
        })
    }

    #[test]
    fn request_carries_resource_scope_and_every_call() {
        // 100 spans: the containers' lengths need three-byte varints.
        let calls = vec![sample_call(); 100];
        let (request, spans) = spans(&calls);
        let resource_spans = &request.resource_spans[0];
        assert_eq!(
            attribute(
                &resource_spans.resource.as_ref().unwrap().attributes,
                "service.name"
            ),
            Some(&text("kspan"))
        );
        assert_eq!(
            resource_spans.scope_spans[0].scope.as_ref().unwrap().name,
            "kspan"
        );
        assert_eq!(spans.len(), 100);
        assert!(spans.iter().all(|span| span.name == "signalfd4"));
    }

    #[test]
    fn the_container_and_pod_go_on_the_process_resource_and_the_cgroup_path_on_the_span() {
        use kspan_decode::cgroup::{Cgroup, ContainerRuntime};
        use std::sync::Arc;
        let id = "ab".repeat(32);
        let uid = "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809";
        let in_container = Arc::new(CgroupLookup::Found(Cgroup {
            path: format!("/kubepods/pod{uid}/crio-{id}"),
            identity: ContainerIdentity {
                container_id: Some(id.clone()),
                runtime: Some(ContainerRuntime::CriO),
                pod_uid: Some(uid.to_string()),
            },
        }));
        let on_host = Arc::new(CgroupLookup::Found(Cgroup {
            path: "/system.slice/cron.service".into(),
            identity: ContainerIdentity::default(),
        }));
        let call = |cgroup_id: u64, cgroup: &Arc<CgroupLookup>| Call {
            cgroup_id,
            cgroup: Some(cgroup.clone()),
            ..sample_call()
        };
        // One process moved from the host into a container, and a call whose cgroup was gone.
        let calls = [
            call(40, &on_host),
            call(41, &in_container),
            call(42, &Arc::new(CgroupLookup::NotFound)),
        ];
        let request = ExportTraceServiceRequest::decode(
            encoder_per(ResourcePer::Process)
                .traces_request(&calls)
                .as_slice(),
        )
        .unwrap();
        let keys = [
            "container.id",
            "container.runtime.name",
            "k8s.pod.uid",
            "kspan.cgroup.id",
            "kspan.cgroup.path",
            "kspan.cgroup.unresolved",
        ];
        let seen: Vec<(Vec<String>, Vec<String>)> = request
            .resource_spans
            .iter()
            .map(|r| {
                let shown = |attributes: &[KeyValue]| {
                    keys.iter()
                        .filter_map(|key| Some(format!("{key}={:?}", attribute(attributes, key)?)))
                        .collect::<Vec<_>>()
                };
                let resource = shown(&r.resource.as_ref().unwrap().attributes);
                assert_eq!(r.scope_spans[0].spans.len(), 1);
                (resource, shown(&r.scope_spans[0].spans[0].attributes))
            })
            .collect();
        let strings = |items: &[String]| items.to_vec();
        assert_eq!(
            seen,
            [
                (
                    vec![],
                    strings(&[
                        "kspan.cgroup.id=IntValue(40)".into(),
                        format!("kspan.cgroup.path={:?}", text("/system.slice/cron.service")),
                    ])
                ),
                (
                    strings(&[
                        format!("container.id={:?}", text(&id)),
                        format!("container.runtime.name={:?}", text("cri-o")),
                        format!("k8s.pod.uid={:?}", text(uid)),
                    ]),
                    strings(&[
                        "kspan.cgroup.id=IntValue(41)".into(),
                        format!(
                            "kspan.cgroup.path={:?}",
                            text(&format!("/kubepods/pod{uid}/crio-{id}"))
                        ),
                    ])
                ),
                (
                    vec![],
                    strings(&[
                        "kspan.cgroup.id=IntValue(42)".into(),
                        format!("kspan.cgroup.unresolved={:?}", text("not_found")),
                    ])
                ),
            ]
        );
    }

    #[test]
    fn a_resource_per_process_groups_the_calls_in_their_order() {
        let call = |pid: u32, name: &str, ufd: i32| {
            let mut call = sample_call();
            call.pid = pid;
            call.process_name = name.to_string();
            call.ufd = ufd;
            call
        };
        // Interleaved, and with a batch long enough for multi-byte lengths everywhere.
        let mut calls = Vec::new();
        for ufd in 0..60 {
            calls.push(call(30, "nginx", ufd));
            calls.push(call(7, "sshd", ufd));
        }
        calls.push(call(30, "nginx", 60));
        let encoder = encoder_per(ResourcePer::Process);
        let traces =
            ExportTraceServiceRequest::decode(encoder.traces_request(&calls).as_slice()).unwrap();
        let logs =
            ExportLogsServiceRequest::decode(encoder.logs_request(&calls).as_slice()).unwrap();
        let resource = |attributes: &[KeyValue]| {
            [
                "service.name",
                "process.pid",
                "process.executable.name",
                "host.name",
                "telemetry.distro.name",
            ]
            .map(|key| format!("{:?}", attribute(attributes, key)))
            .join(" ")
        };
        let by_resource: Vec<(String, Vec<i64>)> = traces
            .resource_spans
            .iter()
            .map(|r| {
                let ufds = r.scope_spans[0]
                    .spans
                    .iter()
                    .map(|span| match attribute(&span.attributes, "signalfd.ufd") {
                        Some(any_value::Value::IntValue(ufd)) => *ufd,
                        other => panic!("ufd {other:?}"),
                    })
                    .collect();
                (resource(&r.resource.as_ref().unwrap().attributes), ufds)
            })
            .collect();
        let process = |pid: i64, name: &str| {
            format!(
                "{:?} {:?} {:?} {:?} {:?}",
                Some(text(name)),
                Some(any_value::Value::IntValue(pid)),
                Some(text(name)),
                Some(text("node-1")),
                Some(text("kspan"))
            )
        };
        assert_eq!(
            by_resource,
            [
                (process(7, "sshd"), (0..60).collect()),
                (process(30, "nginx"), (0..61).collect()),
            ]
        );
        let log_groups: Vec<(String, usize)> = logs
            .resource_logs
            .iter()
            .map(|r| {
                (
                    resource(&r.resource.as_ref().unwrap().attributes),
                    r.scope_logs[0].log_records.len(),
                )
            })
            .collect();
        assert_eq!(
            log_groups,
            [(process(7, "sshd"), 60), (process(30, "nginx"), 61)]
        );
    }

    #[test]
    fn successful_call_span() {
        let call = sample_call();
        let span = spans(std::slice::from_ref(&call)).1.remove(0);
        assert_eq!(span.name, "signalfd4");
        assert_eq!(span.kind, i32::from(SpanKind::Internal));
        assert_eq!(span.flags, SAMPLED);
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (unix_nanos(call.start), unix_nanos(call.end))
        );
        assert_eq!(span.status, None);
        let attrs = &span.attributes;
        let int = |value| Some(any_value::Value::IntValue(value));
        assert_eq!(attribute(attrs, "process.pid").cloned(), int(100));
        assert_eq!(attribute(attrs, "thread.id").cloned(), int(101));
        assert_eq!(attribute(attrs, "thread.name"), Some(&text("worker")));
        assert_eq!(attribute(attrs, "signalfd.ufd").cloned(), int(-1));
        assert_eq!(attribute(attrs, "signalfd.fd").cloned(), int(5));
        assert_eq!(attribute(attrs, "error.type"), None);
        assert_eq!(
            attribute(attrs, "signalfd.operation"),
            Some(&text("create"))
        );
        assert_eq!(
            attribute(attrs, "signalfd.mask"),
            Some(&text("0x0000000000000202"))
        );
        assert_eq!(
            attribute(attrs, "signalfd.mask.signals"),
            Some(&texts(&["SIGINT", "SIGUSR1"]))
        );
        assert_eq!(
            attribute(attrs, "signalfd.flags.names"),
            Some(&texts(&["SFD_CLOEXEC"]))
        );
        assert_eq!(attribute(attrs, "kspan.probe"), Some(&text("tracepoint")));
    }

    #[test]
    fn failed_call_span_is_an_error_without_fd() {
        let call = Call {
            ret: -libc::EBADF,
            ufd: 42,
            flags: 0,
            ..sample_call()
        };
        let span = spans(&[call]).1.remove(0);
        assert_eq!(
            span.status,
            Some(Status {
                message: "EBADF".into(),
                code: StatusCode::Error.into()
            })
        );
        assert_eq!(
            attribute(&span.attributes, "error.type"),
            Some(&text("EBADF"))
        );
        assert_eq!(attribute(&span.attributes, "signalfd.fd"), None);
        assert_eq!(
            attribute(&span.attributes, "signalfd.flags.names"),
            Some(&texts(&[]))
        );
    }

    #[test]
    fn the_user_id_is_the_effective_one_and_the_real_one_is_apart() {
        let call = Call {
            uid: 1000,
            euid: 0,
            ..sample_call()
        };
        let span = spans(&[call]).1.remove(0);
        let int = |value| Some(any_value::Value::IntValue(value));
        assert_eq!(
            attribute(&span.attributes, "process.user.id").cloned(),
            int(0)
        );
        assert_eq!(
            attribute(&span.attributes, "process.real_user.id").cloned(),
            int(1000)
        );
    }

    #[test]
    fn log_record_shares_the_span_ids() {
        let call = Call {
            ret: -libc::EINVAL,
            ..sample_call()
        };
        let record = logs(std::slice::from_ref(&call)).remove(0);
        let span = spans(&[call]).1.remove(0);
        assert_eq!(record.trace_id, span.trace_id);
        assert_eq!(record.span_id, span.span_id);
        assert_eq!((record.trace_id.len(), record.span_id.len()), (16, 8));
        assert_eq!(record.severity_number, i32::from(SeverityNumber::Warn));
        assert_eq!(record.severity_text, "WARN");
        assert_eq!(record.event_name, LOG_EVENT_NAME);
        assert_eq!(record.time_unix_nano, span.end_time_unix_nano);
        assert!(record.observed_time_unix_nano > 0);
        assert_eq!(
            record.body.and_then(|body| body.value),
            Some(text(
                "signalfd4(ufd=-1, mask=[SIGINT,SIGUSR1], flags=SFD_CLOEXEC) = -1 EINVAL"
            ))
        );
        assert_eq!(record.attributes, span.attributes);
    }

    proptest::proptest! {
        /// Any call encodes to protobuf that decodes back to the same values.
        #[test]
        fn any_call_round_trips(mask: u64, flags: i32, ufd: i32, ret: i32, cgroup_id: u64, pid: u32) {
            let call = Call { mask: kspan_decode::SignalMask(mask), flags, ufd, ret, cgroup_id, pid, ..sample_call() };
            let span = spans(std::slice::from_ref(&call)).1.remove(0);
            let attrs = &span.attributes;
            proptest::prop_assert_eq!(attribute(attrs, "signalfd.mask"), Some(&text(&call.mask.to_string())));
            proptest::prop_assert_eq!(attribute(attrs, "signalfd.mask.signals"), Some(&texts(&call.mask.names().collect::<Vec<_>>())));
            proptest::prop_assert_eq!(attribute(attrs, "kspan.cgroup.id").cloned(), Some(any_value::Value::IntValue(cgroup_id as i64)));
            proptest::prop_assert_eq!(attribute(attrs, "signalfd.ufd").cloned(), Some(any_value::Value::IntValue(ufd.into())));
            proptest::prop_assert_eq!(attribute(attrs, "process.pid").cloned(), Some(any_value::Value::IntValue(pid.into())));
            proptest::prop_assert_eq!(span.status.is_some(), ret < 0);
        }
    }
}
