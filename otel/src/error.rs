//! Why the export stage could not be set up: the one error type of this crate.

use std::path::PathBuf;

/// Why the export stage could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The endpoint is not a usable URL.
    #[error("invalid OTLP endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An OTLP protocol kspan does not speak.
    #[error("unsupported OTLP protocol `{0}`: use `grpc` or `http/protobuf`")]
    UnsupportedProtocol(String),
    /// A header name or value that cannot be sent.
    #[error("invalid OTLP header `{name}`: names must be tokens and values visible ASCII")]
    InvalidHeader {
        /// The header's name (its value is never shown: it may be a secret).
        name: String,
    },
    /// An `OTEL_EXPORTER_OTLP_*HEADERS` variable is malformed.
    #[error("malformed {variable}: entry {entry} is not KEY=VALUE with a valid header name")]
    InvalidEnvHeaders {
        /// The variable.
        variable: String,
        /// 1-based position of the bad entry (the text is not shown: it may be a secret).
        entry: usize,
    },
    /// Another `OTEL_EXPORTER_OTLP_*` variable has a value kspan cannot use.
    #[error("invalid {variable}: expected {expected}")]
    InvalidEnv {
        /// The variable.
        variable: String,
        /// What it may hold.
        expected: &'static str,
    },
    /// A certificate or key file could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why (in the message only, so a report of the error chain says it once).
        cause: std::io::Error,
    },
    /// The CA certificate file cannot be read, or holds no usable PEM certificate.
    #[error("cannot read CA certificate {}: {reason}", path.display())]
    CaCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// A certificate or key is given for an endpoint that does not use TLS.
    #[error("{setting} is set but the OTLP endpoint `{endpoint}` is plaintext http://: use an https:// endpoint (headers would otherwise go in clear)")]
    TlsFilesWithoutTls {
        /// The option or variable that names the certificate or key.
        setting: String,
        /// The endpoint, without user information.
        endpoint: String,
    },
    /// An export timeout of zero, which would fail every request.
    #[error("the OTLP export timeout must be more than 0 (with 0 every export fails)")]
    ZeroTimeout,
    /// The `--otlp-headers-file` cannot be read or holds a malformed line.
    #[error("headers file {}: {reason}", path.display())]
    HeadersFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never a header's value: it may be a secret).
        reason: String,
    },
    /// An entry of `OTEL_RESOURCE_ATTRIBUTES` that is not `key=percent-encoded value`.
    #[error("malformed OTEL_RESOURCE_ATTRIBUTES: entry {entry} {reason}")]
    InvalidResourceAttribute {
        /// 1-based position of the bad entry.
        entry: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A queue or batch size of zero.
    #[error("the export queue and batch sizes must be at least 1")]
    InvalidQueue,
}
