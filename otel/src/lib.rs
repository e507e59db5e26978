//! kspan's telemetry: decoded signalfd calls become OpenTelemetry spans and log records
//! (or readable lines), shipped by a bounded, counted export pipeline.

pub mod counters;
mod env;
mod error;
pub mod export;
mod ids;
#[cfg(any(test, feature = "test-support"))]
pub mod prost_baseline;
mod request_buffers;
mod resource;
mod stats;
mod wire;

pub use env::{env_var, Env};
pub use error::ExportError;
pub use ids::TraceGrouping;
pub use request_buffers::{RequestBuffer, RequestBuffers};
pub use resource::{HostInfo, ResourcePer, Resources};
pub use stats::{ExportSnapshot, ExportStats};
pub use wire::{CallEncoder, Requests, Wanted};

#[cfg(test)]
mod semconv_tests;
