//! Lossless throughput and footprint: the workload's volume mode at a fixed rate (or flat out)
//! under kspan exporting to a counting receiver; calls made against spans received, where kspan
//! says any were lost, and kspan's startup time, CPU time and peak memory.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;

use super::{
    counting_receiver,
    process::{Readiness, Tracer},
    workload::{binary, VolumeOutcome, Workload},
    AgentSummary,
};

/// Calls of the short flat-out run that measures how fast the workload goes under kspan.
const CALIBRATION_CALLS: u64 = 20_000;

/// Longest kspan may take to attach.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How hard the workload calls.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// This many calls per second, all threads together.
    Rate(u64),
    /// As fast as the threads go. The call count is set from a short calibration run under
    /// kspan, so the run lasts about the asked duration.
    FlatOut,
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Rate(rate) if rate % 1000 == 0 => write!(f, "{}k/s", rate / 1000),
            Load::Rate(rate) => write!(f, "{rate}/s"),
            Load::FlatOut => f.write_str("flat out"),
        }
    }
}

/// What kspan exports, over OTLP/gRPC, set through the standard variables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportMode {
    /// A span and a log record per call, uncompressed: OTLP's defaults.
    #[default]
    SpansAndLogs,
    /// Spans only (`OTEL_LOGS_EXPORTER=none`).
    SpansOnly,
    /// A span and a log record per call, gzip-compressed (`OTEL_EXPORTER_OTLP_COMPRESSION=gzip`).
    Gzip,
}

impl ExportMode {
    /// The environment kspan runs with.
    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            ExportMode::SpansAndLogs => &[],
            ExportMode::SpansOnly => &[("OTEL_LOGS_EXPORTER", "none")],
            ExportMode::Gzip => &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")],
        }
    }

    /// How reports name it beside the load; empty for the default.
    pub fn note(self) -> &'static str {
        match self {
            ExportMode::SpansAndLogs => "",
            ExportMode::SpansOnly => "log records off",
            ExportMode::Gzip => "gzip",
        }
    }

    /// Whether kspan sends log records.
    pub fn sends_logs(self) -> bool {
        self != ExportMode::SpansOnly
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct ThroughputConfig {
    /// kspan's `--attach` value.
    pub attach: String,
    /// How hard the workload calls.
    pub load: Load,
    /// What kspan exports.
    pub export: ExportMode,
    /// Workload threads.
    pub threads: usize,
    /// How long the workload calls.
    pub duration: Duration,
    /// Directory holding `kspan` and `signalfd-workload`.
    pub bin_dir: PathBuf,
    /// Where kspan's log and summary go.
    pub out_dir: PathBuf,
}

/// What one throughput run measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ThroughputRun {
    /// How hard the workload called.
    pub load: Load,
    /// What kspan exported.
    #[serde(default)]
    pub export: ExportMode,
    /// The probe mode kspan attached.
    pub probe: String,
    /// Workload threads.
    pub threads: usize,
    /// Calls the workload made.
    pub calls_made: u64,
    /// How long it took to make them.
    pub workload_seconds: f64,
    /// Calls the kernel answered other than the workload planned (should be 0).
    pub unexpected: u64,
    /// Spans that reached the receiver.
    pub spans_received: u64,
    /// Log records that reached the receiver.
    pub logs_received: u64,
    /// kspan's own account of what it captured and lost.
    pub agent: AgentSummary,
    /// From starting kspan to its ready file existing.
    pub startup_ms: f64,
    /// kspan's CPU time until it was ready.
    pub cpu_seconds_at_ready: f64,
    /// kspan's CPU time over its whole life, including the export after SIGINT.
    pub cpu_seconds: f64,
    /// kspan's peak resident memory.
    pub peak_rss_kib: u64,
    /// From SIGINT (sent when the workload is done) to kspan's exit: the export backlog it
    /// still had to drain.
    pub exit_seconds: f64,
}

impl ThroughputRun {
    /// Calls made that never arrived as spans.
    pub fn lost(&self) -> u64 {
        self.calls_made.saturating_sub(self.spans_received)
    }

    /// Calls per second the workload achieved.
    pub fn calls_per_second(&self) -> f64 {
        self.calls_made as f64 / self.workload_seconds.max(1e-9)
    }

    /// Spans per second of workload time that arrived.
    pub fn spans_per_second(&self) -> f64 {
        self.spans_received as f64 / self.workload_seconds.max(1e-9)
    }

    /// kspan's CPU time per 1,000 calls, startup excluded.
    pub fn cpu_ms_per_1k_calls(&self) -> f64 {
        let working = (self.cpu_seconds - self.cpu_seconds_at_ready).max(0.0);
        working * 1e3 / (self.calls_made.max(1) as f64 / 1e3)
    }
}

/// Runs the workload under kspan as `config` asks.
pub async fn measure_throughput(config: &ThroughputConfig) -> anyhow::Result<ThroughputRun> {
    let threads = config.threads.max(1).to_string();
    let args = match config.load {
        Load::Rate(rate) => vec![
            "--rate".to_string(),
            rate.to_string(),
            "--duration".into(),
            config.duration.as_secs_f64().to_string(),
            "--threads".into(),
            threads,
        ],
        Load::FlatOut => {
            let calibration = session(
                config,
                &flat_out_args(&threads, CALIBRATION_CALLS),
                "flat-out-calibration",
            )
            .await?;
            let calls = (calibration.calls_per_second() * config.duration.as_secs_f64())
                .round()
                .max(1.0) as u64;
            flat_out_args(&threads, calls)
        }
    };
    session(config, &args, &label(config.load, config.export)).await
}

