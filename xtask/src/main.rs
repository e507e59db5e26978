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

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "kspan project automation", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what this machine lacks to build kspan (rust-src, bpf-linker) and to run its
    /// tests (capsh; rotel, in a venv under target/) and, on request, to run VM tests,
    /// benchmarks and the fuzzer.
    Setup(setup::Options),
    /// Boot Debian kernels in QEMU, run the end-to-end capture in each guest once per attach
    /// mode, and judge the results on the host.
    VmTest(vm::Options),
    /// Measure kspan's per-call overhead (against the bare call, the empty-program floor and
    /// bpftrace), lossless throughput and footprint; results in target/bench/.
    Bench(bench::Options),
    /// Build kspan and the workload, run the workload under kspan and print each captured
    /// call (no collector needed). Needs root.
    Demo,
    /// Fuzz the event decoder and the mask/flags/errno decoders (cargo-fuzz targets in fuzz/,
    /// seeded with fuzz/corpus/); installs cargo-fuzz if missing.
    Fuzz(fuzz::Options),
    /// Everything CI runs: install what is missing, lint, unit/CLI/end-to-end tests, fuzzing,
    /// VM tests and a benchmark smoke run, each step timed. Needs root.
    Test(check::Options),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup(options) => setup::run(&options).map(|()| true),
        Command::VmTest(options) => vm::run(&options),
        Command::Bench(options) => bench::run(&options),
        Command::Demo => demo::run().map(|()| true),
        Command::Fuzz(options) => fuzz::run(&options),
        Command::Test(options) => check::run(&options),
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
