//! Benchmark runs: per-call overhead of kspan against the bare call, the empty-program floor
//! and bpftrace ([`overhead`]), lossless throughput with kspan's footprint ([`throughput`]), and
//! an idle kspan's CPU and wakeups ([`idle`]).
//!
//! These only measure and record; judging the numbers is the caller's business. The same code
//! runs on the host (`cargo xtask bench` calls it directly) and inside QEMU guests
//! (`kspan-e2e overhead`, which writes [`overhead::OVERHEAD_JSON`] for the host to read).

pub mod idle;
pub mod kernel_time;
pub mod overhead;
mod process;
pub mod throughput;
mod workload;

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use kspan_receiver::{Receiver, ReceiverConfig, Store};

/// kspan's `--summary-file`: what it captured, exported and lost, stage by stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentSummary {
    /// Complete calls read from the ring buffer.
    pub calls_read: u64,
    /// Records that could not be decoded.
    pub malformed: u64,
    /// Kernel-side counters.
    pub kernel: KernelLosses,
    /// Export-side counters.
    pub export: ExportLosses,
    /// Calls lost at any stage, as kspan counts them.
    pub lost: u64,
}

/// The kernel-side counters of [`AgentSummary`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelLosses {
    /// Calls dropped because the ring buffer was full.
    pub ring_buffer_full: u64,
    /// Entries whose return never came.
    pub stale_entries: u64,
    /// Returns without a recorded entry (not calls lost: e.g. calls already running at attach).
    pub returns_without_entry: u64,
    /// Entries dropped because the in-flight map was full.
    pub entries_not_stored: u64,
}

/// The export-side counters of [`AgentSummary`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportLosses {
    /// Calls dropped because the export queue was full.
    pub dropped_queue_full: u64,
    /// Spans lost to failed exports.
    pub spans_failed: u64,
    /// Spans delivered.
    pub spans_exported: u64,
}

impl AgentSummary {
    /// Reads kspan's summary file.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading kspan's summary {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not kspan's summary JSON", path.display()))
    }
}

/// An OTLP/gRPC receiver on a free loopback port that counts what arrives but keeps none of
/// it (millions of kept spans would take gigabytes), and the kspan arguments that point at it.
async fn counting_receiver() -> anyhow::Result<(Receiver, Vec<String>)> {
    let config = ReceiverConfig {
        grpc_addr: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        ..ReceiverConfig::default()
    };
    let receiver = Receiver::start_with_store(config, Store::counting())
        .await
        .context("starting the OTLP receiver")?;
    let endpoint = receiver
        .grpc_endpoint()
        .context("the receiver serves no gRPC")?;
    let args = ["--otlp-protocol", "grpc", "--otlp-endpoint", &endpoint]
        .map(String::from)
        .to_vec();
    Ok((receiver, args))
}

/// The running kernel's release (`uname -r`), for the record.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|name| name.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_kspan_writes() {
        let json = r#"{
  "calls_read": 900003, "malformed": 0,
  "kernel": {"ring_buffer_full": 1, "stale_entries": 2, "returns_without_entry": 0,
             "entries_not_stored": 3, "in_flight": 0},
  "export": {"accepted": 108544, "dropped_queue_full": 791459, "spans_exported": 108544,
             "spans_failed": 4, "logs_exported": 108544, "logs_failed": 0, "export_errors": 0},
  "lost": 791469
}"#;
        let summary: AgentSummary = serde_json::from_str(json).expect("parses");
        assert_eq!(summary.calls_read, 900003);
        assert_eq!(summary.kernel.entries_not_stored, 3);
        assert_eq!(summary.export.dropped_queue_full, 791459);
        assert_eq!(summary.lost, 791469);
    }
}
