//! Command-line options. Settings not given here come from the standard `OTEL_*` variables.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use clap::Parser;
use kspan_common::FILTER_CAPACITY;

use kspan_common::AttachMode;

/// Turns each kernel signalfd call into an OpenTelemetry span and log record.
#[derive(Debug, Parser)]
#[command(name = "kspan", version, about, long_about = None)]
pub struct Cli {
    /// Probe pair: `auto` tries kprobe, then fentry, then tracepoint. The default of every
    /// declared probe.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,

    /// Trace this (repeatable): `syscall:NAME` (its tracepoints, every argument), or
    /// `signalfd` (the built-in probe). With no --probe or --probes: signalfd.
    #[arg(long = "probe", value_name = "PROBE")]
    pub probes: Vec<String>,

    /// Trace the probes declared in this TOML file (repeatable); see the README's "Declaring
    /// probes".
    #[arg(long = "probes", value_name = "FILE")]
    pub probe_files: Vec<PathBuf>,

    /// Where calls go: OTLP to a collector, or one readable line per call on stdout.
    #[arg(long, value_enum, default_value_t = ExporterKind::Otlp)]
    pub exporter: ExporterKind,

    /// OTLP transport of every signal [default: OTEL_EXPORTER_OTLP_{TRACES,LOGS,METRICS}_PROTOCOL,
    /// then OTEL_EXPORTER_OTLP_PROTOCOL, else grpc].
    #[arg(long, value_enum)]
    pub otlp_protocol: Option<OtlpProtocol>,

    /// Collector base URL, e.g. http://localhost:4317 [default: OTEL_EXPORTER_OTLP_ENDPOINT].
    #[arg(long)]
    pub otlp_endpoint: Option<String>,

    /// Extra request header KEY=VALUE (repeatable), on top of OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(long = "otlp-header", value_name = "KEY=VALUE", value_parser = parse_header)]
    pub otlp_headers: Vec<(String, String)>,

    /// File of extra request headers, one KEY=VALUE per line (kept out of `ps`, unlike
    /// --otlp-header); --otlp-header wins for the same name.
    #[arg(long, value_name = "FILE")]
    pub otlp_headers_file: Option<PathBuf>,

    /// PEM file of the CA that signed the collector's certificate
    /// [default: OTEL_EXPORTER_OTLP_{TRACES,LOGS,METRICS}_CERTIFICATE, then
    /// OTEL_EXPORTER_OTLP_CERTIFICATE].
    #[arg(long, value_name = "FILE")]
    pub otlp_ca_cert: Option<PathBuf>,

    /// Per-request export timeout, e.g. 10s [default: OTEL_EXPORTER_OTLP_TIMEOUT, else 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub otlp_timeout: Option<Duration>,

    /// Capture only this process id (repeatable, at most 1024); applied in the kernel.
    #[arg(long = "pid", value_name = "PID", value_parser = parse_pid)]
    pub pids: Vec<u32>,

    /// Capture only threads with this name (repeatable, at most 1024 names of at most 15 bytes);
    /// applied in the kernel.
    #[arg(long = "comm", value_name = "NAME", value_parser = parse_comm)]
    pub comms: Vec<String>,

    /// Capture only tasks in this cgroup or below it (repeatable): a path as /proc/<pid>/cgroup
    /// shows it, or its directory under the cgroup2 mount; applied in the kernel.
    #[arg(long = "cgroup", value_name = "PATH", value_parser = parse_cgroup)]
    pub cgroups: Vec<String>,

    /// Capture only this container's tasks (repeatable): its id or a prefix of at least 12 hex
    /// digits, as `docker ps` and `crictl ps` show it; its cgroup is found at start. Applied in
    /// the kernel.
    #[arg(long = "container", value_name = "ID", value_parser = parse_container_id)]
    pub containers: Vec<String>,

    /// Create this file once the probes are live (readiness signal for scripts).
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,

    /// Write counters of what was captured, exported and lost to this file (JSON) at exit.
    #[arg(long, value_name = "FILE")]
    pub summary_file: Option<PathBuf>,

