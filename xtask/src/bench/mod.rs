//! `cargo xtask bench`: measures kspan's per-call overhead (against the bare call, the
//! empty-program floor and bpftrace, variants interleaved), lossless throughput and footprint,
//! and reports them in `target/bench/`: results.json, results.md (also printed) and bench.png.
//! It measures and reports; it never asserts timing.

mod chart;
mod encoding;
mod guest;
mod results;
mod stats;
mod table;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use kspan_e2e::bench::{
    idle::{measure_idle, IdleConfig},
    overhead::{measure_overhead, OverheadConfig, OverheadSample, Variant},
    throughput::{measure_throughput, ExportMode, Load, ThroughputConfig},
};

use self::results::{BenchResults, HostResults, OverheadSummary, ThroughputRow};
use crate::{
    command::{self, Profile},
    paths, setup,
};

/// Throughput loads and what kspan exports at each, in the order they run: 100k/s also with
/// log records off and with gzip on, so each one's CPU cost shows.
const LOADS: [(Load, ExportMode); 6] = [
    (Load::Rate(1_000), ExportMode::SpansAndLogs),
    (Load::Rate(10_000), ExportMode::SpansAndLogs),
    (Load::Rate(100_000), ExportMode::SpansAndLogs),
    (Load::Rate(100_000), ExportMode::SpansOnly),
    (Load::Rate(100_000), ExportMode::Gzip),
    (Load::FlatOut, ExportMode::SpansAndLogs),
];

/// `cargo xtask bench` options; `None` picks the default (or the smoke value).
#[derive(Debug, clap::Args)]
pub struct Options {
    /// A few seconds of everything: proves the bench runs, measures nothing meaningful.
    #[arg(long)]
    pub smoke: bool,
    /// Seconds each throughput load runs [default: 60; 1 with --smoke].
    #[arg(long = "duration", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_secs: Option<u64>,
    /// Overhead rounds, each running every variant once [default: 15; 2 with --smoke].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: Option<u64>,
    /// Timed signalfd4 calls per overhead run on the host; guests time a tenth
    /// [default: 200000; 5000 with --smoke].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: Option<u64>,
    /// Seconds an idle kspan (attached, nothing to capture) is measured [default: 60; 2 with
    /// --smoke].
    #[arg(long = "idle", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_secs: Option<u64>,
    /// Also measure the in-kernel time of an earlier build's programs in the same run: the
    /// directory holding its `kspan` (e.g. another checkout's `target/release`).
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<std::path::PathBuf>,
    /// Also measure the overhead in QEMU guests, in kprobe and fentry mode.
    #[arg(long)]
    pub vm: bool,
    /// Cargo profile of the measured binaries (`cargo xtask test` smoke-runs its dev build).
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    pub profile: Profile,
}

/// The settings a run uses once defaults are applied.
struct Plan {
    duration: Duration,
    idle: Duration,
    rounds: usize,
    calls: u64,
}

impl Options {
    /// The CI run: seconds of everything with binaries of `profile`, defaults otherwise.
    pub fn smoke(profile: Profile) -> Self {
        Self {
            smoke: true,
            duration_secs: None,
            rounds: None,
            calls: None,
            idle_secs: None,
            baseline: None,
            vm: false,
            profile,
        }
    }

    fn plan(&self) -> Plan {
        let (duration, rounds, calls, idle) = if self.smoke {
            (Duration::from_secs(1), 2, 5_000, Duration::from_secs(2))
        } else {
            // bpftrace's rounds are bimodal: more rounds give a steadier ratio to it.
            (
                Duration::from_secs(60),
                15,
                200_000,
                Duration::from_secs(60),
            )
        };
        Plan {
            duration: self.duration_secs.map_or(duration, Duration::from_secs),
            idle: self.idle_secs.map_or(idle, Duration::from_secs),
            rounds: self.rounds.map_or(rounds, |rounds| rounds as usize),
            calls: self.calls.unwrap_or(calls),
        }
    }
}

