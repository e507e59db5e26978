//! `kspan-e2e`: runs one capture (`run`) or judges a run directory (`judge`). Inside QEMU
//! guests `cargo xtask vm-test` uses `run`; the host judges the results it brings back.

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

mod overhead_command;

use clap::{Parser, Subcommand};
use kspan_e2e::{
    judge_dir, run_capture, CaptureConfig, Destination, FakeContainers, Transport, Workload,
};

#[derive(Parser)]
#[command(about = "Run signalfd-workload under kspan with an OTLP receiver, or judge a run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time the signalfd4 bench loop bare and beside tracers, rounds interleaved (benchmarks).
    Overhead(overhead_command::OverheadArgs),
    /// Run the workload under kspan and leave the artifacts in --out-dir.
    Run {
        /// kspan's --attach value.
        #[arg(long, default_value = "auto")]
        attach: String,
        /// OTLP transport.
        #[arg(long, value_enum, default_value_t = Transport::Grpc)]
        transport: Transport,
        /// Directory with the kspan and signalfd-workload binaries.
        #[arg(long)]
        bin_dir: PathBuf,
        /// Where the artifacts go.
        #[arg(long)]
        out_dir: PathBuf,
        /// Longest the workload may run, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// Extra kspan argument (repeatable).
        #[arg(long = "kspan-arg", allow_hyphen_values = true)]
        kspan_args: Vec<String>,
        /// Run a workload in each of a set of cgroups named as container runtimes name them
        /// (made under the v2 mount, removed after), and capture them all or only the filters'.
        #[arg(long, value_enum)]
        containers: Option<ContainersRun>,
        /// Arguments for the workload.
        #[arg(last = true)]
        workload_args: Vec<String>,
    },
    /// Judge a run directory; exit 1 on any mismatch.
    Judge {
        /// The run's --out-dir.
        dir: PathBuf,
    },
}

/// `kspan-e2e run --containers` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ContainersRun {
    /// Capture every container's calls (`--cgroup` of the run's top cgroup).
    All,
    /// Capture one container (`--container`) and docker's cgroupfs tree (`--cgroup`).
    Filtered,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run {
            attach,
            transport,
            bin_dir,
            out_dir,
            timeout_secs,
            kspan_args,
            containers,
            workload_args,
        } => {
            let mut kspan_args = kspan_args;
            let mut workload = Workload::Scenarios(workload_args.clone());
            // Kept until the run is over: dropping it removes the cgroups.
            let mut fake = None;
            if let Some(run) = containers {
                let mut made = match FakeContainers::create("run") {
                    Ok(made) => made,
                    Err(error) => {
                        eprintln!("kspan-e2e: cannot make the test cgroups: {error:#}");
                        return ExitCode::FAILURE;
                    }
                };
                kspan_args.extend(match run {
                    ContainersRun::All => vec!["--cgroup".to_string(), made.root.clone()],
                    ContainersRun::Filtered => made.filter_args(),
                });
                if let Err(error) = made.write(&out_dir) {
                    eprintln!("kspan-e2e: {error:#}");
                    return ExitCode::FAILURE;
                }
                workload = made.workload(workload_args);
                fake = Some(made);
            }
            let config = CaptureConfig {
                attach,
                destination: Destination::Receiver(transport),
                bin_dir,
                kspan_wrapper: Vec::new(),
                out_dir,
                workload,
                kspan_args,
                kspan_env: Vec::new(),
                timeout: Duration::from_secs(timeout_secs),
                stop_kspan_after: None,
                receiver_outage: None,
                receiver_security: Default::default(),
                endpoint_userinfo: None,
            };
            let captured = run_capture(&config).await;
            drop(fake);
            match captured {
                Ok(record) => {
                    println!(
                        "run finished: kspan exit {:?}, workload exit {:?}",
                        record.kspan_exit, record.workload_exit
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("kspan-e2e: run failed: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Overhead(args) => overhead_command::overhead_main(args).await,
        Command::Judge { dir } => match judge_dir(&dir) {
            Ok(verdict) => {
                // A closed stdout (e.g. `| head`) must not turn a verdict into a panic.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{verdict}");
                if verdict.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(error) => {
                eprintln!("kspan-e2e: cannot judge {}: {error:#}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}