    /// Permission bits of the ready and summary files, in octal (e.g. 0644 to let other users
    /// read them).
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = parse_file_mode)]
    pub output_file_mode: u32,

    /// Kernel ring buffer size in bytes: a power of two from one page to 256 MiB.
    #[arg(long, default_value_t = 1 << 22, value_parser = parse_ring_buffer_size)]
    pub ring_buffer_bytes: u32,

    /// Calls that may wait for export before new ones are dropped (and counted).
    // A burst of 200k calls (the bench loop's) fits while export catches up; the queue takes
    // memory only while it holds calls.
    #[arg(long, default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(1..))]
    pub export_queue: u32,

    /// Calls kept for retry while the collector is unreachable; the oldest beyond this are
    /// dropped (and counted).
    #[arg(long, default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(1..))]
    pub export_backlog: u32,

    /// How long the final flush may take after SIGINT/SIGTERM, e.g. 5s; what it cannot deliver
    /// by then is counted as lost at stop.
    #[arg(long, default_value = "5s", value_parser = parse_shutdown_timeout)]
    pub shutdown_timeout: Duration,

    /// Calls of one process within this window share a trace, e.g. 60s (at least 1s).
    #[arg(long, default_value = "60s", value_parser = parse_trace_window)]
    pub trace_window: Duration,

    /// Which resource calls are sent under: one per traced process (its executable's name as
    /// `service.name`, unless OTEL_SERVICE_NAME sets one), or one for the host
    /// (`service.name = kspan`).
    #[arg(long, value_enum, default_value_t = ResourcePer::Process)]
    pub resource_per: ResourcePer,

    /// Add `process.executable.path` and `process.command_line` to each process's resource.
    /// Off by default: command lines can hold secrets.
    #[arg(long)]
    pub process_details: bool,

    /// Attach empty programs on the same hooks instead (the overhead floor, for benchmarks).
    #[arg(long, hide = true)]
    pub floor: bool,

    /// Kernel function for kprobe/fentry (for testing the fallback chain).
    #[arg(long, default_value = "do_signalfd4", hide = true)]
    pub kernel_function: String,
}

/// A command-line mistake only visible once every value is parsed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--process-details` describes processes, and `--resource-per host` has no process
    /// resource to put them on.
    #[error("--process-details needs a resource per process: drop --resource-per host")]
    ProcessDetailsOnHostResource,
    /// More distinct filter values than the kernel-side filter map holds.
    #[error("{given} distinct {option} values: the in-kernel filter holds at most {capacity}")]
    TooManyFilterValues {
        /// `--pid` or `--comm`.
        option: &'static str,
        /// Distinct values given.
        given: usize,
        /// The filter map's size.
        capacity: u32,
    },
}

impl Cli {
    /// Checks what no single value's parser can: the filters fit their kernel maps, and the
    /// options agree.
    pub fn check(&self) -> Result<(), CliError> {
        if self.process_details && self.resource_per == ResourcePer::Host {
            return Err(CliError::ProcessDetailsOnHostResource);
        }
        let pids = self.pids.iter().collect::<BTreeSet<_>>().len();
        let comms = self.comms.iter().collect::<BTreeSet<_>>().len();
        for (option, given) in [("--pid", pids), ("--comm", comms)] {
            if given > FILTER_CAPACITY as usize {
                return Err(CliError::TooManyFilterValues {
                    option,
                    given,
                    capacity: FILTER_CAPACITY,
                });
            }
        }
        Ok(())
    }
}

/// `--exporter` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExporterKind {
    /// OTLP spans and logs to a collector.
    Otlp,
    /// One readable line per call on stdout.
    Stdout,
}

/// `--resource-per` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ResourcePer {
    /// A resource per traced process.
    Process,
    /// One resource for the host.
    Host,
}

