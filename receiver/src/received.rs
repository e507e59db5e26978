//! What the receiver received: whole export requests, and spans and log records flattened out of
//! them together with their resource and scope.

use crate::inspect::{self, hex_id};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

/// How many span attributes [`ReceivedSpan::summary`] shows before it says how many it left out.
const SUMMARY_ATTRIBUTES: usize = 6;

/// The OTLP transport a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP (protobuf or JSON body).
    Http,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Grpc => "gRPC",
            Transport::Http => "HTTP",
        })
    }
}

/// The OTLP signal an export request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metrics.
    Metrics,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        })
    }
}

/// One OTLP export request, as decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportRequest {
    /// A trace export.
    Traces(ExportTraceServiceRequest),
    /// A log export.
    Logs(ExportLogsServiceRequest),
    /// A metrics export.
    Metrics(ExportMetricsServiceRequest),
}

impl ExportRequest {
    /// The signal this request carries.
    pub fn signal(&self) -> Signal {
        match self {
            ExportRequest::Traces(_) => Signal::Traces,
            ExportRequest::Logs(_) => Signal::Logs,
            ExportRequest::Metrics(_) => Signal::Metrics,
        }
    }

    /// How many spans this request holds (0 unless it is a trace export).
    pub fn span_count(&self) -> usize {
        match self {
            ExportRequest::Traces(request) => request
                .resource_spans
                .iter()
                .flat_map(|resource| &resource.scope_spans)
                .map(|scope| scope.spans.len())
                .sum(),
            _ => 0,
        }
    }

    /// How many log records this request holds (0 unless it is a log export).
    pub fn log_count(&self) -> usize {
        match self {
            ExportRequest::Logs(request) => request
                .resource_logs
                .iter()
                .flat_map(|resource| &resource.scope_logs)
                .map(|scope| scope.log_records.len())
                .sum(),
            _ => 0,
        }
    }
}

/// One export request together with the transport it arrived on: the unit the store keeps and
/// the dump writes, one per line.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    /// The transport the request arrived on.
    pub transport: Transport,
    /// The request itself.
    pub request: ExportRequest,
}

impl ReceivedRequest {
    /// The spans of this request, flattened, in the order the request lists them.
    pub fn spans(&self) -> impl Iterator<Item = ReceivedSpan> + '_ {
        let requests = match &self.request {
            ExportRequest::Traces(request) => request.resource_spans.as_slice(),
            _ => &[],
        };
        requests.iter().flat_map(move |resource_spans| {
            let resource = resource_attributes(resource_spans.resource.as_ref());
            resource_spans
                .scope_spans
                .iter()
                .flat_map(move |scope_spans| {
                    let resource = resource.clone();
                    scope_spans.spans.iter().map(move |span| ReceivedSpan {
                        transport: self.transport,
                        resource: resource.clone(),
                        scope: scope_spans.scope.clone(),
                        span: span.clone(),
                    })
                })
        })
    }

    /// The log records of this request, flattened, in the order the request lists them.
    pub fn logs(&self) -> impl Iterator<Item = ReceivedLog> + '_ {
        let requests = match &self.request {
            ExportRequest::Logs(request) => request.resource_logs.as_slice(),
            _ => &[],
        };
        requests.iter().flat_map(move |resource_logs| {
            let resource = resource_attributes(resource_logs.resource.as_ref());
            resource_logs.scope_logs.iter().flat_map(move |scope_logs| {
                let resource = resource.clone();
                scope_logs
                    .log_records
                    .iter()
                    .map(move |record| ReceivedLog {
                        transport: self.transport,
                        resource: resource.clone(),
                        scope: scope_logs.scope.clone(),
                        record: record.clone(),
                    })
            })
        })
    }
}

fn resource_attributes(resource: Option<&Resource>) -> Vec<KeyValue> {
    resource
        .map(|resource| resource.attributes.clone())
        .unwrap_or_default()
}

/// One received span with the resource and instrumentation scope it was sent under.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The transport it arrived on.
    pub transport: Transport,
    /// The attributes of its resource (`service.name`, ...).
    pub resource: Vec<KeyValue>,
    /// Its instrumentation scope, if the exporter sent one.
    pub scope: Option<InstrumentationScope>,
    /// The span.
    pub span: Span,
}

