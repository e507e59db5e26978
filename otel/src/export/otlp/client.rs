//! Sends OTLP requests, already encoded as protobuf bytes, over gRPC (tonic) or HTTP/protobuf
//! (reqwest). No retries here: the pipeline retries with backoff and counts.

use std::{
    io::Write as _,
    marker::PhantomData,
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use flate2::{write::GzEncoder, Compression};
use futures_util::{Stream, StreamExt as _};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceResponse, metrics::v1::ExportMetricsServiceResponse,
    trace::v1::ExportTraceServiceResponse,
};
use prost::Message;
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use super::config::{Protocol, Signal, Target};
use crate::{
    export::failure::{ExportFailure, FailureKind},
    request_buffers::RequestBuffer,
    ExportError,
};

/// How many items of an accepted request the collector rejected (OTLP partial success).
pub type Rejected = u64;

/// The most of an HTTP response body kspan reads. An OTLP answer is empty or a partial success
/// of a few hundred bytes; reading stops here, whatever the collector sends.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Where one signal's requests go.
pub struct Endpoint {
    signal: Signal,
    transport: Transport,
}

enum Transport {
    Grpc(GrpcEndpoint),
    Http(HttpEndpoint),
}

/// OTLP/gRPC on a lazily connected channel.
struct GrpcEndpoint {
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
struct HttpEndpoint {
    /// Carries the timeout and TLS settings.
    client: reqwest::Client,
    /// The full URL requests are posted to.
    url: String,
    /// Headers sent on every request.
    headers: http::HeaderMap,
    /// Whether bodies are gzip-compressed.
    gzip: bool,
    /// Set once an answer's body could not be used, so that is logged once, not per request.
    odd_answer_logged: AtomicBool,
}

impl Endpoint {
    /// Prepares the transport for `signal` to `target`; gRPC connects on first use. Must run
    /// inside a tokio runtime.
    pub fn new(signal: Signal, target: &Target) -> Result<Self, ExportError> {
        let transport = match target.protocol {
            Protocol::Grpc => Transport::Grpc(grpc(target)?),
            Protocol::HttpProtobuf => Transport::Http(http(target)?),
        };
        Ok(Self { signal, transport })
    }

    /// Sends one encoded export request of this endpoint's signal; returns how many of its
    /// items the collector rejected. The request goes back to its pool as soon as the
    /// transport has compressed (gzip) or written it.
    pub async fn send(&self, body: RequestBuffer) -> Result<Rejected, ExportFailure> {
        Ok(match self.signal {
            Signal::Traces => {
                let response: ExportTraceServiceResponse = self.call(body).await?;
                response.partial_success.map_or(0, |p| p.rejected_spans)
            }
            Signal::Logs => {
                let response: ExportLogsServiceResponse = self.call(body).await?;
                response
                    .partial_success
                    .map_or(0, |p| p.rejected_log_records)
            }
            Signal::Metrics => {
                let response: ExportMetricsServiceResponse = self.call(body).await?;
                response
                    .partial_success
                    .map_or(0, |p| p.rejected_data_points)
            }
        }
        .max(0) as Rejected)
    }

    async fn call<R: Message + Default + Send + 'static>(
        &self,
        body: RequestBuffer,
    ) -> Result<R, ExportFailure> {
        match &self.transport {
            Transport::Grpc(grpc) => grpc.call(self.signal, body).await,
            Transport::Http(http) => http.post(body).await,
        }
    }
}

impl GrpcEndpoint {
    async fn call<R: Message + Default + Send + 'static>(
        &self,
        signal: Signal,
        body: RequestBuffer,
    ) -> Result<R, ExportFailure> {
        let path = http::uri::PathAndQuery::from_static(match signal {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        });
        let body = match self.gzip {
            true => Body::Gzip(gzip(&body)?),
            false => Body::Plain(body),
        };
        let mut client = tonic::client::Grpc::new(PreFramed {
            channel: self.channel.clone(),
            body: Some(body),
        });
        ready(&mut client).await?;
        let request = self.request(FramedByTransport);
        // A response over tonic's 4 MiB limit is refused by its length prefix, before it is read.
        client
            .unary(request, path, PreEncoded::<R>(PhantomData))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ExportFailure::grpc_status(&status))
    }
}

