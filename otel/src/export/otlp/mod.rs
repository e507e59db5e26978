//! OTLP export of spans and log records over gRPC or HTTP/protobuf. Requests are encoded straight
//! from calls (see `wire`); standard `OTEL_EXPORTER_OTLP_*` variables apply
//! wherever the command line leaves a setting open.

mod client;
mod config;
mod selection;

use opentelemetry::{Array, Value};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope},
    metrics::v1::{Metric, ResourceMetrics, ScopeMetrics},
    resource::v1::Resource,
};
use prost::Message as _;

pub use client::{Rejected, MAX_RESPONSE_BYTES};
pub use config::{read_headers_file, validate_endpoint, OtlpConfig, Protocol, Signal};
pub use selection::SignalSelection;

use crate::{
    export::failure::ExportFailure,
    ids::TraceGrouping,
    wire::{key_value, CallEncoder},
    ExportError,
};
use client::Endpoint;
use kspan_decode::Call;

/// Who is sending: the agent's resource and instrumentation scope, on every request.
#[derive(Clone)]
struct Sender {
    resource: Resource,
    scope: InstrumentationScope,
}

impl Sender {
    /// The resource, detected through the SDK (which parses OTEL_RESOURCE_ATTRIBUTES), as OTLP.
    fn new(resource: &opentelemetry_sdk::Resource) -> Self {
        Self {
            resource: Resource {
                attributes: resource
                    .iter()
                    .map(|(key, value)| key_value(key.as_str(), proto_value(value)))
                    .collect(),
                ..Resource::default()
            },
            scope: InstrumentationScope {
                name: "kspan".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                ..InstrumentationScope::default()
            },
        }
    }
}

/// Encodes calls as OTLP spans and log records and sends them; a signal turned off
/// (`OTEL_TRACES_EXPORTER`/`OTEL_LOGS_EXPORTER=none`) is never encoded.
pub struct OtlpSink {
    traces: Option<Endpoint>,
    logs: Option<Endpoint>,
    encoder: CallEncoder,
}

impl OtlpSink {
    /// Resolves every setting of both signals (failing on anything malformed, selected or
    /// not) and prepares the endpoints of the selected ones. Must run inside a tokio runtime.
    pub fn new(
        config: &OtlpConfig,
        selection: SignalSelection,
        resource: &opentelemetry_sdk::Resource,
        grouping: TraceGrouping,
    ) -> Result<Self, ExportError> {
        let sender = Sender::new(resource);
        let traces = endpoint(config, Signal::Traces)?;
        let logs = endpoint(config, Signal::Logs)?;
        Ok(Self {
            traces: selection.traces.then_some(traces),
            logs: selection.logs.then_some(logs),
            encoder: CallEncoder::new(grouping, &sender.resource, &sender.scope),
        })
    }

    /// Whether spans are sent.
    pub(crate) fn sends_spans(&self) -> bool {
        self.traces.is_some()
    }

    /// Whether log records are sent.
    pub(crate) fn sends_logs(&self) -> bool {
        self.logs.is_some()
    }

    /// Sends one span per call (nothing, when spans are off).
    pub(crate) async fn export_spans(&self, calls: &[Call]) -> Result<Rejected, ExportFailure> {
        match &self.traces {
            Some(traces) => traces.send(self.encoder.traces_request(calls)).await,
            None => Ok(0),
        }
    }

    /// Sends one log record per call (nothing, when log records are off).
    pub(crate) async fn export_logs(&self, calls: &[Call]) -> Result<Rejected, ExportFailure> {
        match &self.logs {
            Some(logs) => logs.send(self.encoder.logs_request(calls)).await,
            None => Ok(0),
        }
    }
}

fn endpoint(config: &OtlpConfig, signal: Signal) -> Result<Endpoint, ExportError> {
    Endpoint::new(signal, &config.target(signal)?)
}

/// Sends kspan's own health metrics to the collector the calls go to.
pub struct MetricsExporter {
    metrics: Endpoint,
    sender: Sender,
}

impl MetricsExporter {
    /// Resolves the metrics settings like [`OtlpSink::new`] does for spans and logs.
    pub fn new(
        config: &OtlpConfig,
        resource: &opentelemetry_sdk::Resource,
    ) -> Result<Self, ExportError> {
        Ok(Self {
            metrics: endpoint(config, Signal::Metrics)?,
            sender: Sender::new(resource),
        })
    }

    /// Sends metrics under the agent's resource and scope.
    pub async fn export(&self, metrics: Vec<Metric>) -> Result<Rejected, ExportFailure> {
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.sender.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(self.sender.scope.clone()),
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        };
        self.metrics.send(request.encode_to_vec()).await
    }
}

fn proto_value(value: &Value) -> any_value::Value {
    fn array<T>(items: &[T], each: impl Fn(&T) -> any_value::Value) -> any_value::Value {
        any_value::Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|item| AnyValue {
                    value: Some(each(item)),
                })
                .collect(),
        })
    }
    match value {
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::I64(i) => any_value::Value::IntValue(*i),
        Value::F64(f) => any_value::Value::DoubleValue(*f),
        Value::String(s) => any_value::Value::StringValue(s.to_string()),
        Value::Array(Array::Bool(items)) => array(items, |b| any_value::Value::BoolValue(*b)),
        Value::Array(Array::I64(items)) => array(items, |i| any_value::Value::IntValue(*i)),
        Value::Array(Array::F64(items)) => array(items, |f| any_value::Value::DoubleValue(*f)),
        Value::Array(Array::String(items)) => {
            array(items, |s| any_value::Value::StringValue(s.to_string()))
        }
        other => any_value::Value::StringValue(other.to_string()),
    }
}
