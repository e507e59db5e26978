//! OTLP/HTTP: `POST /v1/traces`, `/v1/logs` and `/v1/metrics` with a protobuf or JSON body,
//! optionally gzip-compressed.

use crate::limits::MAX_MESSAGE_BYTES;
use crate::{ExportRequest, ReceivedRequest, RequiredHeader, Store, Transport};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::io::Read;
use std::sync::Arc;
use tokio::net::TcpListener;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// An OTLP export request type that can arrive over HTTP.
trait HttpExport: prost::Message + Default + DeserializeOwned + Send + 'static {
    /// The protobuf message name, for error messages.
    const NAME: &'static str;
    /// The matching (empty) response.
    type Response: prost::Message + Default + Serialize;
    /// Wraps the request for the store.
    fn into_export(self) -> ExportRequest;
}

impl HttpExport for ExportTraceServiceRequest {
    const NAME: &'static str = "ExportTraceServiceRequest";
    type Response = ExportTraceServiceResponse;
    fn into_export(self) -> ExportRequest {
        ExportRequest::Traces(self)
    }
}

impl HttpExport for ExportLogsServiceRequest {
    const NAME: &'static str = "ExportLogsServiceRequest";
    type Response = ExportLogsServiceResponse;
    fn into_export(self) -> ExportRequest {
        ExportRequest::Logs(self)
    }
}

impl HttpExport for ExportMetricsServiceRequest {
    const NAME: &'static str = "ExportMetricsServiceRequest";
    type Response = ExportMetricsServiceResponse;
    fn into_export(self) -> ExportRequest {
        ExportRequest::Metrics(self)
    }
}

/// The body formats OTLP/HTTP defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    Protobuf,
    Json,
}

impl BodyFormat {
    fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Protobuf => PROTOBUF,
            BodyFormat::Json => JSON,
        }
    }
}

/// A refused request: the status and a message for whoever reads the exporter's error log.
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    message: String,
}

impl Rejection {
    fn new(status: StatusCode, message: String) -> Self {
        Rejection { status, message }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (
            self.status,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response()
    }
}

/// What the HTTP handlers share: the store, and the header every request must carry.
#[derive(Clone)]
struct HttpState {
    store: Store,
    required_header: Option<RequiredHeader>,
}

/// The OTLP/HTTP routes over one store.
fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/traces", post(export::<ExportTraceServiceRequest>))
        .route("/v1/logs", post(export::<ExportLogsServiceRequest>))
        .route("/v1/metrics", post(export::<ExportMetricsServiceRequest>))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(state)
}

/// Serves OTLP/HTTP on `listener` until `shutdown` completes: over TLS with `tls`, and
/// refusing requests without `required_header` when one is given.
pub(crate) async fn serve(
    listener: TcpListener,
    store: Store,
    tls: Option<Arc<rustls::ServerConfig>>,
    required_header: Option<RequiredHeader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(HttpState {
        store,
        required_header,
    });
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Open connections may finish; the receiver cuts them after its grace period.
        stopper.graceful_shutdown(None);
    });
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    axum_server::from_tcp_rustls(listener.into_std()?, tls)?
        .handle(handle)
        .serve(app.into_make_service())
        .await
}

async fn export<R: HttpExport>(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let store = &state.store;
    if let Some(required) = &state.required_header {
        let present = headers.get(required.name()).map(|value| value.as_bytes());
        if !required.admits(present) {
            store.count_unauthenticated(Transport::Http);
            tracing::warn!(
                header = required.name(),
                "refusing an unauthenticated HTTP export"
            );
            return Rejection::new(StatusCode::UNAUTHORIZED, required.refusal()).into_response();
        }
    }
    match accept::<R>(store, &headers, &body) {
        Ok(response) => response,
        Err(rejection) => {
            if rejection.status != StatusCode::INTERNAL_SERVER_ERROR {
                store.count_rejected_http();
            }
            tracing::warn!(status = %rejection.status, message = %rejection.message, "refusing an HTTP export");
            rejection.into_response()
        }
    }
}