impl GrpcEndpoint {
    /// A request of `message` with the headers and deadline.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        request
    }
}

/// Waits until the channel can take a request (connecting it if need be).
async fn ready<T: tonic::client::GrpcService<tonic::body::Body>>(
    client: &mut tonic::client::Grpc<T>,
) -> Result<(), ExportFailure>
where
    T::Error: Into<BoxError>,
{
    client.ready().await.map_err(|error| {
        let error: BoxError = error.into();
        ExportFailure::retryable(format!("gRPC: {}", error_chain(error.as_ref())))
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The channel, sending one request whose body is already encoded: tonic's codec would copy
/// the ~1 MiB request into a frame buffer of its own (and compress it at zlib's default
/// level, several times the CPU of [`gzip`]'s); this sends the request's own bytes behind the
/// 5-byte gRPC message prefix instead, in place of the empty message tonic framed
/// ([`FramedByTransport`]). Responses, trailers and statuses are tonic's as ever.
struct PreFramed {
    channel: Channel,
    /// The request, until it is sent.
    body: Option<Body>,
}

/// A request's message as it goes on the wire.
enum Body {
    Plain(RequestBuffer),
    /// Compressed by [`gzip`]; sent with the prefix's compressed flag and `grpc-encoding`.
    Gzip(Vec<u8>),
}

/// The message tonic frames when [`PreFramed`] sends the body: nothing.
struct FramedByTransport;

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for PreFramed {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.channel.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let Some(body) = self.body.take() else {
            return Box::pin(std::future::ready(Err("one request per PreFramed".into())));
        };
        let (compressed, message) = match body {
            Body::Plain(request) => (false, Bytes::from_owner(request)),
            Body::Gzip(bytes) => (true, Bytes::from(bytes)),
        };
        let Ok(len) = u32::try_from(message.len()) else {
            let error = format!("a request of {} bytes is over gRPC's 4 GiB", message.len());
            return Box::pin(std::future::ready(Err(error.into())));
        };
        // The compressed flag, then the length, big-endian.
        let mut prefix = [u8::from(compressed), 0, 0, 0, 0];
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        let frames = [Bytes::copy_from_slice(&prefix), message]
            .map(|data| Ok::<_, std::convert::Infallible>(http_body::Frame::data(data)));
        let body = tonic::body::Body::new(http_body_util::StreamBody::new(
            futures_util::stream::iter(frames),
        ));
        let mut request = request.map(|_| body);
        if compressed {
            request
                .headers_mut()
                .insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        }
        let response = self.channel.call(request);
        Box::pin(async move { response.await.map_err(Into::into) })
    }
}

/// A gRPC codec for a request [`PreFramed`] sends: nothing to encode; the response `R` is
/// decoded with prost.
struct PreEncoded<R>(PhantomData<R>);

impl<R: Message + Default + Send + 'static> Codec for PreEncoded<R> {
    type Encode = FramedByTransport;
    type Decode = R;
    type Encoder = Unframed;
    type Decoder = Answer<R>;

    fn encoder(&mut self) -> Unframed {
        Unframed
    }

    fn decoder(&mut self) -> Answer<R> {
        Answer(PhantomData)
    }
}

/// Frames nothing: [`PreFramed`] sends the request.
#[derive(Clone, Copy)]
struct Unframed;

impl Encoder for Unframed {
    type Item = FramedByTransport;
    type Error = tonic::Status;

    fn encode(&mut self, _: FramedByTransport, _: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Decodes the response `R` with prost.
struct Answer<R>(PhantomData<R>);

impl<R: Message + Default> Decoder for Answer<R> {
    type Item = R;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Self::Error> {
        R::decode(src)
            .map(Some)
            .map_err(|error| tonic::Status::internal(format!("bad response: {error}")))
    }
}

impl HttpEndpoint {
    /// Posts a protobuf body. The answer counts by its status: a non-2xx status is a failure
    /// (its body is not read), a 2xx one a delivery, whose body is decoded for a partial success
    /// when it is whole, short and well formed, and otherwise read no further than
    /// [`MAX_RESPONSE_BYTES`] and ignored.
    async fn post<R: Message + Default>(&self, body: RequestBuffer) -> Result<R, ExportFailure> {
        let url = &self.url;
        let mut request = self
            .client
            .post(url.as_str())
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf");
        // Either way the body owns the request, which returns to its pool once hyper has
        // written it (or, compressed, at once).
        let body = if self.gzip {
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
            Bytes::from(gzip(&body)?)
        } else {
            Bytes::from_owner(body)
        };
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|error| http_failure(url, &error))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response.headers().get(http::header::RETRY_AFTER);
            return Err(ExportFailure::http_status(status, retry_after, url));
        }
        let chunks = futures_util::stream::unfold(response, |mut response| async move {
            let chunk = response.chunk().await.transpose()?;
            Some((chunk, response))
        });
        let why_ignored = match read_capped(chunks, MAX_RESPONSE_BYTES).await {
            // An empty body is a full success.
            Ok(CappedBody {
                bytes,
                complete: true,
            }) => match R::decode(bytes.as_slice()) {
                Ok(answer) => return Ok(answer),
                Err(error) => format!("a body that is not an OTLP response ({error})"),
            },
            Ok(CappedBody {
                complete: false, ..
            }) => format!("a body longer than {MAX_RESPONSE_BYTES} bytes, not read past that"),
            Err(error) => format!("a body that could not be read ({})", error_chain(&error)),
        };
        if !self.odd_answer_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %url,
                %status,
                "the collector answered with {why_ignored}; requests it answers with a success \
                 status are counted as delivered (logged once)"
            );
        }
        Ok(R::default())
    }
}

