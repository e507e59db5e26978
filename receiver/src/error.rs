//! The receiver's error type.

use crate::{Signal, Transport};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong while starting the receiver or handling its dumps.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The configuration asks for no listener at all.
    #[error("the receiver configuration names no address: set grpc_addr, http_addr or both")]
    NoListener,
    /// A listening socket could not be bound.
    #[error("cannot listen for OTLP/{transport} on {addr}: {cause} (pick a free port, or port 0 for any free one)")]
    Bind {
        /// Which server failed to bind.
        transport: Transport,
        /// The address it tried.
        addr: SocketAddr,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// A TLS certificate or key file could not be read.
    #[error("cannot read TLS file {}: {cause}", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// The TLS certificate chain or key is unusable.
    #[error(
        "unusable TLS identity: {message} (give a PEM certificate chain and its PEM private key)"
    )]
    Tls {
        /// What is wrong (never the key's bytes).
        message: String,
    },
    /// A required header that no request could carry.
    #[error("invalid required header `{name}`: give NAME=VALUE, a header name and a visible-ASCII value")]
    InvalidRequiredHeader {
        /// The header's name as given (its value is not shown: it is a secret).
        name: String,
    },
    /// A combination the receiver cannot serve.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What was asked for.
        what: String,
    },
    /// A dump file could not be created or written.
    #[error("cannot write receiver dump {}: {cause}", path.display())]
    DumpWrite {
        /// The dump file.
        path: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// A dump file could not be read.
    #[error("cannot read receiver dump {}: {cause}", path.display())]
    DumpRead {
        /// The dump file.
        path: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// A line of a dump file is not a dump line.
    #[error("{}:{line} is not a receiver dump line: {message}", path.display())]
    DumpLine {
        /// The dump file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A received request could not be encoded as JSON.
    #[error("cannot encode a received {signal} request as JSON: {cause}")]
    Encode {
        /// The request's signal.
        signal: Signal,
        /// What serde_json said.
        cause: serde_json::Error,
    },
}