fn accept<R: HttpExport>(
    store: &Store,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Rejection> {
    let format = body_format(headers)?;
    let body = decompress(headers, body)?;
    let request = decode::<R>(format, &body)?;
    store
        .record(ReceivedRequest {
            transport: Transport::Http,
            request: request.into_export(),
        })
        .map_err(|e| {
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the receiver could not record the request: {e}"),
            )
        })?;
    let response = R::Response::default();
    let encoded = match format {
        BodyFormat::Protobuf => response.encode_to_vec(),
        BodyFormat::Json => serde_json::to_vec(&response).map_err(|e| {
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the JSON response: {e}"),
            )
        })?,
    };
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, format.content_type())],
        encoded,
    )
        .into_response())
}

/// The body format named by `Content-Type` (parameters such as `charset` ignored).
fn body_format(headers: &HeaderMap) -> Result<BodyFormat, Rejection> {
    let unsupported = |what: &str| {
        Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type {what}: send {PROTOBUF} or {JSON}"),
        )
    };
    let value = headers
        .get(CONTENT_TYPE)
        .ok_or_else(|| unsupported("(none given)"))?;
    let text = value.to_str().map_err(|_| unsupported("(not text)"))?;
    let media_type = text.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case(PROTOBUF) {
        Ok(BodyFormat::Protobuf)
    } else if media_type.eq_ignore_ascii_case(JSON) {
        Ok(BodyFormat::Json)
    } else {
        Err(unsupported(&format!("'{text}'")))
    }
}

/// The body with any `Content-Encoding: gzip` undone.
fn decompress(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, Rejection> {
    let encoding = match headers.get(CONTENT_ENCODING) {
        None => return Ok(body.to_vec()),
        Some(value) => value.to_str().unwrap_or("(not text)").trim(),
    };
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return Ok(body.to_vec());
    }
    if !encoding.eq_ignore_ascii_case("gzip") {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding '{encoding}': send gzip or no encoding"),
        ));
    }
    let mut decoded = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    let limit = u64::try_from(MAX_MESSAGE_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    flate2::read::GzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut decoded)
        .map_err(|e| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid gzip data (Content-Encoding: gzip): {e}"),
            )
        })?;
    if decoded.len() > MAX_MESSAGE_BYTES {
        return Err(Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the decompressed body is over the receiver's limit of {MAX_MESSAGE_BYTES} bytes"
            ),
        ));
    }
    Ok(decoded)
}