/// `body` gzip-compressed at zlib's fast level: compression runs on the export workers, and
/// the default level (tonic's) costs them several times as much CPU.
fn gzip(body: &[u8]) -> Result<Vec<u8>, ExportFailure> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map_err(|error| ExportFailure::retryable(format!("gzip: {error}")))
}

/// A response body read up to a cap.
#[derive(Debug, PartialEq, Eq)]
struct CappedBody {
    /// At most the cap's worth of bytes.
    bytes: Vec<u8>,
    /// Whether the body ended within the cap.
    complete: bool,
}

/// Pulls chunks until the body ends or `cap` bytes have come; never asks for a chunk after
/// that, so a body that never ends costs at most the cap and one chunk.
async fn read_capped<E>(
    chunks: impl Stream<Item = Result<Bytes, E>>,
    cap: usize,
) -> Result<CappedBody, E> {
    let mut chunks = std::pin::pin!(chunks);
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.next().await.transpose()? {
        let room = cap - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(CappedBody {
                bytes,
                complete: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(CappedBody {
        bytes,
        complete: true,
    })
}

/// A request that got no status: not sent, or sent and timed out waiting for the answer.
fn http_failure(url: &str, error: &reqwest::Error) -> ExportFailure {
    let message = format!("POST {url}: {}", error_chain(error));
    match error.is_timeout() && !error.is_connect() {
        true => ExportFailure {
            kind: FailureKind::NoAnswer,
            message,
            retry_after: None,
        },
        false => ExportFailure::retryable(message),
    }
}

fn grpc(target: &Target) -> Result<GrpcEndpoint, ExportError> {
    let invalid_endpoint = |reason: String| ExportError::InvalidEndpoint {
        endpoint: target.url.clone(),
        reason,
    };
    let mut endpoint = Channel::from_shared(target.url.clone())
        .map_err(|error| invalid_endpoint(error.to_string()))?
        .timeout(target.timeout)
        .connect_timeout(connect_timeout(target));
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
    let mut client = reqwest::Client::builder()
        .timeout(target.timeout)
        .connect_timeout(connect_timeout(target));
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
        odd_answer_logged: AtomicBool::new(false),
    })
}

/// A connection gets at most half the request timeout, so a request that times out had been
/// sent: the collector may have it (counted as possibly delivered), while one that could not
/// connect in time was not delivered.
fn connect_timeout(target: &Target) -> std::time::Duration {
    target.timeout / 2
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A body that never ends, in 16 KiB chunks, counting the bytes handed out.
    fn endless(handed_out: &AtomicUsize) -> impl Stream<Item = Result<Bytes, ()>> + '_ {
        futures_util::stream::repeat_with(move || {
            handed_out.fetch_add(16 * 1024, Ordering::Relaxed);
            Ok(Bytes::from(vec![b'k'; 16 * 1024]))
        })
    }

    #[tokio::test]
    async fn an_endless_body_is_read_up_to_the_cap_and_no_further() {
        let handed_out = AtomicUsize::new(0);
        let body = read_capped(endless(&handed_out), MAX_RESPONSE_BYTES)
            .await
            .unwrap();
        assert_eq!(
            (body.bytes.len(), body.complete),
            (MAX_RESPONSE_BYTES, false)
        );
        // The cap is a whole number of chunks: one more chunk shows it is over, no more.
        assert_eq!(
            handed_out.load(Ordering::Relaxed),
            MAX_RESPONSE_BYTES + 16 * 1024
        );
    }

    /// A trace request of `spans` spans, sent gzip-compressed over `protocol` to a receiver;
    /// returns what the receiver got.
    async fn send_gzip(protocol: Protocol, spans: usize) -> (usize, Rejected) {
        use opentelemetry_proto::tonic::{
            collector::trace::v1::ExportTraceServiceRequest,
            trace::v1::{ResourceSpans, ScopeSpans, Span},
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let config = match protocol {
            Protocol::Grpc => kspan_receiver::ReceiverConfig {
                grpc_addr: Some(addr),
                ..Default::default()
            },
            Protocol::HttpProtobuf => kspan_receiver::ReceiverConfig {
                http_addr: Some(addr),
                ..Default::default()
            },
        };
        let receiver = kspan_receiver::Receiver::start(config).await.unwrap();
        let config = super::super::OtlpConfig {
            protocol: Some(protocol),
            endpoint: Some(format!("http://{addr}")),
            headers: vec![],
            ca_certificate: None,
            timeout: Some(std::time::Duration::from_secs(10)),
            env: crate::Env::fixed([("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]),
        };
        let target = config.target(Signal::Traces).unwrap();
        assert!(target.gzip);
        let endpoint = Endpoint::new(Signal::Traces, &target).unwrap();
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "signalfd4".repeat(100),
            ..Span::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span; spans],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let rejected = endpoint
            .send(RequestBuffer::unpooled(request.encode_to_vec()))
            .await
            .unwrap();
        let received = receiver.store().stats().spans;
        receiver.shutdown().await;
        (received, rejected)
    }

    #[tokio::test]
    async fn gzip_requests_are_delivered_over_both_protocols() {
        for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
            assert_eq!(send_gzip(protocol, 1000).await, (1000, 0), "{protocol:?}");
        }
    }

    #[test]
    fn gzip_compresses_what_gunzip_restores() {
        use std::io::Read as _;
        let body = b"signalfd4 ".repeat(10_000);
        let compressed = gzip(&body).unwrap();
        assert!(
            compressed.len() * 10 < body.len(),
            "{} bytes",
            compressed.len()
        );
        let mut restored = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut restored)
            .unwrap();
        assert_eq!(restored, body);
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let chunks =
            [b"ab".as_slice(), b"", b"cde"].map(|chunk| Ok::<_, ()>(Bytes::from_static(chunk)));
        let body = read_capped(futures_util::stream::iter(chunks), 5)
            .await
            .unwrap();
        assert_eq!(
            body,
            CappedBody {
                bytes: b"abcde".to_vec(),
                complete: true
            }
        );
        let chunks =
            [b"ab".as_slice(), b"cdef"].map(|chunk| Ok::<_, ()>(Bytes::from_static(chunk)));
        let body = read_capped(futures_util::stream::iter(chunks), 5)
            .await
            .unwrap();
        assert_eq!(
            body,
            CappedBody {
                bytes: b"abcde".to_vec(),
                complete: false
            }
        );
    }
}
