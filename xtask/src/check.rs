//! `cargo xtask test`: everything CI runs, in order, each step timed against the README's table.
//!
//! The workspace is compiled once, in the dev profile, for everything: clippy runs as the
//! compiler of the workspace's own crates (`RUSTC_WORKSPACE_WRAPPER`), so linting costs no
//! separate build; the tests, the end-to-end binaries, the VM guests and the bench smoke run
//! all use that one build.

mod steps;

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use self::steps::{StepTimes, README_STEPS_HEADING};
use crate::{
    bench,
    command::{self, Profile},
    fuzz, paths, setup, vm,
};

/// Seconds each fuzz target runs in CI: a smoke run that keeps the targets building and
/// running (`cargo xtask fuzz` fuzzes for longer; `cargo test` replays the kept corpus).
const FUZZ_SMOKE_SECONDS: u64 = 10;

/// `cargo xtask test` options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Skip the QEMU guests (a quicker local run; CI never skips them).
    #[arg(long)]
    pub skip_vm: bool,
}

/// Installs the toolchain and tools, then lints, builds and tests (unit, CLI, end to end), a
/// short fuzz run, VM tests and a benchmark smoke run. Returns whether everything passed.
pub fn run(options: &Options) -> Result<bool> {
    let root = paths::workspace_root();
    let free_at_start = free_disk_bytes(&root)?;
    println!("==> disk: {} free", gib(free_at_start));
    let mut times = StepTimes::default();
    if let Some(secs) = steps::secs_since_ci_started() {
        times.push("build xtask", secs);
    }

    let started = Instant::now();
    // bench: bpftool lists loaded programs in the shutdown test; bpftrace is the bench's peer.
    setup::run(&setup::Options {
        build_only: false,
        vm: !options.skip_vm,
        bench: true,
        fuzz: true,
    })?;
    times.record("setup", started);
    if !nix::unistd::geteuid().is_root() {
        bail!("the end-to-end tests load eBPF programs: run `cargo xtask test` as root");
    }
    // Every cargo below inherits it; cargo keeps it out of the dependencies' builds, and the
    // nightly builds (probes, fuzz targets) remove it.
    std::env::set_var("RUSTC_WORKSPACE_WRAPPER", clippy_driver()?);

    let cargo = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO"));
        command.current_dir(&root).args(args);
        command
    };
    let mut steps: Vec<(&str, Step)> = vec![
        ("format", Step::Run(cargo(&["fmt", "--all", "--check"]))),
        ("lint probes (BPF target)", Step::Run(lint_probes(&root))),
    ];
    // Also builds every binary the tests run (they find them beside themselves, in
    // target/debug), which vm-test and the bench smoke reuse.
    steps.push(("build + lint", Step::Lint(cargo(&command::BUILD_ALL_TESTS))));
    steps.push((
        "test",
        Step::Run(cargo(&[
            "test",
            "--workspace",
            "--exclude",
            "kspan-probes",
            "--no-fail-fast",
        ])),
    ));

    for (name, step) in steps {
        let started = Instant::now();
        match step {
            Step::Run(mut command) => {
                println!("==> {name}: {}", command::describe(&command));
                command::run(&mut command)?;
            }
            Step::Lint(mut command) => {
                println!("==> {name}: {}", command::describe(&command));
                build_denying_warnings(&mut command)?;
            }
        }
        times.record(name, started);
    }

    let mut passed = true;
    println!(
        "==> fuzz ({FUZZ_SMOKE_SECONDS} s per target; `cargo test` already replayed fuzz/corpus/)"
    );
    let started = Instant::now();
    passed &= fuzz::run(&fuzz::Options {
        seconds: FUZZ_SMOKE_SECONDS,
    })?;
    times.record("fuzz", started);
    if !options.skip_vm {
        println!("==> vm-test");
        let started = Instant::now();
        passed &= vm::run(&vm::Options::every_kernel(Profile::Dev))?;
        times.record("vm-test", started);
    }
    println!("==> bench smoke (measures nothing; keeps the benchmark runnable)");
    let started = Instant::now();
    passed &= bench::run(&bench::Options::smoke(Profile::Dev))?;
    times.record("bench smoke", started);

    let readme = root.join("README.md");
    let budget = std::fs::read_to_string(&readme)
        .map(|text| steps::parse_readme_table(&text))
        .unwrap_or_default();
    if budget.is_empty() {
        println!(
            "(no `{README_STEPS_HEADING}` table in {}: nothing to compare with)",
            readme.display()
        );
    }
    print!("{}", times.report(&budget));
    // A CI run once failed for want of disk: say what a run takes.
    let free_at_end = free_disk_bytes(&root)?;
    println!(
        "==> disk: {} free, this run used {}",
        gib(free_at_end),
        gib(free_at_start.saturating_sub(free_at_end))
    );
    Ok(passed)
}

/// How a step runs.
enum Step {
    /// A command that must exit 0.
    Run(Command),
    /// A build that must exit 0 and print no warning.
    Lint(Command),
}

/// The stable toolchain's clippy-driver, beside the cargo that built xtask.
fn clippy_driver() -> Result<PathBuf> {
    let driver = Path::new(env!("CARGO")).with_file_name("clippy-driver");
    if !driver.is_file() {
        bail!(
            "{} is missing: `rustup component add clippy` installs it",
            driver.display()
        );
    }
    Ok(driver)
}

/// Clippy on the probes, for the BPF target, with the nightly toolchain they build with.
fn lint_probes(root: &Path) -> Command {
    let mut lint = Command::new("rustup");
    lint.current_dir(root)
        .args(["run", "nightly", "cargo", "clippy", "-p", "kspan-probes"])
        .args([
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .args([
            "--target-dir",
            "target/probes-clippy",
            "--",
            "-D",
            "warnings",
        ])
        .env("RUSTFLAGS", "--cfg=bpf_target_arch=\"x86_64\"")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    lint
}

/// Runs a cargo build with JSON messages, prints each diagnostic as rustc renders it and fails
/// when the build fails or any warning was printed (clippy's `-D warnings`, without passing
/// flags that would change how the dependencies are built).
fn build_denying_warnings(command: &mut Command) -> Result<()> {
    command
        .arg("--message-format=json-diagnostic-rendered-ansi")
        .stdout(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start `{}`", command::describe(command)))?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut warnings = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's messages")?;
        match steps::diagnostic(&line) {
            Some(diagnostic) => {
                eprint!("{}", diagnostic.rendered);
                warnings += usize::from(diagnostic.is_warning);
            }
            None if !line.starts_with('{') => println!("{line}"),
            None => {}
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("`{}` failed ({status})", command::describe(command));
    }
    if warnings > 0 {
        bail!(
            "`{}` printed {warnings} warning(s): fix them (CI denies warnings, as `cargo clippy -- -D warnings` does)",
            command::describe(command)
        );
    }
    Ok(())
}

fn free_disk_bytes(path: &std::path::Path) -> Result<u64> {
    let stats =
        nix::sys::statvfs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok(stats.blocks_available() * stats.fragment_size())
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}