impl From<ResourcePer> for kspan_otel::ResourcePer {
    fn from(per: ResourcePer) -> Self {
        match per {
            ResourcePer::Process => Self::Process,
            ResourcePer::Host => Self::Host,
        }
    }
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

fn parse_cgroup(value: &str) -> Result<String, String> {
    match value.trim() {
        "" => Err("a cgroup path cannot be empty".to_string()),
        path => Ok(path.to_string()),
    }
}

/// Shortest container id prefix: what `docker ps` shows.
const CONTAINER_ID_MIN: usize = 12;

fn parse_container_id(value: &str) -> Result<String, String> {
    let id = value.to_ascii_lowercase();
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{value}` is not a container id: hex digits only"));
    }
    match id.len() {
        n if n < CONTAINER_ID_MIN => Err(format!(
            "{n} hex digits: give at least {CONTAINER_ID_MIN} of the container id, as `docker ps` shows it"
        )),
        n if n > 64 => Err(format!("{n} hex digits: a container id has 64")),
        _ => Ok(id),
    }
}

/// Largest `--ring-buffer-bytes`: about 2 million calls (128-byte records), 16 s of the fastest
/// load measured (130,717 calls/s) with the reader stalled. The buffer is kernel memory that is never swapped
/// and is mapped into kspan; more would hide a stuck reader behind gigabytes, not save calls.
const RING_BUFFER_MAX_BYTES: u32 = 256 << 20;

fn parse_ring_buffer_size(value: &str) -> Result<u32, String> {
    let bytes: u32 = value.parse().map_err(|e| format!("{e}"))?;
    let page = 4096;
    if bytes < page || !bytes.is_power_of_two() {
        return Err(format!("{bytes} is not a power of two of at least {page}"));
    }
    if bytes > RING_BUFFER_MAX_BYTES {
        return Err(format!(
            "{bytes} is more than the largest allowed, {RING_BUFFER_MAX_BYTES} (256 MiB)"
        ));
    }
    Ok(bytes)
}

/// Where the kernel says how large a process id can be (ids are below it).
const PID_MAX_FILE: &str = "/proc/sys/kernel/pid_max";

fn parse_pid(value: &str) -> Result<u32, String> {
    let pid: u32 = value.parse().map_err(|e| format!("{e}"))?;
    let pid_max: u32 = std::fs::read_to_string(PID_MAX_FILE)
        .map_err(|error| error.to_string())
        .and_then(|text| {
            text.trim()
                .parse()
                .map_err(|_| format!("`{}` is not a number", text.trim()))
        })
        .map_err(|error| format!("cannot read {PID_MAX_FILE} to check it: {error}"))?;
    check_pid(pid, pid_max)
}

fn check_pid(pid: u32, pid_max: u32) -> Result<u32, String> {
    match pid {
        0 => Err("0 is not a process id".to_string()),
        pid if pid >= pid_max => Err(format!(
            "no process can have id {pid}: this kernel's ids are below {pid_max} ({PID_MAX_FILE})"
        )),
        pid => Ok(pid),
    }
}

fn parse_trace_window(value: &str) -> Result<Duration, String> {
    let window = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if window < Duration::from_secs(1) {
        return Err("a trace window is at least 1s".to_string());
    }
    Ok(window)
}

fn parse_file_mode(value: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(value, 8)
        .map_err(|_| format!("`{value}` is not an octal mode such as 0600 or 0644"))?;
    if mode > 0o777 {
        return Err(format!(
            "{value} has bits beyond rwx for user, group and others: give at most 0777"
        ));
    }
    Ok(mode)
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
    fn ring_buffer_size_is_at_most_256_mib() {
        assert_eq!(parse_ring_buffer_size("268435456"), Ok(256 << 20));
        assert_eq!(
            parse_ring_buffer_size("536870912"),
            Err("536870912 is more than the largest allowed, 268435456 (256 MiB)".into())
        );
        assert!(parse_ring_buffer_size("2147483648").is_err());
    }

    #[test]
    fn pids_are_between_1_and_pid_max() {
        assert_eq!(check_pid(1, 32768), Ok(1));
        assert_eq!(check_pid(32767, 32768), Ok(32767));
        assert_eq!(
            check_pid(32768, 32768),
            Err("no process can have id 32768: this kernel's ids are below 32768 (/proc/sys/kernel/pid_max)".into())
        );
        assert_eq!(check_pid(0, 32768), Err("0 is not a process id".into()));
        // This kernel's own limit.
        assert_eq!(parse_pid("1"), Ok(1));
        assert!(parse_pid("4294967295").is_err());
    }

    #[test]
    fn trace_window_is_at_least_a_second() {
        assert_eq!(parse_trace_window("1s"), Ok(Duration::from_secs(1)));
        for short in ["0", "0s", "999ms"] {
            assert_eq!(
                parse_trace_window(short),
                Err("a trace window is at least 1s".into()),
                "{short}"
            );
        }
    }

    #[test]
    fn filters_must_fit_the_kernel_maps() {
        let parse = |args: &[String]| {
            Cli::try_parse_from(std::iter::once("kspan".to_string()).chain(args.iter().cloned()))
                .unwrap()
        };
        let pids = |n: u32| {
            (1..=n)
                .flat_map(|pid| ["--pid".to_string(), pid.to_string()])
                .collect::<Vec<_>>()
        };
        assert!(parse(&pids(FILTER_CAPACITY)).check().is_ok());
        assert_eq!(
            parse(&pids(FILTER_CAPACITY + 1))
                .check()
                .unwrap_err()
                .to_string(),
            "1025 distinct --pid values: the in-kernel filter holds at most 1024"
        );
        // Repeats take one slot.
        let mut repeated = pids(FILTER_CAPACITY);
        repeated.extend(["--pid".to_string(), "1".to_string()]);
        assert!(parse(&repeated).check().is_ok());
        let comms = (0..=FILTER_CAPACITY)
            .flat_map(|n| ["--comm".to_string(), format!("t{n}")])
            .collect::<Vec<_>>();
        assert_eq!(
            parse(&comms).check().unwrap_err().to_string(),
            "1025 distinct --comm values: the in-kernel filter holds at most 1024"
        );
    }

    #[test]
    fn container_ids_are_12_to_64_hex_digits() {
        assert_eq!(
            parse_container_id("0123456789AB"),
            Ok("0123456789ab".into())
        );
        assert_eq!(parse_container_id(&"a".repeat(64)), Ok("a".repeat(64)));
        assert_eq!(
            parse_container_id("0123456789a"),
            Err(
                "11 hex digits: give at least 12 of the container id, as `docker ps` shows it"
                    .into()
            )
        );
        assert!(parse_container_id(&"a".repeat(65)).is_err());
        assert_eq!(
            parse_container_id("0123456789ag"),
            Err("`0123456789ag` is not a container id: hex digits only".into())
        );
        assert!(parse_cgroup(" ").is_err());
    }

    #[test]
    fn file_modes_are_octal_permission_bits() {
        assert_eq!(parse_file_mode("0644"), Ok(0o644));
        assert_eq!(parse_file_mode("600"), Ok(0o600));
        assert!(parse_file_mode("0999").is_err());
        assert_eq!(
            parse_file_mode("4755"),
            Err("4755 has bits beyond rwx for user, group and others: give at most 0777".into())
        );
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