/// Runs the bench and writes its reports; `Ok(false)` when part of it could not run.
pub fn run(options: &Options) -> Result<bool> {
    let started = Instant::now();
    setup::run(&setup::Options {
        build_only: false,
        vm: options.vm,
        bench: true,
        fuzz: false,
    })?;
    if !nix::unistd::geteuid().is_root() {
        bail!("the bench loads eBPF programs: run `cargo xtask bench` as root");
    }
    let plan = options.plan();
    let bench_dir = paths::target_dir().join("bench");
    if bench_dir.exists() {
        fs::remove_dir_all(&bench_dir)
            .with_context(|| format!("cannot clear {}", bench_dir.display()))?;
    }
    // The guest's binaries include the host's.
    let guest_binaries = if options.vm {
        Some(crate::vm::build_guest_binaries(options.profile)?)
    } else {
        command::build_binaries(options.profile, &["kspan", "signalfd-workload"])?;
        None
    };
    let bin_dir = options.profile.bin_dir();
    let bpftrace = command::find_on_path("bpftrace")
        .context("bpftrace is not on PATH: `cargo xtask setup --bench` installs it")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut host = runtime.block_on(host_bench(
        &plan,
        &bin_dir,
        options.baseline.as_deref(),
        &bpftrace,
        &bench_dir.join("host"),
    ))?;
    println!("==> encoding alone, beside its prost baseline");
    host.encoding = Some(encoding::measure(
        options.profile,
        &bench_dir.join("host").join("encoding"),
    )?);
    host.goals = HostResults::host_goals(&host.throughput, &host.idle, host.encoding.as_ref());
    let mut complete = true;
    let vm = match guest_binaries {
        Some(binaries) => {
            let vm = guest::run(
                &binaries,
                plan.rounds,
                guest_calls(plan.calls),
                &bench_dir.join("vm"),
            )?;
            complete = vm.problems.is_empty();
            Some(vm)
        }
        None => None,
    };
    let results = BenchResults {
        smoke: options.smoke,
        host,
        vm,
    };
    let markdown = table::render(&results);
    write(
        &bench_dir.join("results.json"),
        &serde_json::to_string_pretty(&results)?,
    )?;
    write(&bench_dir.join("results.md"), &markdown)?;
    let png = bench_dir.join("bench.png");
    chart::draw(&results, &png)?;
    println!("\n{markdown}");
    println!(
        "Results: {} (also results.md); chart: {}; took {:.0} s.",
        bench_dir.join("results.json").display(),
        png.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(complete)
}

/// Emulation makes each call tens of times slower: guests time fewer calls per run.
fn guest_calls(host_calls: u64) -> u64 {
    (host_calls / 10).max(1_000)
}

/// The host's overhead rounds (every variant) and throughput loads.
async fn host_bench(
    plan: &Plan,
    bin_dir: &Path,
    baseline_bin_dir: Option<&Path>,
    bpftrace: &Path,
    out_dir: &Path,
) -> Result<HostResults> {
    println!(
        "==> per-call overhead: {} rounds of bare, floor, kspan, bpftrace; {} calls per run",
        plan.rounds, plan.calls
    );
    let config = OverheadConfig {
        attach: "auto".into(),
        variants: Variant::ALL.to_vec(),
        rounds: plan.rounds,
        calls: plan.calls,
        bin_dir: bin_dir.to_path_buf(),
        out_dir: out_dir.join("overhead"),
        baseline_bin_dir: baseline_bin_dir.map(Path::to_path_buf),
        bpftrace: Some(bpftrace.to_path_buf()),
    };
    let report = measure_overhead(&config, print_sample).await?;
    let overhead = OverheadSummary::new(report);
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let mut throughput = Vec::new();
    for (load, export) in LOADS {
        println!(
            "==> throughput at {load} {} for {} s ({threads} workload threads)",
            export.note(),
            plan.duration.as_secs_f64()
        );
        let config = ThroughputConfig {
            attach: overhead.probe.clone(),
            load,
            export,
            threads,
            duration: plan.duration,
            bin_dir: bin_dir.to_path_buf(),
            out_dir: out_dir.join("throughput"),
        };
        let row = ThroughputRow::new(measure_throughput(&config).await?);
        println!(
            "    {} calls ({:.0}/s), {} spans received, {} lost; kspan {:.1} ms CPU per 1k calls, \
             {:.1} MiB peak, exited {:.1} s after the stop",
            row.run.calls_made,
            row.calls_per_second,
            row.run.spans_received,
            row.lost,
            row.cpu_ms_per_1k_calls,
            row.peak_rss_mib,
            row.run.exit_seconds,
        );
        throughput.push(row);
    }
    let max_lossless = results::max_lossless(&throughput);
    println!(
        "==> idle: kspan attached with nothing to capture, {} s",
        plan.idle.as_secs_f64()
    );
    let idle = measure_idle(&IdleConfig {
        attach: overhead.probe.clone(),
        duration: plan.idle,
        bin_dir: bin_dir.to_path_buf(),
        out_dir: out_dir.join("idle"),
    })
    .await?;
    println!(
        "    {:.3} % of a core, {:.1} wakeups/s, {} threads, {:.1} MiB resident",
        idle.cpu_percent,
        idle.wakeups_per_second,
        idle.threads,
        idle.rss_kib as f64 / 1024.0
    );
    Ok(HostResults {
        overhead,
        throughput_seconds: plan.duration.as_secs_f64(),
        throughput,
        max_lossless,
        idle,
        // Both set once encoding has been measured.
        encoding: None,
        goals: Vec::new(),
    })
}

fn print_sample(sample: &OverheadSample) {
    println!(
        "    round {} {:<8} {:>9.1} ns/call",
        sample.round,
        sample.variant.name(),
        sample.ns_per_call
    );
}

fn write(path: &PathBuf, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_is_short_and_options_override_defaults() {
        let options = Options {
            rounds: Some(3),
            ..Options::smoke(Profile::Release)
        };
        let plan = options.plan();
        assert_eq!(plan.duration, Duration::from_secs(1));
        assert!(plan.idle <= Duration::from_secs(2));
        assert_eq!((plan.rounds, plan.calls), (3, 5_000));
        let full = Options {
            smoke: false,
            rounds: None,
            ..options
        }
        .plan();
        assert!(full.duration >= Duration::from_secs(60) && full.rounds >= 5);
        assert_eq!(full.idle, Duration::from_secs(60));
    }
}
