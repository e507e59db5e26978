//! A call as OpenTelemetry data: one span and one log record carrying the same attributes.
//! The attribute names here are kspan's interface (see the README's attribute table).

use std::time::SystemTime;

use opentelemetry::{
    logs::{AnyValue, LogRecord as _, Severity},
    trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState},
    Array, InstrumentationScope, KeyValue, StringValue, Value,
};
use opentelemetry_sdk::{
    logs::{SdkLogRecord, SdkLogger},
    trace::{SpanData, SpanEvents, SpanLinks},
};

use crate::{call::Call, ids::TraceGrouping};

/// Event name of the log record emitted for each call.
pub const LOG_EVENT_NAME: &str = "signalfd.call";

/// The attributes shared by a call's span and log record.
pub fn call_attributes(call: &Call) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("process.pid", i64::from(call.pid)),
        KeyValue::new("thread.id", i64::from(call.tid)),
        KeyValue::new("thread.name", call.thread_name.clone()),
        KeyValue::new("process.executable.name", call.process_name.clone()),
        KeyValue::new("process.user.id", i64::from(call.uid)),
        KeyValue::new("signalfd.ufd", i64::from(call.ufd)),
        KeyValue::new("signalfd.operation", call.operation()),
        KeyValue::new("signalfd.flags", i64::from(call.flags)),
        KeyValue::new(
            "signalfd.flags.names",
            string_array(crate::decode::flag_names(call.flags)),
        ),
        KeyValue::new("signalfd.mask", call.mask.to_string()),
        KeyValue::new("signalfd.mask.signals", string_array(call.mask.names())),
        KeyValue::new("signalfd.mask.source", call.mask_source_name()),
        KeyValue::new("kspan.probe", call.probe_name()),
        KeyValue::new("kspan.cgroup.id", call.cgroup_id as i64),
    ];
    match (call.fd(), call.error()) {
        (Some(fd), _) => attributes.push(KeyValue::new("signalfd.fd", i64::from(fd))),
        (None, Some(errno)) => attributes.push(KeyValue::new("error.type", errno)),
        (None, None) => {}
    }
    attributes
}

fn string_array(items: Vec<String>) -> Value {
    Value::Array(Array::String(
        items.into_iter().map(StringValue::from).collect(),
    ))
}

/// The call's span: INTERNAL, timed by the kernel, ERROR with the errno name on failure.
pub fn span(call: &Call, grouping: &TraceGrouping, scope: &InstrumentationScope) -> SpanData {
    let status = match call.error() {
        Some(errno) => Status::error(errno),
        None => Status::Unset,
    };
    SpanData {
        span_context: span_context(call, grouping),
        parent_span_id: opentelemetry::trace::SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: call.name().into(),
        start_time: call.start,
        end_time: call.end,
        attributes: call_attributes(call),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

/// The call's log record, in the same trace and span: INFO on success, WARN on error.
pub fn log_record(call: &Call, grouping: &TraceGrouping, logger: &SdkLogger) -> SdkLogRecord {
    use opentelemetry::logs::Logger as _;
    let mut record = logger.create_log_record();
    let context = span_context(call, grouping);
    record.set_trace_context(
        context.trace_id(),
        context.span_id(),
        Some(context.trace_flags()),
    );
    record.set_event_name(LOG_EVENT_NAME);
    record.set_timestamp(call.end);
    record.set_observed_timestamp(SystemTime::now());
    let (severity, text) = match call.fd() {
        Some(_) => (Severity::Info, "INFO"),
        None => (Severity::Warn, "WARN"),
    };
    record.set_severity_number(severity);
    record.set_severity_text(text);
    record.set_body(AnyValue::from(call.summary()));
    record.add_attributes(
        call_attributes(call)
            .into_iter()
            .map(|kv| (kv.key, any_value(kv.value))),
    );
    record
}

/// Log attributes are `AnyValue`s; kspan's attributes are scalars and string arrays.
fn any_value(value: Value) -> AnyValue {
    match value {
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        Value::String(s) => AnyValue::String(s),
        Value::Array(Array::String(items)) => {
            AnyValue::ListAny(Box::new(items.into_iter().map(AnyValue::String).collect()))
        }
        other => AnyValue::String(other.to_string().into()),
    }
}

fn span_context(call: &Call, grouping: &TraceGrouping) -> SpanContext {
    SpanContext::new(
        grouping.trace_id(call),
        grouping.span_id(call),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::logs::LoggerProvider as _;
    use opentelemetry_sdk::logs::SdkLoggerProvider;

    use super::*;
    use crate::call::tests::sample_call;

    fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn grouping() -> TraceGrouping {
        TraceGrouping::new("boot", Duration::from_secs(60))
    }

    #[test]
    fn successful_call_span() {
        let call = sample_call();
        let span = span(
            &call,
            &grouping(),
            &InstrumentationScope::builder("kspan").build(),
        );
        assert_eq!(span.name, "signalfd4");
        assert_eq!(span.span_kind, SpanKind::Internal);
        assert_eq!((span.start_time, span.end_time), (call.start, call.end));
        assert_eq!(span.status, Status::Unset);
        let attrs = &span.attributes;
        assert_eq!(attribute(attrs, "signalfd.fd"), Some(&Value::I64(5)));
        assert_eq!(attribute(attrs, "error.type"), None);
        assert_eq!(
            attribute(attrs, "signalfd.operation"),
            Some(&Value::from("create"))
        );
        assert_eq!(
            attribute(attrs, "signalfd.mask"),
            Some(&Value::from("0x0000000000000202"))
        );
        assert_eq!(
            attribute(attrs, "signalfd.mask.signals"),
            Some(&string_array(vec!["SIGINT".into(), "SIGUSR1".into()]))
        );
        assert_eq!(
            attribute(attrs, "signalfd.flags.names"),
            Some(&string_array(vec!["SFD_CLOEXEC".into()]))
        );
        assert_eq!(
            attribute(attrs, "kspan.probe"),
            Some(&Value::from("tracepoint"))
        );
    }

    #[test]
    fn failed_call_span_is_an_error_without_fd() {
        let call = Call {
            ret: -libc::EBADF,
            ufd: 42,
            ..sample_call()
        };
        let span = span(
            &call,
            &grouping(),
            &InstrumentationScope::builder("kspan").build(),
        );
        assert_eq!(span.status, Status::error("EBADF"));
        assert_eq!(
            attribute(&span.attributes, "error.type"),
            Some(&Value::from("EBADF"))
        );
        assert_eq!(attribute(&span.attributes, "signalfd.fd"), None);
    }

    #[test]
    fn log_record_shares_the_span_ids() {
        let call = Call {
            ret: -libc::EINVAL,
            ..sample_call()
        };
        let provider = SdkLoggerProvider::builder().build();
        let record = log_record(&call, &grouping(), &provider.logger("kspan"));
        let span = span(
            &call,
            &grouping(),
            &InstrumentationScope::builder("kspan").build(),
        );
        let context = record.trace_context().expect("trace context");
        assert_eq!(context.trace_id, span.span_context.trace_id());
        assert_eq!(context.span_id, span.span_context.span_id());
        assert_eq!(record.severity_number(), Some(Severity::Warn));
        assert_eq!(record.event_name(), Some(LOG_EVENT_NAME));
        assert_eq!(
            record.body(),
            Some(&AnyValue::from(
                "signalfd4(ufd=-1, mask=[SIGINT,SIGUSR1], flags=SFD_CLOEXEC) = -1 EINVAL"
            ))
        );
        assert!(record
            .attributes_iter()
            .any(|(key, _)| key.as_str() == "error.type"));
    }
}
