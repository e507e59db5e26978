//! `kspan`: attaches eBPF probes to `do_signalfd4` and ships each call as an OpenTelemetry span
//! and log record.

mod attach;
mod btf;
mod cgroup_filter;
mod cli;
mod counter_sources;
mod declaration;
mod declared_probe;
mod function_probe;
mod health;
mod kernel_function;
mod output_file;
mod privileges;
mod probes;
mod reader;
mod run;
mod signalfd_probe;
mod stop;
mod syscall_numbers;
mod syscall_probe;
mod tracefs;
mod usage_error;

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use tracing_subscriber::EnvFilter;
use usage_error::UsageError;

/// kspan's own events (and its libraries' warnings) at info.
const DEFAULT_LOG_FILTER: &str = "info";

fn main() -> ExitCode {
    // Before anything else, so a SIGTERM during the start is a clean stop, not a kill.
    let held = stop::hold();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("KSPAN_LOG")
                .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kspan: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        let signals = stop::StopSignals::install(held)
            .map_err(|error| anyhow::anyhow!("cannot handle SIGINT and SIGTERM: {error}"))?;
        run::run(cli, signals).await
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kspan: error: {error:#}");
            if error.chain().any(|cause| cause.is::<UsageError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Help and version as clap prints them; any other command-line error as one line (clap's
/// message, then its details such as possible values and tips, without the usage block), exit 2.
fn usage_error(error: clap::Error) -> ExitCode {
    if !error.use_stderr() {
        error.exit();
    }
    let text = error.render().to_string();
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take_while(|line| {
            !line.starts_with("Usage:") && !line.starts_with("For more information")
        });
    let message = lines.next().unwrap_or("invalid command line");
    let message = message.strip_prefix("error: ").unwrap_or(message);
    let details: Vec<&str> = lines.collect();
    if details.is_empty() {
        eprintln!("kspan: error: {message}");
    } else {
        eprintln!("kspan: error: {message} ({})", details.join("; "));
    }
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}
