//! OTLP export of spans and log records over gRPC or HTTP/protobuf. Requests are encoded straight
//! from calls (see `wire`); standard `OTEL_EXPORTER_OTLP_*` variables apply
//! wherever the command line leaves a setting open.

mod client;
mod config;

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::InstrumentationScope,
    metrics::v1::{Metric, ResourceMetrics, ScopeMetrics},
    resource::v1::Resource,
};
use prost::Message as _;

pub use client::{Rejected, MAX_RESPONSE_BYTES};
pub use config::{read_headers_file, validate_endpoint, OtlpConfig, Protocol, Signal};

use crate::{
    export::failure::ExportFailure, ids::TraceGrouping, resource::Resources, wire::CallEncoder,
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

/// Encodes calls as OTLP spans and log records and sends them.
pub struct OtlpSink {
    traces: Endpoint,
    logs: Endpoint,
    encoder: CallEncoder,
}

impl OtlpSink {
    /// Resolves every setting (failing on anything malformed) and prepares both endpoints.
    /// Must run inside a tokio runtime.
    pub fn new(
        config: &OtlpConfig,
        resources: &Resources,
        grouping: TraceGrouping,
    ) -> Result<Self, ExportError> {
        Ok(Self {
            traces: endpoint(config, Signal::Traces)?,
            logs: endpoint(config, Signal::Logs)?,
            encoder: CallEncoder::new(grouping, resources, &scope()),
        })
    }

    /// Sends one span per call.
    pub(crate) async fn export_spans(&self, calls: &[Call]) -> Result<Rejected, ExportFailure> {
        self.traces.send(self.encoder.traces_request(calls)).await
    }

    /// Sends one log record per call.
    pub(crate) async fn export_logs(&self, calls: &[Call]) -> Result<Rejected, ExportFailure> {
        self.logs.send(self.encoder.logs_request(calls)).await
    }
}

fn endpoint(config: &OtlpConfig, signal: Signal) -> Result<Endpoint, ExportError> {
    Endpoint::new(config.protocol, signal, &config.target(signal)?)
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
        self.metrics.send(request.encode_to_vec()).await
    }
}
