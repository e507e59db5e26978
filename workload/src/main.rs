//! signalfd-workload: makes recorded signalfd/signalfd4 calls (`run`, the default) or times a
//! tight signalfd4 loop (`bench`).

use anyhow::Context;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use signalfd_workload::bench::{bench, SETUP_CALLS};
use signalfd_workload::wait::wait_for_path;
use signalfd_workload::{run_gated, HeldCalls, RunConfig, Scenario, WorkloadError};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Calls signalfd/signalfd4 in named scenarios and records every call in a JSON-lines manifest.
#[derive(Parser, Debug)]
#[command(
    name = "signalfd-workload",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run scenarios and write the manifest (the default when no subcommand is given).
    Run(RunArgs),
    /// Time a loop of signalfd4 calls updating one signalfd's mask; records nothing.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Scenario to run (repeatable); default: masks, flags, update, errors, threads, random.
    #[arg(long = "scenario", value_name = "NAME", value_enum)]
    scenarios: Vec<Scenario>,
    /// Write a JSON-lines record of every call here.
    #[arg(long, value_name = "PATH")]
    manifest: Option<PathBuf>,
    /// Write a JSON-lines record of every call of a syscall other than signalfd (the open
    /// scenario's openat calls) here.
    #[arg(long, value_name = "PATH")]
    declared_manifest: Option<PathBuf>,
    /// The open scenario: also record, for each openat call, a call of this kernel function
    /// inside it (its `dfd` and `filename`, the same result): the child span a probe on it
    /// makes. For `do_sys_openat2`, which every openat reaches.
    #[arg(long, value_name = "FUNCTION")]
    openat_inner: Option<String>,
    /// Open scenario: make each open again through openat2 and record it as an openat2 call
    /// (`dfd`, `filename` and `how->flags` as passed), the parent of `--openat-inner`'s call.
    #[arg(long)]
    openat2: bool,
    /// Threads of the threads and random scenarios.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// Calls per thread (threads scenario) and in total (random scenario).
    #[arg(long, default_value_t = 50)]
    calls: u64,
    /// Seed of the random scenario.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Volume mode: random calls at this many calls per second (all threads together).
    #[arg(long, value_name = "CALLS_PER_SEC", requires = "duration", conflicts_with = "calls", value_parser = positive_number)]
    rate: Option<f64>,
    /// Volume mode: run for this many seconds (rate x duration calls).
    #[arg(long, value_name = "SECS", requires = "rate", value_parser = positive_number)]
    duration: Option<f64>,
    /// Before --wait-for, hold this many calls inside the kernel (one thread each; their mask
    /// page faults); they finish once --wait-for exists, then the scenarios run. Needs root.
    #[arg(long, value_name = "CALLS", requires = "midflight_file", value_parser = clap::value_parser!(u16).range(1..=1024))]
    midflight: Option<u16>,
    /// Create this file once every --midflight call is held inside the kernel.
    #[arg(long, value_name = "PATH", requires = "midflight")]
    midflight_file: Option<PathBuf>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Timed signalfd4 calls (one more creates the fd).
    #[arg(long, default_value_t = 100_000)]
    calls: u64,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Args, Debug)]
struct WaitArgs {
    /// Before the first call, wait until this path exists (the agent's ready file).
    #[arg(long, value_name = "PATH")]
    wait_for: Option<PathBuf>,
    /// Give up waiting for --wait-for after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = positive_number)]
    wait_timeout: f64,
}

impl WaitArgs {
    fn wait(&self) -> Result<(), WorkloadError> {
        if let Some(path) = &self.wait_for {
            wait_for_path(path, Duration::from_secs_f64(self.wait_timeout))?;
        }
        Ok(())
    }
}

fn positive_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("expected a positive number, got {text:?}")),
    }
}

