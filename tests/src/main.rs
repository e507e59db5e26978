//! `kspan-e2e`: runs one capture (`run`) or judges a run directory (`judge`). Inside QEMU
//! guests `cargo xtask vm-test` uses `run`; the host judges the results it brings back.

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

mod overhead_command;

use clap::{Parser, Subcommand};
use kspan_e2e::{judge_dir, run_capture, CaptureConfig, Destination, Transport, Workload};

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
            workload_args,
        } => {
            let config = CaptureConfig {
                attach,
                destination: Destination::Receiver(transport),
                bin_dir,
                kspan_wrapper: Vec::new(),
                out_dir,
                workload: Workload::Scenarios(workload_args),
                kspan_args,
                kspan_env: Vec::new(),
                timeout: Duration::from_secs(timeout_secs),
                stop_kspan_after: None,
                receiver_outage: None,
                receiver_security: Default::default(),
                endpoint_userinfo: None,
            };
            match run_capture(&config).await {
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
