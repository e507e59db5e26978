//! Sends OTLP requests, already built as `opentelemetry-proto` messages, over gRPC (tonic) or
//! HTTP/protobuf (reqwest). No retries here: the pipeline retries with backoff and counts.

use std::{io::Write as _, str::FromStr};

use flate2::{write::GzEncoder, Compression};
use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        logs_service_client::LogsServiceClient, ExportLogsServiceRequest, ExportLogsServiceResponse,
    },
    metrics::v1::{
        metrics_service_client::MetricsServiceClient, ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
    },
    trace::v1::{
        trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    },
};
use prost::Message;
use tonic::{
    codec::CompressionEncoding,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use super::config::{Protocol, Target};
use crate::ExportError;

/// How many items of an accepted request the collector rejected (OTLP partial success).
pub type Rejected = u64;

/// One kind of OTLP export request: how it travels over gRPC and what its response says.
pub trait ExportRequest: Message + Sized + 'static {
    /// The service's response.
    type Response: Message + Default;

    /// Calls the signal's gRPC service.
    fn grpc_export(
        channel: Channel,
        gzip: bool,
        request: tonic::Request<Self>,
    ) -> impl std::future::Future<Output = Result<Self::Response, tonic::Status>> + Send;

    /// Items the collector rejected.
    fn rejected(response: &Self::Response) -> Rejected;
}

/// Implements [`ExportRequest`] for one signal's request, client and partial-success field.
macro_rules! export_request {
    ($request:ty, $response:ty, $client:ident, $rejected:ident) => {
        impl ExportRequest for $request {
            type Response = $response;

            async fn grpc_export(
                channel: Channel,
                gzip: bool,
                request: tonic::Request<Self>,
            ) -> Result<Self::Response, tonic::Status> {
                let mut client = $client::new(channel);
                if gzip {
                    client = client.send_compressed(CompressionEncoding::Gzip);
                }
                Ok(client.export(request).await?.into_inner())
            }

            fn rejected(response: &Self::Response) -> Rejected {
                response
                    .partial_success
                    .as_ref()
                    .map_or(0, |partial| partial.$rejected.max(0) as u64)
            }
        }
    };
}

export_request!(
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    TraceServiceClient,
    rejected_spans
);
export_request!(
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    LogsServiceClient,
    rejected_log_records
);
export_request!(
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    MetricsServiceClient,
    rejected_data_points
);

/// Where one signal's requests go.
pub enum Endpoint {
    /// OTLP/gRPC.
    Grpc(GrpcEndpoint),
    /// OTLP/HTTP with protobuf bodies.
    Http(HttpEndpoint),
}

/// OTLP/gRPC on a lazily connected channel.
pub struct GrpcEndpoint {
    /// Reconnects by itself after an outage.
    channel: Channel,
    /// Headers, sent as metadata on every request.
    metadata: MetadataMap,
    /// Whether requests are gzip-compressed.
    gzip: bool,
    /// Per-request deadline (`grpc-timeout`).
    timeout: std::time::Duration,
}

/// OTLP/HTTP with protobuf bodies.
pub struct HttpEndpoint {
    /// Carries the timeout and TLS settings.
    client: reqwest::Client,
    /// The full URL requests are posted to.
    url: String,
    /// Headers sent on every request.
    headers: http::HeaderMap,
    /// Whether bodies are gzip-compressed.
    gzip: bool,
}

impl Endpoint {
    /// Prepares the transport to `target`; gRPC connects on first use. Must run inside a tokio
    /// runtime.
    pub fn new(protocol: Protocol, target: &Target) -> Result<Self, ExportError> {
        match protocol {
            Protocol::Grpc => grpc(target).map(Endpoint::Grpc),
            Protocol::HttpProtobuf => http(target).map(Endpoint::Http),
        }
    }

    /// Sends one request; returns how many of its items the collector rejected.
    pub async fn send<R: ExportRequest>(&self, request: R) -> Result<Rejected, String> {
        let response = match self {
            Endpoint::Grpc(grpc) => {
                let mut request = tonic::Request::new(request);
                *request.metadata_mut() = grpc.metadata.clone();
                request.set_timeout(grpc.timeout);
                R::grpc_export(grpc.channel.clone(), grpc.gzip, request)
                    .await
                    .map_err(grpc_error)?
            }
            Endpoint::Http(http) => http.post::<R>(request).await?,
        };
        Ok(R::rejected(&response))
    }
}