impl ReceivedSpan {
    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex_id(&self.span.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex_id(&self.span.span_id)
    }

    /// The parent span id as hex, or an empty string for a root span.
    pub fn parent_span_id_hex(&self) -> String {
        hex_id(&self.span.parent_span_id)
    }

    /// The value of one span attribute.
    pub fn attribute(&self, key: &str) -> Option<&AnyValue> {
        inspect::attribute(&self.span.attributes, key)
    }

    /// The value of one resource attribute.
    pub fn resource_attribute(&self, key: &str) -> Option<&AnyValue> {
        inspect::attribute(&self.resource, key)
    }

    /// The span's duration (zero if it ends before it starts).
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(
            self.span
                .end_time_unix_nano
                .saturating_sub(self.span.start_time_unix_nano),
        )
    }

    /// One readable line: name, ids, start, duration, transport and the first few attributes.
    pub fn summary(&self) -> String {
        let parent = match self.parent_span_id_hex() {
            parent if parent.is_empty() => "-".to_owned(),
            parent => parent,
        };
        let start = humantime::format_rfc3339_nanos(
            UNIX_EPOCH + Duration::from_nanos(self.span.start_time_unix_nano),
        );
        let mut line = format!(
            "span {:?} trace={} span={} parent={} start={} duration={:?} via {}",
            self.span.name,
            self.trace_id_hex(),
            self.span_id_hex(),
            parent,
            start,
            self.duration(),
            self.transport,
        );
        for attribute in self.span.attributes.iter().take(SUMMARY_ATTRIBUTES) {
            let value = attribute
                .value
                .as_ref()
                .map(inspect::display_value)
                .unwrap_or_default();
            line.push_str(&format!(" {}={}", attribute.key, value));
        }
        let left_out = self
            .span
            .attributes
            .len()
            .saturating_sub(SUMMARY_ATTRIBUTES);
        if left_out > 0 {
            line.push_str(&format!(" (+{left_out} more)"));
        }
        line
    }
}

/// One received log record with the resource and instrumentation scope it was sent under.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedLog {
    /// The transport it arrived on.
    pub transport: Transport,
    /// The attributes of its resource.
    pub resource: Vec<KeyValue>,
    /// Its instrumentation scope, if the exporter sent one.
    pub scope: Option<InstrumentationScope>,
    /// The log record.
    pub record: LogRecord,
}

impl ReceivedLog {
    /// The trace id the record is correlated with, as hex (empty if none).
    pub fn trace_id_hex(&self) -> String {
        hex_id(&self.record.trace_id)
    }

    /// The span id the record is correlated with, as hex (empty if none).
    pub fn span_id_hex(&self) -> String {
        hex_id(&self.record.span_id)
    }

    /// The value of one log record attribute.
    pub fn attribute(&self, key: &str) -> Option<&AnyValue> {
        inspect::attribute(&self.record.attributes, key)
    }

    /// The value of one resource attribute.
    pub fn resource_attribute(&self, key: &str) -> Option<&AnyValue> {
        inspect::attribute(&self.resource, key)
    }

