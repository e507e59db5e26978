//! OTLP export of spans and log records over gRPC or HTTP/protobuf. Requests are encoded straight
//! from calls (see `wire`); standard `OTEL_EXPORTER_OTLP_*` variables apply
//! wherever the command line leaves a setting open.

mod client;
mod config;
mod selection;

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::InstrumentationScope,
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
    request_buffers::RequestBuffer,
    resource::Resources,
    wire::{CallEncoder, Requests, Wanted},
    ExportError,
};
use client::Endpoint;
use kspan_decode::Call;

/// The instrumentation scope of everything kspan sends.
fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "kspan".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..InstrumentationScope::default()
    }
}

/// What became of a batch's spans and of its log records; `None` for a signal not sent.
pub type SignalOutcomes = (
    Option<Result<Rejected, ExportFailure>>,
    Option<Result<Rejected, ExportFailure>>,
);

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
        resources: &Resources,
        grouping: TraceGrouping,
    ) -> Result<Self, ExportError> {
        let traces = endpoint(config, Signal::Traces)?;
        let logs = endpoint(config, Signal::Logs)?;
        Ok(Self {
            traces: selection.traces.then_some(traces),
            logs: selection.logs.then_some(logs),
            encoder: CallEncoder::new(grouping, resources, &scope()),
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

    /// Sends what is wanted of one span and one log record per call, concurrently on separate
    /// requests, both encoded in one pass; a signal that is off is not encoded and counts as
    /// sent (`Ok(0)`).
    pub(crate) async fn export(&self, calls: &[Call], wanted: Wanted) -> SignalOutcomes {
        let encode = Wanted {
            spans: wanted.spans && self.traces.is_some(),
            logs: wanted.logs && self.logs.is_some(),
        };
        let Requests { traces, logs } = self.encoder.requests(calls, encode);
        tokio::join!(
            send(self.traces.as_ref(), traces, wanted.spans),
            send(self.logs.as_ref(), logs, wanted.logs)
        )
    }
}

/// Sends `request` to `endpoint`; a signal that is off (no endpoint) counts as sent when it was
/// `wanted`.
async fn send(
    endpoint: Option<&Endpoint>,
    request: Option<RequestBuffer>,
    wanted: bool,
) -> Option<Result<Rejected, ExportFailure>> {
    match (endpoint, request) {
        (Some(endpoint), Some(request)) => Some(endpoint.send(request).await),
        _ => wanted.then_some(Ok(0)),
    }
}

fn endpoint(config: &OtlpConfig, signal: Signal) -> Result<Endpoint, ExportError> {
    Endpoint::new(signal, &config.target(signal)?)
}

/// Sends kspan's own health metrics to the collector the calls go to.
pub struct MetricsExporter {
    metrics: Endpoint,
    /// kspan's own resource (`service.name = kspan`, `service.instance.id`).
    resource: Resource,
}

impl MetricsExporter {
    /// Resolves the metrics settings like [`OtlpSink::new`] does for spans and logs.
    pub fn new(config: &OtlpConfig, resources: &Resources) -> Result<Self, ExportError> {
        Ok(Self {
            metrics: endpoint(config, Signal::Metrics)?,
            resource: resources.agent(),
        })
    }

    /// Sends metrics under kspan's own resource and scope.
    pub async fn export(&self, metrics: Vec<Metric>) -> Result<Rejected, ExportFailure> {
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        };
        let request = RequestBuffer::unpooled(request.encode_to_vec());
        self.metrics.send(request).await
    }
}