impl HttpEndpoint {
    /// Posts a protobuf body; a non-2xx status is a failure.
    async fn post<R: ExportRequest>(&self, message: R) -> Result<R::Response, String> {
        let url = &self.url;
        let mut body = message.encode_to_vec();
        let mut request = self
            .client
            .post(url.as_str())
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf");
        if self.gzip {
            let mut encoder =
                GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            body = encoder
                .write_all(&body)
                .and_then(|()| encoder.finish())
                .map_err(|error| format!("gzip: {error}"))?;
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|error| format!("POST {url}: {}", error_chain(&error)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| format!("POST {url}: reading the response: {error}"))?;
        if !status.is_success() {
            return Err(format!("POST {url}: HTTP {status}"));
        }
        // An empty body is a full success.
        R::Response::decode(bytes)
            .map_err(|error| format!("POST {url}: bad response body: {error}"))
    }
}

fn grpc(target: &Target) -> Result<GrpcEndpoint, ExportError> {
    let invalid_endpoint = |reason: String| ExportError::InvalidEndpoint {
        endpoint: target.url.clone(),
        reason,
    };
    let mut endpoint = Channel::from_shared(target.url.clone())
        .map_err(|error| invalid_endpoint(error.to_string()))?
        .timeout(target.timeout);
    if target.url.starts_with("https://") || target.ca_pem.is_some() {
        let mut tls = ClientTlsConfig::new();
        tls = match &target.ca_pem {
            Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
            None => tls.with_native_roots(),
        };
        if let Some((cert, key)) = &target.client_identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|error| invalid_endpoint(format!("TLS: {}", error_chain(&error))))?;
    }
    let mut metadata = MetadataMap::new();
    for (name, value) in &target.headers {
        let invalid = || ExportError::InvalidHeader { name: name.clone() };
        let key = MetadataKey::from_str(name).map_err(|_| invalid())?;
        let value = MetadataValue::from_str(value).map_err(|_| invalid())?;
        metadata.insert(key, value);
    }
    Ok(GrpcEndpoint {
        channel: endpoint.connect_lazy(),
        metadata,
        gzip: target.gzip,
        timeout: target.timeout,
    })
}

fn http(target: &Target) -> Result<HttpEndpoint, ExportError> {
    // reqwest is built without a default TLS provider; ring is the one tonic uses too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut client = reqwest::Client::builder().timeout(target.timeout);
    if let Some(pem) = &target.ca_pem {
        let certificate = reqwest::Certificate::from_pem(pem)
            .map_err(|error| ExportError::HttpClient(format!("CA certificate: {error}")))?;
        client = client.add_root_certificate(certificate);
    }
    if let Some((cert, key)) = &target.client_identity {
        let identity = reqwest::Identity::from_pem(&[cert.as_slice(), key.as_slice()].concat())
            .map_err(|error| ExportError::HttpClient(format!("client certificate: {error}")))?;
        client = client.identity(identity);
    }
    let client = client
        .build()
        .map_err(|error| ExportError::HttpClient(error_chain(&error)))?;
    let mut headers = http::HeaderMap::new();
    for (name, value) in &target.headers {
        let invalid = || ExportError::InvalidHeader { name: name.clone() };
        let mut value = http::HeaderValue::from_str(value).map_err(|_| invalid())?;
        // Keeps header values (often secrets) out of any debug output.
        value.set_sensitive(true);
        headers.insert(
            http::HeaderName::from_str(name).map_err(|_| invalid())?,
            value,
        );
    }
    Ok(HttpEndpoint {
        client,
        url: target.url.clone(),
        headers,
        gzip: target.gzip,
    })
}

fn grpc_error(status: tonic::Status) -> String {
    match status.message() {
        "" => format!("gRPC {:?}", status.code()),
        message => format!("gRPC {:?}: {message}", status.code()),
    }
}

/// An error with its causes, which hold the useful part (connection refused, bad certificate).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
