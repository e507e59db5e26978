//! `cargo xtask test`: everything CI runs, in order, each step timed.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{bench, command, fuzz, paths, setup, vm};

/// Seconds each fuzz target runs in CI. The fuzzer found its one bug within a second; what a
/// CI run mostly pays for is building the targets, which keeps them from rotting.
const FUZZ_SMOKE_SECONDS: u64 = 15;

/// What `test` runs besides the cargo tests.
pub struct CheckOptions {
    /// Skip the QEMU guests (quick local runs).
    pub skip_vm: bool,
}

/// Installs the toolchain and tools, then lints, tests (unit, CLI, end to end), a short fuzz run,
/// VM tests and a benchmark smoke run. Returns whether everything passed.
pub fn run(options: &CheckOptions) -> Result<bool> {
    // bench: bpftool lists loaded programs in the shutdown test; bpftrace is the bench's peer.
    setup::run(setup::SetupOptions {
        vm: !options.skip_vm,
        bench: true,
    })?;
    if !nix::unistd::geteuid().is_root() {
        bail!("the end-to-end tests load eBPF programs: run `cargo xtask test` as root");
    }
    let root = paths::workspace_root();
    let free_at_start = free_disk_bytes(&root)?;
    println!("==> disk: {} free", gib(free_at_start));
    let release = paths::target_dir().join("release");
    let cargo = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO"));
        command.current_dir(&root).args(args);
        command
    };
    // The probes build for the BPF target with the nightly toolchain.
    let mut lint_probes = Command::new("rustup");
    lint_probes
        .current_dir(&root)
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "-p",
            "kspan-probes",
            "--release",
        ])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args([
            "--target-dir",
            "target/probes-clippy",
            "--",
            "-D",
            "warnings",
        ])
        .env("RUSTFLAGS", "--cfg=bpf_target_arch=\"x86_64\"");
    // End-to-end tests drive release binaries: the debug agent is too slow for the load tests.
    let mut test = cargo(&["test", "--no-fail-fast"]);
    test.env("KSPAN_BIN_DIR", &release);

    let steps: Vec<(&str, Command)> = vec![
        ("format", cargo(&["fmt", "--all", "--check"])),
        (
            "lint",
            cargo(&["clippy", "--all-targets", "--", "-D", "warnings"]),
        ),
        (
            "lint xtask",
            cargo(&[
                "clippy",
                "-p",
                "xtask",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        ("lint probes (BPF target)", lint_probes),
        (
            "build release binaries",
            cargo(&["build", "--release", "--bins"]),
        ),
        ("test", test),
        ("test xtask", cargo(&["test", "-p", "xtask"])),
    ];
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    for (name, mut command) in steps {
        println!("==> {name}: {}", command::describe(&command));
        let started = Instant::now();
        command::run(&mut command)?;
        timings.push((name, started.elapsed()));
    }
    let mut passed = true;
    println!(
        "==> fuzz ({FUZZ_SMOKE_SECONDS} s per target; `cargo test` already replayed fuzz/corpus/)"
    );
    let started = Instant::now();
    passed &= fuzz::run(&fuzz::FuzzOptions {
        seconds: FUZZ_SMOKE_SECONDS,
    })?;
    timings.push(("fuzz", started.elapsed()));
    if !options.skip_vm {
        println!("==> vm-test");
        let started = Instant::now();
        passed &= vm::run(&vm::VmTestOptions::default())?;
        timings.push(("vm-test", started.elapsed()));
    }
    println!("==> bench smoke (measures nothing; keeps the benchmark runnable)");
    let started = Instant::now();
    passed &= bench::run(&bench::BenchOptions::smoke())?;
    timings.push(("bench smoke", started.elapsed()));
    print_timings(&timings);
    // A CI run once failed for want of disk: say what a run takes.
    let free_at_end = free_disk_bytes(&root)?;
    println!(
        "==> disk: {} free, this run used {}",
        gib(free_at_end),
        gib(free_at_start.saturating_sub(free_at_end))
    );
    Ok(passed)
}

fn free_disk_bytes(path: &std::path::Path) -> Result<u64> {
    let stats =
        nix::sys::statvfs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok(stats.blocks_available() * stats.fragment_size())
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn print_timings(timings: &[(&str, Duration)]) {
    println!("\n==> steps");
    for (name, took) in timings {
        println!("  {name:<26} {:>7.1} s", took.as_secs_f64());
    }
}
