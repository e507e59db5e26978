//! `cargo xtask`: project automation that is not `cargo build`/`cargo test`.
//!
//! Builds on the stable toolchain alone: `setup` is what installs the eBPF toolchain.

mod apt;
mod attach_mode;
mod command;
mod paths;
mod setup;
mod vm;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::attach_mode::AttachMode;

#[derive(Parser)]
#[command(about = "kspan project automation", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what this machine lacks to build kspan (rust-src, bpf-linker) and, on request,
    /// to run VM tests and benchmarks.
    Setup {
        /// Also install the VM test tools (qemu-system-x86, busybox-static, cpio).
        #[arg(long)]
        vm: bool,
        /// Also install the benchmark peers (bpftrace, bpftool).
        #[arg(long)]
        bench: bool,
    },
    /// Boot Debian kernels in QEMU, run the end-to-end capture in each guest once per attach
    /// mode, and judge the results on the host.
    VmTest {
        /// Boot this bzImage instead of the kernels in ci/kernels.toml (repeatable).
        #[arg(long = "kernel", value_name = "PATH")]
        kernels: Vec<PathBuf>,
        /// Run only these attach modes (repeatable; default: each kernel's required modes).
        #[arg(long = "mode", value_enum, value_name = "MODE")]
        modes: Vec<AttachMode>,
        /// Longest one guest may run, boot to power-off, in seconds.
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// Boot the remaining kernels after one has failed.
        #[arg(long)]
        keep_going: bool,
        /// Guests running at once [default: the number of CPUs; on 2 cores two guests at once
        /// finished sooner than one after the other].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
        jobs: Option<u64>,
    },
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { vm, bench } => setup::run(setup::SetupOptions { vm, bench }).map(|()| true),
        Command::VmTest { kernels, modes, timeout, keep_going, jobs } => vm::run(&vm::VmTestOptions {
            kernel_images: kernels,
            modes,
            timeout: std::time::Duration::from_secs(timeout),
            keep_going,
            jobs: jobs.map_or_else(default_jobs, |jobs| jobs as usize),
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
