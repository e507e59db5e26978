//! A collector that misbehaves on purpose, for tests of what an exporter does against one: it
//! never answers, answers with a body that never ends or is huge, answers too late, or answers
//! with an error status (with the retry hints the OTLP specification names).
//!
//! HTTP/1.1 is spoken by hand over TCP, so a body can be anything; gRPC is served by tonic.

use crate::counting::count_items;
use crate::{ReceiverError, Transport};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// How the hostile collector treats each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// Accepts connections and reads what arrives, but never answers.
    Silent,
    /// Answers `200 OK` with a chunked body that never ends (HTTP only: a gRPC client refuses
    /// a message by its length prefix, see [`Hostility::HugeBody`]).
    EndlessBody,
    /// Answers success with a body of this many bytes: over HTTP a `200 OK` whose body is that
    /// long, over gRPC a valid response message that long (a partial success with a long
    /// error message).
    HugeBody(usize),
    /// Takes each request whole and counts it, then answers success only after `delay`; the
    /// first `late` requests are answered late, the ones after at once.
    LateAnswer {
        /// How long the answer waits.
        delay: Duration,
        /// How many requests are answered late.
        late: u64,
    },
    /// Answers the first `times` requests (of both signals, counted together) with `status`,
    /// the ones after with success.
    Failing {
        /// The error answer.
        status: FailureStatus,
        /// How many requests get it.
        times: u64,
    },
}

/// An error answer of a [`Hostility::Failing`] collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureStatus {
    /// An HTTP status code, with a `Retry-After` header when given (HTTP only).
    Http(u16, Option<RetryAfter>),
    /// A gRPC status code, with a `google.rpc.RetryInfo` detail of that delay when given
    /// (gRPC only).
    Grpc(tonic::Code, Option<Duration>),
}

/// The two forms of HTTP `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// A number of seconds.
    Seconds(u64),
    /// An HTTP-date this long after the answer is written (rounded up to a whole second).
    DateIn(Duration),
}

impl RetryAfter {
    /// The header's value, for an answer written now.
    fn header_value(self) -> String {
        match self {
            RetryAfter::Seconds(seconds) => seconds.to_string(),
            RetryAfter::DateIn(delay) => {
                // HTTP-dates have whole seconds: round up, so the date is never sooner than asked.
                let at = std::time::SystemTime::now() + delay + Duration::from_secs(1);
                httpdate::fmt_http_date(at)
            }
        }
    }
}

/// What a hostile collector has seen and sent so far.
#[derive(Debug, Default)]
pub struct HostileStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Requests read whole (headers and body).
    pub requests: AtomicU64,
    /// Spans in the requests read whole.
    pub spans: AtomicU64,
    /// Log records in the requests read whole.
    pub logs: AtomicU64,
    /// Response body bytes the client took (written to its socket).
    pub body_bytes_written: AtomicU64,
    /// When each request was read whole, in order.
    pub arrivals: std::sync::Mutex<Vec<std::time::Instant>>,
}