fn decode<R: HttpExport>(format: BodyFormat, body: &[u8]) -> Result<R, Rejection> {
    let decoded = match format {
        BodyFormat::Protobuf => R::decode(body).map_err(|e| e.to_string()),
        BodyFormat::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
    };
    decoded.map_err(|e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            format!(
                "cannot decode the body as {} {}: {e}",
                match format {
                    BodyFormat::Protobuf => "a protobuf",
                    BodyFormat::Json => "an OTLP/JSON",
                },
                R::NAME
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::received::tests::{log_request, trace_request};
    use crate::{Receiver, ReceiverConfig, Transport};
    use flate2::write::GzEncoder;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use prost::Message;
    use reqwest::StatusCode;
    use std::io::Write;
    use std::time::Duration;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    async fn http_only() -> Result<(Receiver, String), Box<dyn std::error::Error>> {
        let receiver = Receiver::start(ReceiverConfig {
            grpc_addr: None,
            http_addr: Some("127.0.0.1:0".parse()?),
            ..ReceiverConfig::default()
        })
        .await?;
        let endpoint = receiver.http_endpoint().ok_or("no HTTP endpoint")?;
        Ok((receiver, endpoint))
    }

    async fn post(
        url: String,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), reqwest::Error> {
        let mut request = crate::test_http_client()
            .post(url)
            .header("content-type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let response = request.send().await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((status, content_type, response.bytes().await?.to_vec()))
    }

    fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data)?;
        encoder.finish()
    }

    #[tokio::test]
    async fn protobuf_posts_are_stored_and_answered_in_protobuf() -> TestResult {
        let (receiver, base) = http_only().await?;
        assert_eq!(receiver.grpc_endpoint(), None);
        let store = receiver.store();
        let (status, content_type, body) = post(
            format!("{base}/v1/traces"),
            "application/x-protobuf",
            None,
            trace_request().encode_to_vec(),
        )
        .await?;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
        assert_eq!(
            ExportTraceServiceResponse::decode(body.as_slice())?,
            ExportTraceServiceResponse::default()
        );
        let (status, _, body) = post(
            format!("{base}/v1/logs"),
            "application/x-protobuf",
            None,
            log_request().encode_to_vec(),
        )
        .await?;
        assert_eq!(status, StatusCode::OK);
        ExportLogsServiceResponse::decode(body.as_slice())?;
        let (status, _, _) = post(
            format!("{base}/v1/metrics"),
            "application/x-protobuf",
            None,
            ExportMetricsServiceRequest::default().encode_to_vec(),
        )
        .await?;
        assert_eq!(status, StatusCode::OK);

        assert!(store.wait_for(3, 1, Duration::from_secs(10)).await);
        let spans = store.spans();
        assert_eq!(spans.len(), 3);
        assert_eq!(
            spans[0].span,
            trace_request().resource_spans[0].scope_spans[0].spans[0]
        );
        assert!(spans.iter().all(|s| s.transport == Transport::Http));
        let stats = store.stats();
        assert_eq!(
            (
                stats.trace_requests.http,
                stats.log_requests.http,
                stats.metrics_requests.http
            ),
            (1, 1, 1)
        );
        receiver.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn json_and_gzip_bodies_are_accepted() -> TestResult {
        let (receiver, base) = http_only().await?;
        let json = serde_json::to_vec(&trace_request())?;
        let (status, content_type, body) = post(
            format!("{base}/v1/traces"),
            "application/json; charset=utf-8",
            None,
            json.clone(),
        )
        .await?;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let _: ExportTraceServiceResponse = serde_json::from_slice(&body)?;

        let (status, _, body) = post(
            format!("{base}/v1/traces"),
            "application/x-protobuf",
            Some("gzip"),
            gzip(&trace_request().encode_to_vec())?,
        )
        .await?;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let (status, _, _) = post(
            format!("{base}/v1/traces"),
            "application/json",
            Some("gzip"),
            gzip(&json)?,
        )
        .await?;
        assert_eq!(status, StatusCode::OK);

        let spans = receiver.store().spans();
        assert_eq!(spans.len(), 9);
        assert_eq!(spans[0].span, spans[3].span, "JSON and protobuf agree");
        assert_eq!(spans[3].span, spans[6].span);
        receiver.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn bad_requests_are_refused_with_a_reason() -> TestResult {
        let (receiver, base) = http_only().await?;
        let url = format!("{base}/v1/traces");
        let cases = [
            (
                "text/plain",
                None,
                b"hi".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported Content-Type 'text/plain'",
            ),
            (
                "application/x-protobuf",
                Some("br"),
                Vec::new(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported Content-Encoding 'br'",
            ),
            (
                "application/x-protobuf",
                None,
                vec![0xff, 0xff, 0xff],
                StatusCode::BAD_REQUEST,
                "cannot decode the body as a protobuf ExportTraceServiceRequest",
            ),
            (
                "application/json",
                None,
                b"{\"resourceSpans\": 3}".to_vec(),
                StatusCode::BAD_REQUEST,
                "cannot decode the body as an OTLP/JSON ExportTraceServiceRequest",
            ),
            (
                "application/x-protobuf",
                Some("gzip"),
                b"not gzip".to_vec(),
                StatusCode::BAD_REQUEST,
                "not valid gzip data",
            ),
        ];
        let expected_rejections = cases.len();
        for (content_type, encoding, body, expected_status, expected_message) in cases {
            let (status, _, answer) = post(url.clone(), content_type, encoding, body).await?;
            let answer = String::from_utf8_lossy(&answer);
            assert_eq!(
                status, expected_status,
                "{content_type} {encoding:?}: {answer}"
            );
            assert!(
                answer.contains(expected_message),
                "{content_type} {encoding:?}: {answer}"
            );
        }
        let stats = receiver.store().stats();
        assert_eq!(stats.rejected_http_requests, expected_rejections);
        assert_eq!(stats.trace_requests.total(), 0);

        let missing = crate::test_http_client().post(url).body("x").send().await?;
        assert_eq!(missing.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(missing.text().await?.contains("(none given)"));
        let wrong_path = crate::test_http_client()
            .post(format!("{base}/v1/profiles"))
            .send()
            .await?;
        assert_eq!(wrong_path.status(), StatusCode::NOT_FOUND);
        receiver.shutdown().await;
        Ok(())
    }
}
