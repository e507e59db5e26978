//! `kspan`: attaches eBPF probes to `do_signalfd4` and ships each call as an OpenTelemetry span
//! and log record.

mod attach;
mod btf;
mod cli;
mod health;
mod kernel_function;
mod privileges;
mod probes;
mod reader;
mod run;
mod stop;
mod summary;
mod tracefs;

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
// The record decoding is the library half of this package (the fuzz targets use it too).
use kspan::{clock, event};
use tracing_subscriber::EnvFilter;

/// A configuration mistake the user can fix: exit code 2, like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(#[from] kspan_otel::ExportError);

/// kspan's own events (and its libraries' warnings) at info.
const DEFAULT_LOG_FILTER: &str = "info";

fn main() -> ExitCode {
    // Before anything else, so a SIGTERM during the start is a clean stop, not a kill.
    let held = stop::hold();
    let cli = cli::Cli::parse();
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