impl RunArgs {
    /// The run this asks for; volume mode (--rate) runs only the random scenario.
    fn config(&self) -> RunConfig {
        let volume = self.rate.zip(self.duration);
        let scenarios = match (volume, self.scenarios.is_empty()) {
            (Some(_), _) => vec![Scenario::Random],
            (None, true) => Scenario::DEFAULT.to_vec(),
            (None, false) => self.scenarios.clone(),
        };
        RunConfig {
            scenarios,
            threads: usize::from(self.threads),
            calls: volume.map_or(self.calls, |(rate, secs)| {
                (rate * secs).round().max(1.0) as u64
            }),
            seed: self.seed,
            rate: self.rate,
            manifest: self.manifest.clone(),
            declared_manifest: self.declared_manifest.clone(),
            openat_inner: self.openat_inner.clone(),
            openat2: self.openat2,
            midflight: self
                .midflight
                .zip(self.midflight_file.clone())
                .map(|(calls, held_file)| HeldCalls {
                    calls: usize::from(calls),
                    held_file,
                }),
        }
    }
}

fn run_command(args: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.rate.is_some() && args.scenarios.iter().any(|s| *s != Scenario::Random) {
        Cli::command()
            .error(
                ErrorKind::ArgumentConflict,
                "--rate runs only the random scenario",
            )
            .exit();
    }
    let gate = || args.wait.wait();
    let summary = run_gated(&args.config(), gate).context("workload run failed")?;
    eprintln!("signalfd-workload: {summary}");
    if summary.all_as_expected() {
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &summary.problems {
        eprintln!("signalfd-workload: unexpected: {problem}");
    }
    eprintln!(
        "signalfd-workload: the kernel answered {} of {} calls unexpectedly{}",
        summary.unexpected,
        summary.calls,
        if summary.unexpected > summary.problems.len() as u64 {
            " (first ones shown)"
        } else {
            ""
        }
    );
    Ok(ExitCode::FAILURE)
}

fn bench_command(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    args.wait.wait()?;
    let result = bench(args.calls)?;
    // A closed stdout (`| head -1`) is an error to report, not a panic as with println!.
    let mut out = std::io::stdout().lock();
    writeln!(out, "ns_per_call={}", result.ns_per_call())
        .and_then(|()| writeln!(out, "calls={}", result.calls))
        .and_then(|()| writeln!(out, "setup_calls={SETUP_CALLS}"))
        .context("writing the result to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let outcome = match &cli.command {
        Some(Command::Bench(args)) => bench_command(args),
        Some(Command::Run(args)) => run_command(args),
        None => run_command(&cli.run),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("signalfd-workload: {e:#}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn volume_mode_runs_random_for_rate_times_duration() {
        let cli = Cli::try_parse_from(["w", "--rate", "1000", "--duration", "2.5"]).expect("parse");
        let config = cli.run.config();
        assert_eq!(config.scenarios, [Scenario::Random]);
        assert_eq!((config.calls, config.rate), (2500, Some(1000.0)));
        assert!(Cli::try_parse_from(["w", "--rate", "1000"]).is_err());
        assert!(Cli::try_parse_from(["w", "--rate", "0", "--duration", "1"]).is_err());
    }

    #[test]
    fn no_scenario_means_the_default_ones() {
        let cli = Cli::try_parse_from(["w", "--manifest", "m.jsonl"]).expect("parse");
        assert_eq!(cli.run.config().scenarios, Scenario::DEFAULT);
        let cli = Cli::try_parse_from(["w", "run", "--scenario", "errors", "--scenario", "masks"])
            .expect("parse");
        let Some(Command::Run(args)) = cli.command else {
            panic!("run subcommand expected");
        };
        assert_eq!(args.config().scenarios, [Scenario::Errors, Scenario::Masks]);
    }

    #[test]
    fn midflight_needs_its_file_and_runs_before_the_scenarios() {
        assert!(Cli::try_parse_from(["w", "--midflight", "3"]).is_err());
        assert!(Cli::try_parse_from(["w", "--midflight-file", "held"]).is_err());
        assert!(Cli::try_parse_from(["w", "--scenario", "midflight"]).is_err());
        let cli = Cli::try_parse_from(["w", "--midflight", "3", "--midflight-file", "held"])
            .expect("parse");
        let config = cli.run.config();
        assert_eq!(
            config.midflight,
            Some(HeldCalls {
                calls: 3,
                held_file: "held".into()
            })
        );
        assert_eq!(config.scenarios, Scenario::DEFAULT);
    }
}
