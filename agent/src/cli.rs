//! Command-line options. Settings not given here come from the standard `OTEL_*` variables.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

use crate::attach::AttachMode;

/// Turns each kernel signalfd call into an OpenTelemetry span and log record.
#[derive(Debug, Parser)]
#[command(name = "kspan", version, about, long_about = None)]
pub struct Cli {
    /// Probe pair: `auto` tries kprobe, then fentry, then tracepoint.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,

    /// Where calls go: OTLP to a collector, or one readable line per call on stdout.
    #[arg(long, value_enum, default_value_t = ExporterKind::Otlp)]
    pub exporter: ExporterKind,

    /// OTLP transport [default: OTEL_EXPORTER_OTLP_PROTOCOL, else grpc].
    #[arg(long, value_enum)]
    pub otlp_protocol: Option<OtlpProtocol>,

    /// Collector base URL, e.g. http://localhost:4317 [default: OTEL_EXPORTER_OTLP_ENDPOINT].
    #[arg(long)]
    pub otlp_endpoint: Option<String>,

    /// Extra request header KEY=VALUE (repeatable), on top of OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(long = "otlp-header", value_name = "KEY=VALUE", value_parser = parse_header)]
    pub otlp_headers: Vec<(String, String)>,

    /// PEM file of the CA that signed the collector's certificate
    /// [default: OTEL_EXPORTER_OTLP_CERTIFICATE].
    #[arg(long, value_name = "FILE", env = "OTEL_EXPORTER_OTLP_CERTIFICATE")]
    pub otlp_ca_cert: Option<PathBuf>,

    /// Per-request export timeout, e.g. 10s [default: OTEL_EXPORTER_OTLP_TIMEOUT, else 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub otlp_timeout: Option<Duration>,

    /// Capture only this process id (repeatable); applied in the kernel.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Capture only threads with this name (repeatable, at most 15 bytes); applied in the kernel.
    #[arg(long = "comm", value_name = "NAME", value_parser = parse_comm)]
    pub comms: Vec<String>,

    /// Create this file once the probes are live (readiness signal for scripts).
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,

    /// Write counters of what was captured, exported and lost to this file (JSON) at exit.
    #[arg(long, value_name = "FILE")]
    pub summary_file: Option<PathBuf>,

    /// Kernel ring buffer size in bytes: a power of two, at least one page.
    #[arg(long, default_value_t = 1 << 22, value_parser = parse_ring_buffer_size)]
    pub ring_buffer_bytes: u32,

    /// Calls that may wait for export before new ones are dropped (and counted).
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    pub export_queue: u32,

    /// Calls kept for retry while the collector is unreachable; the oldest beyond this are
    /// dropped (and counted).
    #[arg(long, default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(1..))]
    pub export_backlog: u32,

    /// How long the final flush may take after SIGINT/SIGTERM, e.g. 5s; what it cannot deliver
    /// by then is counted as lost at stop.
    #[arg(long, default_value = "5s", value_parser = parse_shutdown_timeout)]
    pub shutdown_timeout: Duration,

    /// Calls of one process within this window share a trace, e.g. 60s.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub trace_window: Duration,

    /// Attach empty programs on the same hooks instead (the overhead floor, for benchmarks).
    #[arg(long, hide = true)]
    pub floor: bool,

    /// Kernel function for kprobe/fentry (for testing the fallback chain).
    #[arg(long, default_value = "do_signalfd4", hide = true)]
    pub kernel_function: String,
}

/// `--exporter` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExporterKind {
    /// OTLP spans and logs to a collector.
    Otlp,
    /// One readable line per call on stdout.
    Stdout,
}

/// `--otlp-protocol` values, named as in OTEL_EXPORTER_OTLP_PROTOCOL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

fn parse_header(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err("expected KEY=VALUE".to_string()),
    }
}

fn parse_comm(value: &str) -> Result<String, String> {
    match value.len() {
        0 => Err("a thread name cannot be empty".to_string()),
        1..=15 => Ok(value.to_string()),
        n => Err(format!(
            "{n} bytes: the kernel keeps at most 15 bytes of a thread name"
        )),
    }
}

fn parse_ring_buffer_size(value: &str) -> Result<u32, String> {
    let bytes: u32 = value.parse().map_err(|e| format!("{e}"))?;
    let page = 4096;
    if bytes < page || !bytes.is_power_of_two() {
        return Err(format!("{bytes} is not a power of two of at least {page}"));
    }
    Ok(bytes)
}

fn parse_shutdown_timeout(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(timeout) if timeout.is_zero() => {
            Err("the final flush needs some time: give at least 1ms".to_string())
        }
        parsed => parsed.map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_at_the_first_equals() {
        assert_eq!(
            parse_header("authorization=Bearer a=b"),
            Ok(("authorization".into(), "Bearer a=b".into()))
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("=x").is_err());
    }

    #[test]
    fn comm_is_limited_to_15_bytes() {
        assert!(parse_comm("signalfd-worklo").is_ok());
        assert!(parse_comm("signalfd-workload").is_err());
        assert!(parse_comm("").is_err());
    }

    #[test]
    fn ring_buffer_size_must_be_a_power_of_two() {
        assert_eq!(parse_ring_buffer_size("4096"), Ok(4096));
        assert!(parse_ring_buffer_size("5000").is_err());
        assert!(parse_ring_buffer_size("2048").is_err());
        assert!(parse_ring_buffer_size("big").is_err());
    }

    #[test]
    fn shutdown_timeout_must_be_positive() {
        assert_eq!(
            parse_shutdown_timeout("1500ms"),
            Ok(Duration::from_millis(1500))
        );
        assert!(parse_shutdown_timeout("0s").is_err());
        assert!(parse_shutdown_timeout("soon").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
