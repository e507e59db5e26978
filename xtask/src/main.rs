//! `cargo xtask`: project automation that is not `cargo build`/`cargo test`.
//!
//! Builds on the stable toolchain alone: `setup` is what installs the eBPF toolchain.

mod apt;
mod attach_mode;
mod bench;
mod check;
mod command;
mod demo;
mod fuzz;
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
        /// Also install cargo-fuzz (for `cargo xtask fuzz`).
        #[arg(long)]
        fuzz: bool,
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
        #[arg(long, default_value_t = vm::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// Boot the remaining kernels after one has failed.
        #[arg(long)]
        keep_going: bool,
        /// Guests running at once [default: the number of CPUs; on 2 cores two guests at once
        /// finished sooner than one after the other].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
        jobs: Option<u64>,
    },
    /// Measure kspan's per-call overhead (against the bare call, the empty-program floor and
    /// bpftrace), lossless throughput and footprint; results in target/bench/.
    Bench {
        /// A few seconds of everything: proves the bench runs, measures nothing meaningful.
        #[arg(long)]
        smoke: bool,
        /// Seconds each throughput load runs [default: 60; 1 with --smoke].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        duration: Option<u64>,
        /// Overhead rounds, each running every variant once [default: 7; 2 with --smoke].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: Option<u64>,
        /// Timed signalfd4 calls per overhead run on the host; guests time a tenth
        /// [default: 200000; 5000 with --smoke].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        calls: Option<u64>,
        /// Also measure the overhead in QEMU guests, in kprobe and fentry mode.
        #[arg(long)]
        vm: bool,
    },
    /// Build kspan and the workload, run the workload under kspan and print each captured
    /// call (no collector needed). Needs root.
    Demo,
    /// Fuzz the event decoder and the mask/flags/errno decoders (cargo-fuzz targets in fuzz/,
    /// seeded with fuzz/corpus/); installs cargo-fuzz if missing.
    Fuzz {
        /// Seconds each target runs.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
    },
    /// Everything CI runs: install what is missing, lint, unit/CLI/end-to-end tests, VM tests
    /// and a benchmark smoke run. Needs root.
    Test {
        /// Skip the QEMU guests (a quicker local run; CI never skips them).
        #[arg(long)]
        skip_vm: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { vm, bench, fuzz } => setup::run(setup::SetupOptions { vm, bench })
            .and_then(|()| {
                if fuzz {
                    setup::ensure_cargo_fuzz()
                } else {
                    Ok(())
                }
            })
            .map(|()| true),
        Command::VmTest {
            kernels,
            modes,
            timeout,
            keep_going,
            jobs,
        } => vm::run(&vm::VmTestOptions {
            kernel_images: kernels,
            modes,
            timeout: std::time::Duration::from_secs(timeout),
            keep_going,
            jobs: jobs.map_or_else(vm::default_jobs, |jobs| jobs as usize),
        }),
        Command::Bench {
            smoke,
            duration,
            rounds,
            calls,
            vm,
        } => bench::run(&bench::BenchOptions {
            smoke,
            duration: duration.map(std::time::Duration::from_secs),
            rounds: rounds.map(|rounds| rounds as usize),
            calls,
            vm,
        }),
        Command::Demo => demo::run().map(|()| true),
        Command::Fuzz { seconds } => fuzz::run(&fuzz::FuzzOptions { seconds }),
        Command::Test { skip_vm } => check::run(&check::CheckOptions { skip_vm }),
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
