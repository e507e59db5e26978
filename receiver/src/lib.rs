//! A real OTLP receiver (gRPC and HTTP/protobuf or JSON) that keeps everything it receives.
//!
//! kspan's end-to-end tests, VM tests, benchmarks and demos point an OTLP exporter at a
//! [`Receiver`], wait on its [`Store`] and judge the spans and logs that arrived. The store can be
//! dumped as JSON lines (one line per received request) and read back exactly, which is how
//! results leave a QEMU guest.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kspan_receiver::ReceiverError> {
//! use kspan_receiver::{Receiver, ReceiverConfig};
//! use std::time::Duration;
//!
//! let receiver = Receiver::start(ReceiverConfig::loopback()).await?;
//! let endpoint = receiver.grpc_endpoint(); // hand this to the exporter
//! # let _ = endpoint;
//! let store = receiver.store();
//! if store.wait_for(1, 1, Duration::from_secs(10)).await {
//!     for span in store.spans() {
//!         println!("{}", span.summary());
//!     }
//! }
//! receiver.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod counting;
mod dump;
mod error;
mod grpc;
pub mod hostile;
mod http;
pub mod inspect;
mod limits;
mod received;
mod receiver;
mod security;
mod store;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;

pub use dump::DumpWriter;
pub use error::ReceiverError;
pub use received::{ExportRequest, ReceivedLog, ReceivedRequest, ReceivedSpan, Signal, Transport};
pub use receiver::{Receiver, ReceiverConfig};
pub use security::{ReceiverSecurity, RequiredHeader, TlsIdentity};
pub use store::{ReceiverStats, RequestObserver, Store, TransportCounts};

/// The OTLP protobuf types the receiver hands out, re-exported so users need no version match.
pub use opentelemetry_proto::tonic as proto;
/// The metrics export request, kept whole by [`Store::metrics_requests`].
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

/// An HTTP client for tests, whatever TLS features the workspace build turned on.
#[cfg(test)]
pub(crate) fn test_http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