    /// The body, if it is a string.
    pub fn body_str(&self) -> Option<&str> {
        self.record.body.as_ref().and_then(inspect::as_str)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    pub(crate) fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    pub(crate) fn string_kv(key: &str, value: &str) -> KeyValue {
        kv(key, Value::StringValue(value.to_owned()))
    }

    pub(crate) fn int_kv(key: &str, value: i64) -> KeyValue {
        kv(key, Value::IntValue(value))
    }

    /// A span whose ids are derived from `n`, with a zero byte first so that lost leading zeros
    /// would show.
    pub(crate) fn span(n: u8, name: &str) -> Span {
        Span {
            trace_id: [0x00, 0x0f, n, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, n].to_vec(),
            span_id: [0x00, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, n].to_vec(),
            name: name.to_owned(),
            kind: 1,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_123_470_000,
            attributes: vec![
                string_kv("signalfd.mask", "SIGINT|SIGTERM"),
                int_kv("fd", 3),
            ],
            ..Default::default()
        }
    }

    /// A trace request with two resources, the first holding two spans in one scope.
    pub(crate) fn trace_request() -> ExportTraceServiceRequest {
        let resource = |service: &str| Resource {
            attributes: vec![string_kv("service.name", service)],
            ..Default::default()
        };
        let scope = InstrumentationScope {
            name: "kspan".to_owned(),
            version: "0.1.0".to_owned(),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(resource("kspan")),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(scope),
                        spans: vec![span(1, "signalfd4"), span(2, "signalfd")],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceSpans {
                    resource: Some(resource("other")),
                    scope_spans: vec![ScopeSpans {
                        scope: None,
                        spans: vec![span(3, "third")],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        }
    }

    /// A log request with one record correlated with `span(1, ..)`.
    pub(crate) fn log_request() -> ExportLogsServiceRequest {
        let correlated = span(1, "signalfd4");
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![string_kv("service.name", "kspan")],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: vec![LogRecord {
                        time_unix_nano: u64::MAX,
                        observed_time_unix_nano: 1,
                        severity_number: 9,
                        severity_text: "INFO".to_owned(),
                        body: Some(AnyValue {
                            value: Some(Value::StringValue("signalfd4 returned 3".to_owned())),
                        }),
                        attributes: vec![int_kv("ret", -22)],
                        trace_id: correlated.trace_id,
                        span_id: correlated.span_id,
                        flags: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn flattening_keeps_order_resource_and_scope() {
        let received = ReceivedRequest {
            transport: Transport::Grpc,
            request: ExportRequest::Traces(trace_request()),
        };
        let spans: Vec<_> = received.spans().collect();
        let names: Vec<_> = spans.iter().map(|s| s.span.name.as_str()).collect();
        assert_eq!(names, ["signalfd4", "signalfd", "third"]);
        assert_eq!(received.request.span_count(), 3);
        assert_eq!(received.request.log_count(), 0);
        assert_eq!(received.logs().count(), 0);
        let service = |s: &ReceivedSpan| {
            s.resource_attribute("service.name")
                .and_then(inspect::as_str)
                .map(str::to_owned)
        };
        assert_eq!(service(&spans[0]).as_deref(), Some("kspan"));
        assert_eq!(service(&spans[2]).as_deref(), Some("other"));
        assert_eq!(
            spans[1].scope.as_ref().map(|s| s.name.as_str()),
            Some("kspan")
        );
        assert_eq!(spans[2].scope, None);
        assert!(spans.iter().all(|s| s.transport == Transport::Grpc));
    }

    #[test]
    fn flattened_log_keeps_correlation() {
        let received = ReceivedRequest {
            transport: Transport::Http,
            request: ExportRequest::Logs(log_request()),
        };
        let logs: Vec<_> = received.logs().collect();
        assert_eq!(logs.len(), 1);
        assert_eq!(received.request.log_count(), 1);
        assert_eq!(logs[0].trace_id_hex(), "000f01ff000000000000000000001001");
        assert_eq!(logs[0].span_id_hex(), "00abcdef01234501");
        assert_eq!(logs[0].body_str(), Some("signalfd4 returned 3"));
        assert_eq!(
            logs[0].attribute("ret").and_then(inspect::as_int),
            Some(-22)
        );
    }

    #[test]
    fn summary_names_ids_times_and_attributes() {
        let received = ReceivedSpan {
            transport: Transport::Http,
            resource: Vec::new(),
            scope: None,
            span: span(7, "signalfd4"),
        };
        assert_eq!(
            received.summary(),
            "span \"signalfd4\" trace=000f07ff000000000000000000001007 span=00abcdef01234507 \
             parent=- start=2023-11-14T22:13:20.123456789Z duration=13.211µs via HTTP \
             signalfd.mask=\"SIGINT|SIGTERM\" fd=3"
        );
    }

    #[test]
    fn summary_counts_attributes_left_out() {
        let mut span = span(1, "many");
        span.attributes = (0..9).map(|i| int_kv(&format!("a{i}"), i)).collect();
        span.parent_span_id = vec![1; 8];
        let line = ReceivedSpan {
            transport: Transport::Grpc,
            resource: Vec::new(),
            scope: None,
            span,
        }
        .summary();
        assert!(line.contains("parent=0101010101010101"), "{line}");
        assert!(line.contains(" a5=5 (+3 more)"), "{line}");
        assert!(!line.contains("a6="), "{line}");
    }
}
