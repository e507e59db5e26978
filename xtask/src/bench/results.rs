//! What `cargo xtask bench` found, as written to `target/bench/results.json`.

use std::collections::BTreeMap;

use kspan_e2e::bench::{
    idle::IdleRun,
    kernel_time::ProgramTime,
    overhead::{OverheadReport, OverheadSample, Variant},
    throughput::{ExportMode, Load, ThroughputRun},
};
use serde::Serialize;

use super::stats::{self, BurstRound, GoalCheck, Spread, VariantSummary};

/// Everything one bench run measured.
#[derive(Debug, Serialize)]
pub struct BenchResults {
    /// A smoke run: too short to mean anything.
    pub smoke: bool,
    /// Measured on this machine.
    pub host: HostResults,
    /// Measured in QEMU guests (`--vm`).
    pub vm: Option<VmResults>,
}

/// The host's overhead and throughput.
#[derive(Debug, Serialize)]
pub struct HostResults {
    /// Per-call overhead.
    pub overhead: OverheadSummary,
    /// Seconds each throughput load ran.
    pub throughput_seconds: f64,
    /// One row per load.
    pub throughput: Vec<ThroughputRow>,
    /// The highest load that lost nothing.
    pub max_lossless: Option<MaxLossless>,
    /// An idle kspan's CPU, wakeups and memory.
    pub idle: IdleRun,
    /// Encoding alone (`cargo bench -p kspan-otel --bench encode`), beside its prost baseline.
    pub encoding: Option<EncodingRun>,
    /// Issue 16's goals on agent CPU, encoding, idle CPU and memory (the per-call ones are
    /// in `overhead.goals`).
    pub goals: Vec<GoalCheck>,
}

/// What the encode bench measured: CPU ns per call, median of its rounds.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct EncodingRun {
    /// A span and a log record per call, in one pass (what export does).
    pub span_and_log_ns: f64,
    /// The span request alone.
    pub span_ns: f64,
    /// The log request alone.
    pub log_ns: f64,
    /// The same two requests through `opentelemetry-proto`'s prost structs.
    pub prost_baseline_ns: f64,
    /// Page faults per batch of steady encoding (request buffers reused).
    pub page_faults_per_batch: f64,
}

impl HostResults {
    /// Checks the goals that are not per call.
    pub fn host_goals(
        throughput: &[ThroughputRow],
        idle: &IdleRun,
        encoding: Option<&EncodingRun>,
    ) -> Vec<GoalCheck> {
        let mut goals = Vec::new();
        let at_100k = throughput.iter().find(|row| {
            row.run.load == Load::Rate(100_000) && row.run.export == ExportMode::SpansAndLogs
        });
        if let Some(row) = at_100k {
            goals.push(GoalCheck::at_most(
                "kspan's CPU at 100k calls/s (span + log record, OTLP/gRPC, no gzip)",
                row.cpu_ms_per_1k_calls,
                1.0,
                "ms per 1,000 calls",
            ));
        }
        if let Some(encoding) = encoding {
            goals.push(GoalCheck::at_most(
                "encoding a call's span and log record",
                encoding.span_and_log_ns,
                500.0,
                "CPU ns per call",
            ));
        }
        goals.push(GoalCheck::at_most(
            "an idle kspan's CPU",
            idle.cpu_percent,
            0.1,
            "% of a core",
        ));
        let peak = throughput
            .iter()
            .map(|row| row.peak_rss_mib)
            .fold(idle.rss_kib as f64 / 1024.0, f64::max);
        goals.push(GoalCheck::at_most(
            "kspan's resident memory, idle and under every load",
            peak,
            40.0,
            "MiB at the highest",
        ));
        goals
    }
}

/// One overhead measurement, summed up, with its runs.
#[derive(Debug, Serialize)]
pub struct OverheadSummary {
    /// Kernel release.
    pub kernel: String,
    /// Probe mode.
    pub probe: String,
    /// Timed calls per run.
    pub calls_per_run: u64,
    /// Rounds run.
    pub rounds: usize,
    /// Per variant.
    pub variants: Vec<VariantSummary>,
    /// kspan's added ns over bpftrace's, round by round.
    pub kspan_added_per_bpftrace_added: Option<Spread>,
    /// kspan's added ns over the empty floor programs', round by round.
    pub kspan_added_per_floor_added: Option<Spread>,
    /// kspan's rounds as bursts: calls made, delivered and lost in each.
    pub bursts: Vec<BurstRound>,
    /// The per-call goals, checked (not asserted).
    pub goals: Vec<GoalCheck>,
    /// Every run, in order.
    pub runs: Vec<OverheadSample>,
    /// Each tracer's programs' time inside the kernel, from a run with statistics on.
    pub kernel_time: Vec<KernelTimeSummary>,
}

/// A tracer's in-kernel time: per call, and per program.
#[derive(Debug, Serialize)]
pub struct KernelTimeSummary {
    /// The tracer.
    pub variant: Variant,
    /// All its programs' run time per traced call.
    pub ns_per_call: f64,
    /// Each program that ran.
    pub programs: Vec<ProgramTime>,
}

impl OverheadSummary {
    /// Sums up a report.
    pub fn new(report: OverheadReport) -> Self {
        let variants = stats::summarize(&report);
        let bursts = stats::bursts(&report);
        let goals = stats::goals(&variants, &bursts);
        Self {
            kspan_added_per_bpftrace_added: stats::added_ratio(&report, Variant::Bpftrace),
            kspan_added_per_floor_added: stats::added_ratio(&report, Variant::Floor),
            kernel: report.kernel,
            probe: report.attach,
            calls_per_run: report.calls,
            rounds: report.rounds,
            variants,
            bursts,
            goals,
            runs: report.samples,
            kernel_time: report
                .kernel_time
                .into_iter()
                .map(|time| KernelTimeSummary {
                    variant: time.variant,
                    ns_per_call: time.ns_per_call(),
                    programs: time.programs,
                })
                .collect(),
        }
    }
}

