//! OTLP/gRPC: tonic's TraceService, LogsService and MetricsService, all feeding the store.

use crate::{ExportRequest, ReceivedRequest, RequiredHeader, Store, Transport, MAX_MESSAGE_BYTES};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::future::Future;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpIncoming;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Response, Status};

/// The three OTLP collector services over one store.
#[derive(Clone)]
struct OtlpServices {
    store: Store,
    required_header: Option<RequiredHeader>,
}

impl OtlpServices {
    /// Refuses (and counts) a request without the required header.
    fn authenticate(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(required) = &self.required_header else {
            return Ok(());
        };
        let present = metadata.get(required.name()).map(|value| value.as_bytes());
        if required.admits(present) {
            return Ok(());
        }
        self.store.count_unauthenticated(Transport::Grpc);
        tracing::warn!(
            header = required.name(),
            "refusing an unauthenticated gRPC export"
        );
        Err(Status::unauthenticated(required.refusal()))
    }

    fn record(&self, request: ExportRequest) -> Result<(), Status> {
        self.store
            .record(ReceivedRequest {
                transport: Transport::Grpc,
                request,
            })
            .map_err(|e| {
                tracing::error!(error = %e, "refusing a gRPC export");
                Status::internal(format!("the receiver could not record the request: {e}"))
            })
    }
}

#[tonic::async_trait]
impl TraceService for OtlpServices {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.authenticate(request.metadata())?;
        self.record(ExportRequest::Traces(request.into_inner()))?;
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpServices {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.authenticate(request.metadata())?;
        self.record(ExportRequest::Logs(request.into_inner()))?;
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpServices {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.authenticate(request.metadata())?;
        self.record(ExportRequest::Metrics(request.into_inner()))?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` completes: over TLS with `tls`, and
/// refusing requests without `required_header` when one is given.
pub(crate) async fn serve(
    listener: TcpListener,
    store: Store,
    tls: Option<ServerTlsConfig>,
    required_header: Option<RequiredHeader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let services = OtlpServices {
        store,
        required_header,
    };
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(
            TraceServiceServer::new(services.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            LogsServiceServer::new(services.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            MetricsServiceServer::new(services)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use crate::received::tests::{log_request, trace_request};
    use crate::{Receiver, ReceiverConfig, Transport};
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use std::time::Duration;
    use tonic::codec::CompressionEncoding;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    async fn grpc_only() -> Result<(Receiver, String), Box<dyn std::error::Error>> {
        let receiver = Receiver::start(ReceiverConfig {
            grpc_addr: Some("127.0.0.1:0".parse()?),
            http_addr: None,
            ..ReceiverConfig::default()
        })
        .await?;
        let endpoint = receiver.grpc_endpoint().ok_or("no gRPC endpoint")?;
        Ok((receiver, endpoint))
    }

    #[tokio::test]
    async fn all_three_services_store_what_they_get() -> TestResult {
        let (receiver, endpoint) = grpc_only().await?;
        assert_eq!(receiver.http_endpoint(), None);
        let store = receiver.store();

        let mut traces = TraceServiceClient::connect(endpoint.clone()).await?;
        traces.export(trace_request()).await?;
        let mut logs = LogsServiceClient::connect(endpoint.clone()).await?;
        logs.export(log_request()).await?;
        let mut metrics = MetricsServiceClient::connect(endpoint).await?;
        metrics
            .export(ExportMetricsServiceRequest::default())
            .await?;

        assert!(store.wait_for(3, 1, Duration::from_secs(10)).await);
        let stats = store.stats();
        assert_eq!(stats.trace_requests.grpc, 1);
        assert_eq!(stats.log_requests.grpc, 1);
        assert_eq!(stats.metrics_requests.grpc, 1);
        assert_eq!(stats.trace_requests.http, 0);
        let spans = store.spans();
        let expected: Vec<_> = trace_request().resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .chain(&trace_request().resource_spans[1].scope_spans[0].spans)
            .cloned()
            .collect();
        let got: Vec<_> = spans.iter().map(|s| s.span.clone()).collect();
        assert_eq!(got, expected);
        assert!(spans.iter().all(|s| s.transport == Transport::Grpc));
        assert_eq!(
            store.logs()[0].record,
            log_request().resource_logs[0].scope_logs[0].log_records[0]
        );
        assert_eq!(
            store.metrics_requests(),
            vec![ExportMetricsServiceRequest::default()]
        );
        receiver.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn accepts_gzip_compressed_requests() -> TestResult {
        let (receiver, endpoint) = grpc_only().await?;
        let mut client = TraceServiceClient::connect(endpoint)
            .await?
            .send_compressed(CompressionEncoding::Gzip);
        client.export(trace_request()).await?;
        assert_eq!(receiver.store().stats().spans, 3);
        receiver.shutdown().await;
        Ok(())
    }
}
