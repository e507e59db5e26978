//! `kspan-e2e overhead`: the overhead measurement as a command, for QEMU guests (where
//! `cargo xtask bench --vm` runs it) and for trying it by hand.

use std::{path::PathBuf, process::ExitCode};

use kspan_e2e::bench::overhead::{
    measure_overhead, OverheadConfig, OverheadSample, Variant, OVERHEAD_JSON,
};

/// Options of `kspan-e2e overhead`.
#[derive(Debug, clap::Args)]
pub struct OverheadArgs {
    /// kspan's --attach value (`auto` is resolved by a warm-up run).
    #[arg(long, default_value = "auto")]
    pub attach: String,
    /// Variants, in the order each round runs them.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Variant::Bare, Variant::Floor, Variant::Kspan])]
    pub variants: Vec<Variant>,
    /// Rounds; each runs every variant once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: u64,
    /// Timed signalfd4 calls per run.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: u64,
    /// bpftrace binary, for the bpftrace variant.
    #[arg(long)]
    pub bpftrace: Option<PathBuf>,
    /// Directory with the kspan and signalfd-workload binaries.
    #[arg(long)]
    pub bin_dir: PathBuf,
    /// Where logs and the report (overhead.json) go.
    #[arg(long)]
    pub out_dir: PathBuf,
}

/// Runs the measurement, printing one line per run; the report lands in `--out-dir`.
pub async fn overhead_main(args: OverheadArgs) -> ExitCode {
    let config = OverheadConfig {
        attach: args.attach,
        variants: args.variants,
        rounds: args.rounds as usize,
        calls: args.calls,
        bin_dir: args.bin_dir,
        out_dir: args.out_dir,
        baseline_bin_dir: None,
        bpftrace: args.bpftrace,
    };
    let progress = |sample: &OverheadSample| {
        println!(
            "round {} {:<8} {:>10.1} ns/call",
            sample.round,
            sample.variant.name(),
            sample.ns_per_call
        );
    };
    match measure_overhead(&config, progress).await {
        Ok(report) => {
            println!(
                "overhead ({}, kernel {}): {} runs written to {}",
                report.attach,
                report.kernel,
                report.samples.len(),
                config.out_dir.join(OVERHEAD_JSON).display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kspan-e2e: overhead measurement failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}