/// A throughput run with the figures derived from it.
#[derive(Debug, Serialize)]
pub struct ThroughputRow {
    /// The load's name, e.g. `10k/s`.
    pub label: String,
    /// What was measured.
    #[serde(flatten)]
    pub run: ThroughputRun,
    /// Calls per second achieved.
    pub calls_per_second: f64,
    /// Spans per second of workload time that arrived.
    pub spans_per_second: f64,
    /// Calls that never arrived as spans.
    pub lost: u64,
    /// Where they were lost (non-zero stages only).
    pub lost_at: BTreeMap<&'static str, u64>,
    /// kspan's CPU milliseconds per 1,000 calls, startup excluded.
    pub cpu_ms_per_1k_calls: f64,
    /// kspan's peak RSS in MiB.
    pub peak_rss_mib: f64,
}

impl ThroughputRow {
    /// Derives the row's figures.
    pub fn new(run: ThroughputRun) -> Self {
        let label = match run.export.note() {
            "" => run.load.to_string(),
            note => format!("{}, {note}", run.load),
        };
        Self {
            label,
            calls_per_second: run.calls_per_second(),
            spans_per_second: run.spans_per_second(),
            lost: run.lost(),
            lost_at: loss_stages(&run),
            cpu_ms_per_1k_calls: run.cpu_ms_per_1k_calls(),
            peak_rss_mib: run.peak_rss_kib as f64 / 1024.0,
            run,
        }
    }

    /// Whether every call arrived and the workload's calls went as planned.
    pub fn lossless(&self) -> bool {
        self.lost == 0 && self.run.unexpected == 0
    }
}

/// kspan's loss counters that are non-zero, plus calls missing that kspan did not count.
fn loss_stages(run: &ThroughputRun) -> BTreeMap<&'static str, u64> {
    let (agent, kernel, export) = (&run.agent, &run.agent.kernel, &run.agent.export);
    let uncounted = run.lost().saturating_sub(agent.lost);
    [
        ("ring buffer full", kernel.ring_buffer_full),
        ("entry without return", kernel.stale_entries),
        ("entry not stored", kernel.entries_not_stored),
        ("malformed", agent.malformed),
        ("export queue full", export.dropped_queue_full),
        (
            "export failed or evicted from the retry backlog",
            export.spans_failed,
        ),
        ("not counted by kspan", uncounted),
    ]
    .into_iter()
    .filter(|(_, count)| *count > 0)
    .collect()
}

/// The highest load at which nothing was lost.
#[derive(Debug, Serialize)]
pub struct MaxLossless {
    /// The load's name.
    pub label: String,
    /// Calls per second achieved at it.
    pub calls_per_second: f64,
}

/// The lossless row with the highest achieved rate.
pub fn max_lossless(rows: &[ThroughputRow]) -> Option<MaxLossless> {
    rows.iter()
        .filter(|row| row.lossless())
        .max_by(|a, b| a.calls_per_second.total_cmp(&b.calls_per_second))
        .map(|row| MaxLossless {
            label: row.label.clone(),
            calls_per_second: row.calls_per_second,
        })
}

/// Overhead in QEMU guests.
#[derive(Debug, Serialize)]
pub struct VmResults {
    /// Timed calls per guest run.
    pub calls_per_run: u64,
    /// One per kernel and mode that brought results back.
    pub guests: Vec<GuestOverhead>,
    /// Kernels or modes that brought none, and why.
    pub problems: Vec<String>,
}

/// One kernel × mode's overhead.
#[derive(Debug, Serialize)]
pub struct GuestOverhead {
    /// The kernel's name in `ci/kernels.toml`.
    pub kernel_name: String,
    /// The measurement.
    #[serde(flatten)]
    pub overhead: OverheadSummary,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kspan_e2e::bench::AgentSummary;

    fn run(load: Load, calls: u64, spans: u64, queue_full: u64) -> ThroughputRun {
        let mut agent = AgentSummary::default();
        agent.export.dropped_queue_full = queue_full;
        agent.lost = queue_full;
        ThroughputRun {
            load,
            export: ExportMode::SpansAndLogs,
            probe: "tracepoint".into(),
            threads: 2,
            calls_made: calls,
            workload_seconds: 1.0,
            unexpected: 0,
            spans_received: spans,
            logs_received: spans,
            agent,
            startup_ms: 100.0,
            cpu_seconds_at_ready: 0.0,
            cpu_seconds: 1.0,
            peak_rss_kib: 2048,
            exit_seconds: 0.5,
        }
    }

    #[test]
    fn losses_are_placed_and_the_best_lossless_load_found() {
        let rows: Vec<ThroughputRow> = [
            run(Load::Rate(1000), 1000, 1000, 0),
            run(Load::Rate(10_000), 10_000, 10_000, 0),
            run(Load::Rate(100_000), 100_000, 60_000, 39_000),
        ]
        .into_iter()
        .map(ThroughputRow::new)
        .collect();
        let lossy = &rows[2];
        assert_eq!(lossy.lost, 40_000);
        assert_eq!(
            lossy.lost_at,
            BTreeMap::from([
                ("export queue full", 39_000),
                ("not counted by kspan", 1000)
            ])
        );
        assert_eq!(lossy.peak_rss_mib, 2.0);
        let best = max_lossless(&rows).expect("a lossless load");
        assert_eq!(best.label, "10k/s");
        assert_eq!(max_lossless(&rows[2..]).map(|b| b.label), None);
    }
}
