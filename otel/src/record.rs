//! A call as OTLP data: one span and one log record carrying the same attributes, built directly
//! as `opentelemetry-proto` messages (no SDK objects in between: the export path's cost is mostly
//! allocation, see the README's Performance section).
//! The attribute names here are kspan's interface (see the README's attribute table).

use std::time::SystemTime;

use opentelemetry_proto::tonic::{
    common::v1::{any_value, AnyValue, ArrayValue, KeyValue},
    logs::v1::{LogRecord, SeverityNumber},
    trace::v1::{span::SpanKind, status::StatusCode, Span, Status},
};

use crate::{call::Call, ids::TraceGrouping};

/// Event name of the log record emitted for each call.
pub const LOG_EVENT_NAME: &str = "signalfd.call";

/// W3C trace flags: sampled (every call is recorded).
const SAMPLED: u32 = 1;

/// The attributes shared by a call's span and log record.
pub fn call_attributes(call: &Call) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(15);
    attributes.extend([
        int("process.pid", call.pid),
        int("thread.id", call.tid),
        string("thread.name", call.thread_name.clone()),
        string("process.executable.name", call.process_name.clone()),
        int("process.user.id", call.uid),
        int("signalfd.ufd", call.ufd),
        string("signalfd.operation", call.operation()),
        int("signalfd.flags", call.flags),
        strings(
            "signalfd.flags.names",
            crate::decode::flag_names(call.flags),
        ),
        string("signalfd.mask", call.mask.to_string()),
        strings("signalfd.mask.signals", call.mask.names()),
        string("signalfd.mask.source", call.mask_source_name()),
        string("kspan.probe", call.probe_name()),
        // The id's bits, reinterpreted: OTLP integers are signed.
        int("kspan.cgroup.id", call.cgroup_id as i64),
    ]);
    match (call.fd(), call.error()) {
        (Some(fd), _) => attributes.push(int("signalfd.fd", fd)),
        (None, Some(errno)) => attributes.push(string("error.type", errno)),
        (None, None) => {}
    }
    attributes
}

/// The call's span: INTERNAL, timed by the kernel, ERROR with the errno name on failure.
pub fn span(call: &Call, grouping: &TraceGrouping, attributes: Vec<KeyValue>) -> Span {
    let status = call.error().map(|errno| Status {
        message: errno.to_string(),
        code: StatusCode::Error.into(),
    });
    Span {
        trace_id: grouping.trace_id(call).to_bytes().to_vec(),
        span_id: grouping.span_id(call).to_bytes().to_vec(),
        flags: SAMPLED,
        name: call.name().to_string(),
        kind: SpanKind::Internal.into(),
        start_time_unix_nano: unix_nanos(call.start),
        end_time_unix_nano: unix_nanos(call.end),
        attributes,
        status,
        ..Span::default()
    }
}

/// The call's log record, in the same trace and span: INFO on success, WARN on error.
pub fn log_record(call: &Call, grouping: &TraceGrouping, attributes: Vec<KeyValue>) -> LogRecord {
    let (severity, text) = match call.fd() {
        Some(_) => (SeverityNumber::Info, "INFO"),
        None => (SeverityNumber::Warn, "WARN"),
    };
    LogRecord {
        time_unix_nano: unix_nanos(call.end),
        observed_time_unix_nano: unix_nanos(SystemTime::now()),
        severity_number: severity.into(),
        severity_text: text.to_string(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(call.summary())),
        }),
        attributes,
        flags: SAMPLED,
        trace_id: grouping.trace_id(call).to_bytes().to_vec(),
        span_id: grouping.span_id(call).to_bytes().to_vec(),
        event_name: LOG_EVENT_NAME.to_string(),
        ..LogRecord::default()
    }
}

/// An OTLP key-value pair.
pub fn key_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: impl Into<i64>) -> KeyValue {
    key_value(key, any_value::Value::IntValue(value.into()))
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    key_value(key, any_value::Value::StringValue(value.into()))
}

fn strings(key: &str, items: Vec<String>) -> KeyValue {
    let values = items
        .into_iter()
        .map(|item| AnyValue {
            value: Some(any_value::Value::StringValue(item)),
        })
        .collect();
    key_value(key, any_value::Value::ArrayValue(ArrayValue { values }))
}

/// Nanoseconds since the UNIX epoch (0 before it, which the kernel clock cannot produce).
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::call::tests::sample_call;

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

    fn grouping() -> TraceGrouping {
        TraceGrouping::new("boot", Duration::from_secs(60))
    }

    fn span_of(call: &Call) -> Span {
        span(call, &grouping(), call_attributes(call))
    }

    #[test]
    fn successful_call_span() {
        let call = sample_call();
        let span = span_of(&call);
        assert_eq!(span.name, "signalfd4");
        assert_eq!(span.kind, i32::from(SpanKind::Internal));
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (unix_nanos(call.start), unix_nanos(call.end))
        );
        assert_eq!(span.status, None);
        let attrs = &span.attributes;
        assert_eq!(
            attribute(attrs, "signalfd.fd"),
            Some(&any_value::Value::IntValue(5))
        );
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
            ..sample_call()
        };
        let span = span_of(&call);
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
    }

    #[test]
    fn log_record_shares_the_span_ids() {
        let call = Call {
            ret: -libc::EINVAL,
            ..sample_call()
        };
        let record = log_record(&call, &grouping(), call_attributes(&call));
        let span = span_of(&call);
        assert_eq!(record.trace_id, span.trace_id);
        assert_eq!(record.span_id, span.span_id);
        assert_eq!(record.trace_id.len(), 16);
        assert_eq!(record.span_id.len(), 8);
        assert_eq!(record.severity_number, i32::from(SeverityNumber::Warn));
        assert_eq!(record.event_name, LOG_EVENT_NAME);
        assert_eq!(
            record.body.and_then(|body| body.value),
            Some(text(
                "signalfd4(ufd=-1, mask=[SIGINT,SIGUSR1], flags=SFD_CLOEXEC) = -1 EINVAL"
            ))
        );
        assert!(attribute(&record.attributes, "error.type").is_some());
    }
}