fn flat_out_args(threads: &str, calls: u64) -> Vec<String> {
    [
        "--scenario",
        "random",
        "--threads",
        threads,
        "--calls",
        &calls.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// The file-name stem of a load's artifacts.
fn label(load: Load, export: ExportMode) -> String {
    let load = match load {
        Load::Rate(rate) => format!("rate-{rate}"),
        Load::FlatOut => "flat-out".to_string(),
    };
    match export {
        ExportMode::SpansAndLogs => load,
        ExportMode::SpansOnly => format!("{load}-spans-only"),
        ExportMode::Gzip => format!("{load}-gzip"),
    }
}

/// One receiver + kspan + workload session.
async fn session(
    config: &ThroughputConfig,
    workload_args: &[String],
    label: &str,
) -> anyhow::Result<ThroughputRun> {
    let out = &config.out_dir;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let file = |what: &str| out.join(format!("{label}.{what}"));
    let (go, ready, summary) = (file("go"), file("ready"), file("summary.json"));
    for stale in [&go, &ready, &summary] {
        let _ = fs::remove_file(stale);
    }
    let (receiver, exporter_args) = counting_receiver().await?;
    let workload = Workload::spawn(&config.bin_dir, workload_args, &go)?;
    let mut command = Command::new(binary(&config.bin_dir, "kspan")?);
    command
        .args([
            "--attach",
            &config.attach,
            "--pid",
            &workload.pid()?.to_string(),
        ])
        .args(&exporter_args)
        .arg("--ready-file")
        .arg(&ready)
        .arg("--summary-file")
        .arg(&summary)
        .envs(config.export.env().iter().copied())
        .stdout(Stdio::null());
    let mut kspan = Tracer::spawn("kspan", &mut command, &file("log"))?;
    let startup = kspan
        .wait_ready(&Readiness::File(ready.clone()), READY_TIMEOUT)
        .await?;
    let cpu_seconds_at_ready = kspan.cpu_so_far()?;
    fs::write(&go, b"").with_context(|| format!("creating {}", go.display()))?;
    let made: VolumeOutcome = workload
        .volume_result(config.duration * 20 + Duration::from_secs(120))
        .await?;
    let usage = kspan.stop().await?;
    let stats = receiver.store().stats();
    receiver.shutdown().await;
    if usage.exit_code != Some(0) {
        anyhow::bail!(
            "kspan exited with {:?}; see {}",
            usage.exit_code,
            file("log").display()
        );
    }
    Ok(ThroughputRun {
        load: config.load,
        export: config.export,
        probe: probe_of(&ready)?,
        threads: config.threads,
        calls_made: made.calls,
        workload_seconds: made.elapsed.as_secs_f64(),
        unexpected: made.unexpected,
        spans_received: stats.spans as u64,
        logs_received: stats.logs as u64,
        agent: AgentSummary::read(&summary)?,
        startup_ms: startup.as_secs_f64() * 1e3,
        cpu_seconds_at_ready,
        cpu_seconds: usage.cpu_seconds,
        peak_rss_kib: usage.peak_rss_kib,
        exit_seconds: usage.exit_seconds,
    })
}

/// The `probe=` line of kspan's ready file.
fn probe_of(ready: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(ready).with_context(|| format!("reading {}", ready.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("probe="))
        .map(str::to_string)
        .with_context(|| format!("kspan's ready file {} names no probe", ready.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(calls: u64, spans: u64) -> ThroughputRun {
        ThroughputRun {
            load: Load::Rate(10_000),
            export: ExportMode::SpansAndLogs,
            probe: "tracepoint".into(),
            threads: 2,
            calls_made: calls,
            workload_seconds: 2.0,
            unexpected: 0,
            spans_received: spans,
            logs_received: spans,
            agent: AgentSummary::default(),
            startup_ms: 150.0,
            cpu_seconds_at_ready: 0.1,
            cpu_seconds: 0.5,
            peak_rss_kib: 30_000,
            exit_seconds: 0.2,
        }
    }

    #[test]
    fn derived_figures() {
        let run = run(20_000, 19_000);
        assert_eq!(run.lost(), 1000);
        assert_eq!(run.calls_per_second(), 10_000.0);
        assert_eq!(run.spans_per_second(), 9_500.0);
        // 0.4 s of CPU for 20 thousand calls: 20 ms per thousand.
        assert!((run.cpu_ms_per_1k_calls() - 20.0).abs() < 1e-9);
    }

    #[test]
    fn loads_read_well() {
        assert_eq!(Load::Rate(100_000).to_string(), "100k/s");
        assert_eq!(Load::Rate(1500).to_string(), "1500/s");
        assert_eq!(Load::FlatOut.to_string(), "flat out");
        assert_eq!(
            serde_json::to_string(&Load::Rate(1000)).expect("json"),
            r#"{"rate":1000}"#
        );
        assert_eq!(
            serde_json::to_string(&Load::FlatOut).expect("json"),
            r#""flat_out""#
        );
    }
}