impl HostileStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts a request read whole; returns its index (0 for the first).
    fn arrived(&self) -> u64 {
        let mut arrivals = self
            .arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        arrivals.push(std::time::Instant::now());
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    /// When the requests arrived, in order.
    pub fn arrival_times(&self) -> Vec<std::time::Instant> {
        self.arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A running hostile collector; dropping it stops accepting (open connections end with their
/// tasks).
#[derive(Debug)]
pub struct HostileCollector {
    addr: SocketAddr,
    stats: Arc<HostileStats>,
    task: JoinHandle<()>,
}

impl HostileCollector {
    /// Listens on `addr` (port 0: any free port) for `transport` and treats every request as
    /// `hostility` says. [`Hostility::EndlessBody`] over gRPC is refused.
    pub async fn start(
        transport: Transport,
        addr: SocketAddr,
        hostility: Hostility,
    ) -> Result<Self, ReceiverError> {
        let unsupported = match (transport, hostility) {
            (Transport::Grpc, Hostility::EndlessBody) => Some("an endless body over gRPC"),
            (
                Transport::Grpc,
                Hostility::Failing {
                    status: FailureStatus::Http(..),
                    ..
                },
            ) => Some("an HTTP status over gRPC"),
            (
                Transport::Http,
                Hostility::Failing {
                    status: FailureStatus::Grpc(..),
                    ..
                },
            ) => Some("a gRPC status over HTTP"),
            _ => None,
        };
        if let Some(what) = unsupported {
            return Err(ReceiverError::Unsupported { what: what.into() });
        }
        let bind_error = |cause| ReceiverError::Bind {
            transport,
            addr,
            cause,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let stats = Arc::new(HostileStats::default());
        let task = match (transport, hostility) {
            (_, Hostility::Silent) | (Transport::Http, _) => {
                tokio::spawn(serve_raw(listener, hostility, stats.clone()))
            }
            (Transport::Grpc, _) => tokio::spawn(serve_grpc(listener, hostility, stats.clone())),
        };
        Ok(Self { addr, stats, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give an exporter.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<HostileStats> {
        self.stats.clone()
    }
}

impl Drop for HostileCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections and serves each on its own task (HTTP/1.1 by hand, or silence).
async fn serve_raw(listener: TcpListener, hostility: Hostility, stats: Arc<HostileStats>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        HostileStats::add(&stats.connections, 1);
        connections.spawn(serve_connection(stream, hostility, stats.clone()));
        // Reap finished connections so the set does not grow with them.
        while connections.try_join_next().is_some() {}
    }
}

/// The most a request head may take; kspan's are a few hundred bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

async fn serve_connection(mut stream: TcpStream, hostility: Hostility, stats: Arc<HostileStats>) {
    if hostility == Hostility::Silent {
        // Read and discard, so the client's writes never block: it waits for an answer only.
        let mut sink = vec![0; 64 * 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
    let mut buffer = Vec::new();
    while let Some((path, body)) = read_request(&mut stream, &mut buffer).await {
        let request = stats.arrived();
        let items = count_items(&body).unwrap_or(0) as u64;
        match path.as_str() {
            "/v1/traces" => HostileStats::add(&stats.spans, items),
            "/v1/logs" => HostileStats::add(&stats.logs, items),
            _ => {}
        }
        let answered = match hostility {
            Hostility::EndlessBody => write_endless_body(&mut stream, &stats).await,
            Hostility::HugeBody(bytes) => write_huge_body(&mut stream, bytes, &stats).await,
            Hostility::LateAnswer { delay, late } => {
                if request < late {
                    tokio::time::sleep(delay).await;
                }
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                    .await
            }
            Hostility::Failing {
                status: FailureStatus::Http(code, retry_after),
                times,
            } if request < times => {
                let retry_after = retry_after
                    .map(|after| format!("retry-after: {}\r\n", after.header_value()))
                    .unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 {code} Hostile\r\ncontent-length: 0\r\n{retry_after}\r\n"
                );
                stream.write_all(head.as_bytes()).await
            }
            Hostility::Failing { .. } => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                    .await
            }
            Hostility::Silent => Ok(()),
        };
        if answered.is_err() {
            return;
        }
    }
}

/// Reads one request (head and a `content-length` body); `None` once the connection ends or
/// sends something that is not a request.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return None;
        }
        let mut chunk = [0; 8192];
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1)?.to_string();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let mut chunk = vec![0; 64 * 1024];
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    Some((path, body))
}

/// The size of each piece of a hostile body.
const PIECE: usize = 64 * 1024;

/// A `200 OK` whose chunked body goes on until the client stops reading.
async fn write_endless_body(stream: &mut TcpStream, stats: &HostileStats) -> std::io::Result<()> {
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ntransfer-encoding: chunked\r\n\r\n")
        .await?;
    let mut chunk = format!("{PIECE:x}\r\n").into_bytes();
    chunk.extend(std::iter::repeat_n(b'k', PIECE));
    chunk.extend_from_slice(b"\r\n");
    loop {
        stream.write_all(&chunk).await?;
        HostileStats::add(&stats.body_bytes_written, PIECE as u64);
    }
}

/// A `200 OK` with a `content-length` body of `bytes` bytes.
async fn write_huge_body(
    stream: &mut TcpStream,
    bytes: usize,
    stats: &HostileStats,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: {bytes}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let piece = vec![b'k'; PIECE];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(PIECE);
        stream.write_all(&piece[..n]).await?;
        HostileStats::add(&stats.body_bytes_written, n as u64);
        left -= n;
    }
    Ok(())
}

/// The trace and logs services of a hostile gRPC collector.
#[derive(Clone)]
struct HostileServices {
    hostility: Hostility,
    stats: Arc<HostileStats>,
}

impl HostileServices {
    /// Counts a request whole, and waits if it is one to answer late; the error status if it
    /// is one to fail.
    async fn take(&self, items: &AtomicU64, count: usize) -> Result<(), Status> {
        let request = self.stats.arrived();
        HostileStats::add(items, count as u64);
        match self.hostility {
            Hostility::LateAnswer { delay, late } if request < late => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Hostility::Failing {
                status: FailureStatus::Grpc(code, retry_info),
                times,
            } if request < times => Err(match retry_info {
                Some(delay) => Status::with_error_details(
                    code,
                    "hostile answer",
                    ErrorDetails::with_retry_info(Some(delay)),
                ),
                None => Status::new(code, "hostile answer"),
            }),
            _ => Ok(()),
        }
    }

    /// The error message that makes a response `bytes` long, or none.
    fn padding(&self) -> String {
        match self.hostility {
            Hostility::HugeBody(bytes) => "k".repeat(bytes),
            _ => String::new(),
        }
    }
}

#[tonic::async_trait]
impl TraceService for HostileServices {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.take(&self.stats.spans, spans).await?;
        let padding = self.padding();
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (!padding.is_empty()).then_some(ExportTracePartialSuccess {
                rejected_spans: 0,
                error_message: padding,
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for HostileServices {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let logs = request
            .get_ref()
            .resource_logs
            .iter()
            .flat_map(|resource| &resource.scope_logs)
            .map(|scope| scope.log_records.len())
            .sum();
        self.take(&self.stats.logs, logs).await?;
        let padding = self.padding();
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: (!padding.is_empty()).then_some(ExportLogsPartialSuccess {
                rejected_log_records: 0,
                error_message: padding,
            }),
        }))
    }
}

async fn serve_grpc(listener: TcpListener, hostility: Hostility, stats: Arc<HostileStats>) {
    let services = HostileServices { hostility, stats };
    let served = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(services.clone()))
        .add_service(LogsServiceServer::new(services))
        .serve_with_incoming(TcpIncoming::from(listener))
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "hostile gRPC collector stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_port() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn an_endless_body_goes_on_while_the_client_reads() {
        let collector =
            HostileCollector::start(Transport::Http, any_port(), Hostility::EndlessBody)
                .await
                .unwrap();
        let mut stream = TcpStream::connect(collector.addr()).await.unwrap();
        stream
            .write_all(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        // Read 10 MiB: far more than any OTLP answer, and the body has not ended.
        let mut read = 0;
        let mut chunk = vec![0; 64 * 1024];
        while read < 10 << 20 {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the body ended after {read} bytes");
            read += n;
        }
        assert_eq!(HostileStats::get(&collector.stats().requests), 1);
    }

    #[tokio::test]
    async fn a_huge_body_has_the_length_it_announces() {
        let bytes = 3 * PIECE + 17;
        let collector =
            HostileCollector::start(Transport::Http, any_port(), Hostility::HugeBody(bytes))
                .await
                .unwrap();
        let mut stream = TcpStream::connect(collector.addr()).await.unwrap();
        stream
            .write_all(b"POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let mut chunk = vec![0; 64 * 1024];
        let head_end = loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the answer ended early");
            response.extend_from_slice(&chunk[..n]);
            if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        while response.len() < head_end + bytes {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "the body ended after {} bytes",
                response.len() - head_end
            );
            response.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&response[..head_end]);
        assert!(head.contains(&format!("content-length: {bytes}")), "{head}");
        assert_eq!(response.len() - head_end, bytes);
    }

    #[tokio::test]
    async fn endless_grpc_is_refused() {
        let refused =
            HostileCollector::start(Transport::Grpc, any_port(), Hostility::EndlessBody).await;
        assert!(matches!(refused, Err(ReceiverError::Unsupported { .. })));
    }
}
