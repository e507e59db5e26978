//! OTLP/gRPC: tonic's TraceService, LogsService and MetricsService, all feeding the store.

use crate::counting::count_items;
use crate::limits::MAX_MESSAGE_BYTES;
use crate::{ExportRequest, ReceivedRequest, RequiredHeader, Signal, Store, Transport};
use bytes::Buf as _;
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
use std::convert::Infallible;
use std::future::Future;
use std::future::Ready;
use std::marker::PhantomData;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::codec::{Codec, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError};
use tonic::metadata::MetadataMap;
use tonic::server::{NamedService, UnaryService};
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

/// The trace or logs service for a store that only counts (see [`Store::counting`]): the
/// request's items are counted from its bytes, never decoded.
#[derive(Clone)]
struct CountingService<S> {
    services: OtlpServices,
    signal: PhantomData<S>,
}

/// The signal a [`CountingService`] counts.
trait CountedSignal: Send + Sync + 'static {
    const SIGNAL: Signal;
}

#[derive(Clone)]
struct Spans;
impl CountedSignal for Spans {
    const SIGNAL: Signal = Signal::Traces;
}

#[derive(Clone)]
struct LogRecords;
impl CountedSignal for LogRecords {
    const SIGNAL: Signal = Signal::Logs;
}

impl NamedService for CountingService<Spans> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl NamedService for CountingService<LogRecords> {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

impl<S: CountedSignal> CountingService<S> {
    fn new(services: OtlpServices) -> Self {
        Self {
            services,
            signal: PhantomData,
        }
    }
}

impl<S, B> Service<http::Request<B>> for CountingService<S>
where
    S: CountedSignal + Clone,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            if !request.uri().path().ends_with("/Export") {
                return Ok(Status::unimplemented("only Export is served").into_http());
            }
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(CountingCodec)
                .apply_compression_config(gzip, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(MAX_MESSAGE_BYTES), None);
            Ok(grpc.unary(service, request).await)
        })
    }
}

impl<S: CountedSignal> UnaryService<usize> for CountingService<S> {
    type Response = ();
    type Future = Ready<Result<Response<()>, Status>>;

    fn call(&mut self, request: Request<usize>) -> Self::Future {
        let accepted = self.services.authenticate(request.metadata()).map(|()| {
            let items = *request.get_ref();
            self.services
                .store
                .record_count(S::SIGNAL, items, Transport::Grpc);
            Response::new(())
        });
        std::future::ready(accepted)
    }
}

/// Decodes a request into the number of items it carries; answers with the empty response
/// (an empty `Export*ServiceResponse` encodes to no bytes: full success).
struct CountingCodec;

impl Codec for CountingCodec {
    type Encode = ();
    type Decode = usize;
    type Encoder = CountingCodec;
    type Decoder = CountingCodec;

    fn encoder(&mut self) -> Self::Encoder {
        CountingCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        CountingCodec
    }
}

impl Encoder for CountingCodec {
    type Item = ();
    type Error = Status;

    fn encode(&mut self, (): (), _: &mut EncodeBuf<'_>) -> Result<(), Status> {
        Ok(())
    }
}

impl Decoder for CountingCodec {
    type Item = usize;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<usize>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        count_items(&bytes)
            .map(Some)
            .map_err(|error| Status::invalid_argument(error.to_string()))
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
    let counts_only = services.store.counts_only();
    server
        .add_optional_service(counts_only.then(|| CountingService::<Spans>::new(services.clone())))
        .add_optional_service(
            counts_only.then(|| CountingService::<LogRecords>::new(services.clone())),
        )
        .add_optional_service((!counts_only).then(|| {
            TraceServiceServer::new(services.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
        }))
        .add_optional_service((!counts_only).then(|| {
            LogsServiceServer::new(services.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
        }))
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
    use crate::{Receiver, ReceiverConfig, Store, Transport};
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
    async fn a_counting_store_counts_without_keeping() -> TestResult {
        let config = ReceiverConfig {
            grpc_addr: Some("127.0.0.1:0".parse()?),
            http_addr: None,
            ..ReceiverConfig::default()
        };
        let receiver = Receiver::start_with_store(config, Store::counting()).await?;
        let endpoint = receiver.grpc_endpoint().ok_or("no gRPC endpoint")?;
        let mut traces = TraceServiceClient::connect(endpoint.clone())
            .await?
            .send_compressed(CompressionEncoding::Gzip);
        traces.export(trace_request()).await?;
        traces.export(trace_request()).await?;
        let mut logs = LogsServiceClient::connect(endpoint.clone()).await?;
        logs.export(log_request()).await?;
        // A request that is not protobuf is refused, not counted.
        let garbage = tonic::client::Grpc::new(
            tonic::transport::Channel::from_shared(endpoint)?
                .connect()
                .await?,
        );
        let refused = raw_export(garbage, vec![0x0b]).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");

        let store = receiver.store();
        let stats = store.stats();
        assert_eq!((stats.spans, stats.logs), (6, 1));
        assert_eq!((stats.trace_requests.grpc, stats.log_requests.grpc), (2, 1));
        assert!(store.spans().is_empty() && store.requests().is_empty());
        receiver.shutdown().await;
        Ok(())
    }

    /// Sends `body` as a trace export without encoding it.
    async fn raw_export(
        mut client: tonic::client::Grpc<tonic::transport::Channel>,
        body: Vec<u8>,
    ) -> Result<(), tonic::Status> {
        client
            .ready()
            .await
            .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        let path = http::uri::PathAndQuery::from_static(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        );
        client
            .unary(tonic::Request::new(body), path, RawCodec)
            .await
            .map(|_| ())
    }

    /// Sends bytes as they are; expects an empty answer.
    struct RawCodec;

    impl tonic::codec::Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = ();
        type Encoder = RawCodec;
        type Decoder = RawCodec;
        fn encoder(&mut self) -> RawCodec {
            RawCodec
        }
        fn decoder(&mut self) -> RawCodec {
            RawCodec
        }
    }

    impl tonic::codec::Encoder for RawCodec {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(
            &mut self,
            item: Vec<u8>,
            dst: &mut tonic::codec::EncodeBuf<'_>,
        ) -> Result<(), tonic::Status> {
            bytes::BufMut::put_slice(dst, &item);
            Ok(())
        }
    }

    impl tonic::codec::Decoder for RawCodec {
        type Item = ();
        type Error = tonic::Status;
        fn decode(
            &mut self,
            _: &mut tonic::codec::DecodeBuf<'_>,
        ) -> Result<Option<()>, tonic::Status> {
            Ok(Some(()))
        }
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
