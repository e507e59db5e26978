//! `cargo xtask vm-test`: boots kernels in QEMU, runs the end-to-end capture inside each guest
//! once per attach mode, brings the results out and judges them on the host.

mod console;
mod debian_version;
mod guest;
pub(crate) mod initramfs;
pub(crate) mod kernels;
pub(crate) mod qemu;
mod report;
pub(crate) mod results;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use self::{
    kernels::BootKernel,
    qemu::{Guest, GuestEnd},
    report::{BootTimes, Cell, KernelReport, Outcome},
};
use crate::{
    apt::Apt,
    command::{self, Profile},
    paths,
    probe_run::ProbeRun,
    setup,
};

/// `cargo xtask vm-test` options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Boot this bzImage instead of the kernels in ci/kernels.toml (repeatable).
    #[arg(long = "kernel", value_name = "PATH")]
    pub kernel_images: Vec<PathBuf>,
    /// Run only these attach modes (repeatable; default: each kernel's required modes).
    #[arg(long = "mode", value_enum, value_name = "MODE")]
    pub modes: Vec<ProbeRun>,
    /// Longest one guest may run, boot to power-off, in seconds.
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// Boot the remaining kernels after one has failed.
    #[arg(long)]
    pub keep_going: bool,
    /// Guests running at once [default: the number of CPUs; on 2 cores two guests at once
    /// finished sooner than one after the other].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: Option<u64>,
    /// Cargo profile of the guest's binaries (`cargo xtask test` reuses its dev build).
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    pub profile: Profile,
}

/// Longest one guest may run unless told otherwise, in seconds.
const DEFAULT_TIMEOUT_SECS: u64 = 120;

impl Options {
    /// Every kernel of `ci/kernels.toml` with its required modes, binaries of `profile`.
    pub fn every_kernel(profile: Profile) -> Self {
        Self {
            kernel_images: Vec::new(),
            modes: Vec::new(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            keep_going: false,
            jobs: None,
            profile,
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Guests running at once: one per CPU unless told otherwise.
    fn jobs(&self) -> usize {
        self.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            |jobs| jobs as usize,
        )
    }
}

/// A kernel to test and the modes to run on it.
struct Plan {
    name: String,
    kernel: Result<BootKernel, String>,
    modes: Vec<ProbeRun>,
}

/// Runs the VM test; `Ok(false)` when any cell failed.
pub fn run(options: &Options) -> Result<bool> {
    let started = Instant::now();
    let mut apt = Apt::default();
    // The guest binaries include kspan, whose build compiles the eBPF probes.
    setup::ensure_ebpf_toolchain()?;
    setup::ensure_vm_tools(&mut apt)?;
    let vm_dir = paths::target_dir().join("vm");

    let plans = plan_kernels(options, &vm_dir.join("kernels"), &mut apt)?;
    let building = Instant::now();
    let binaries = build_guest_binaries(options.profile)?;
    println!(
        "guest binaries ready in {:.1} s",
        building.elapsed().as_secs_f64()
    );
    let initrd = vm_dir.join("initrd.gz");
    let packing = Instant::now();
    initramfs::build(
        &binaries,
        &initramfs::init_script(&guest::guest_command()),
        &vm_dir.join("initramfs"),
        &initrd,
    )?;
    println!(
        "initramfs: {} ({:.1} MB) in {:.1} s",
        initrd.display(),
        fs::metadata(&initrd)
            .map(|meta| meta.len() as f64 / 1e6)
            .unwrap_or(0.0),
        packing.elapsed().as_secs_f64()
    );

    let reports = run_guests(&plans, &initrd, &vm_dir, options);
    print!("\n{}", report::render(&reports, started.elapsed()));
    Ok(reports.iter().all(KernelReport::passed))
}

fn plan_kernels(options: &Options, cache: &Path, apt: &mut Apt) -> Result<Vec<Plan>> {
    let chosen_modes = |defaults: &[ProbeRun]| -> Vec<ProbeRun> {
        let modes = if options.modes.is_empty() {
            defaults
        } else {
            &options.modes
        };
        let mut seen = BTreeSet::new();
        modes
            .iter()
            .copied()
            .filter(|mode| seen.insert(*mode))
            .collect()
    };
    if !options.kernel_images.is_empty() {
        let all = ProbeRun::ALL;
        let mut taken = BTreeSet::new();
        return options
            .kernel_images
            .iter()
            .map(|image| {
                let kernel = kernels::user_kernel(image, &mut taken)?;
                Ok(Plan {
                    name: kernel.name.clone(),
                    kernel: Ok(kernel),
                    modes: chosen_modes(&all),
                })
            })
            .collect();
    }
    let list = paths::workspace_root().join("ci/kernels.toml");
    let entries = kernels::load_kernels_toml(&list)?;
    let mut plans = Vec::new();
    for entry in entries {
        let kernel = kernels::fetch(&entry, cache, apt).map_err(|error| format!("{error:#}"));
        if let Err(error) = &kernel {
            if !options.keep_going {
                bail!("cannot get kernel {}: {error}", entry.name);
            }
            println!("[{}] cannot get the kernel: {error}", entry.name);
        }
        plans.push(Plan {
            name: entry.name.clone(),
            kernel,
            modes: chosen_modes(&entry.required_modes),
        });
    }
    Ok(plans)
}

/// Builds the guest's binaries and returns their paths.
pub(crate) fn build_guest_binaries(profile: Profile) -> Result<Vec<PathBuf>> {
    let bin_dir = command::build_binaries(profile, guest::CARGO_PACKAGES)?;
    guest::GUEST_BINARIES
        .iter()
        .map(|name| {
            let path = bin_dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                bail!(
                    "{} was not built: is it a binary of {}?",
                    path.display(),
                    guest::CARGO_PACKAGES.join(", ")
                )
            }
        })
        .collect()
}

/// Boots every planned kernel, `options.jobs` at a time, in list order; without `--keep-going`
/// no new guest starts after one failed.
fn run_guests(
    plans: &[Plan],
    initrd: &Path,
    vm_dir: &Path,
    options: &Options,
) -> Vec<KernelReport> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let reports: Mutex<BTreeMap<usize, KernelReport>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..options.jobs().min(plans.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(plan) = plans.get(index) else { break };
                let report = if failed.load(Ordering::SeqCst) && !options.keep_going {
                    unbooted(plan, vm_dir)
                } else {
                    test_kernel(plan, initrd, vm_dir, options.timeout())
                };
                if !report.passed() {
                    failed.store(true, Ordering::SeqCst);
                }
                if let Ok(mut reports) = reports.lock() {
                    reports.insert(index, report);
                }
            });
        }
    });
    reports
        .into_inner()
        .map(|reports| reports.into_values().collect())
        .unwrap_or_default()
}

/// A report on `plan` whose modes did not run (yet).
fn unbooted(plan: &Plan, vm_dir: &Path) -> KernelReport {
    KernelReport {
        name: plan.name.clone(),
        origin: plan
            .kernel
            .as_ref()
            .map(|k| k.origin.clone())
            .unwrap_or_default(),
        boot: None,
        guest_problem: None,
        results_dir: vm_dir.join("results").join(&plan.name),
        cells: plan
            .modes
            .iter()
            .map(|&mode| Cell {
                mode,
                outcome: Outcome::Skipped,
            })
            .collect(),
    }
}

/// Boots one kernel, brings its results out and judges every mode.
fn test_kernel(plan: &Plan, initrd: &Path, vm_dir: &Path, timeout: Duration) -> KernelReport {
    let results_dir = vm_dir.join("results").join(&plan.name);
    let mut report = unbooted(plan, vm_dir);
    let fail_all = |report: &mut KernelReport, reason: String| {
        for cell in &mut report.cells {
            cell.outcome = Outcome::Error(reason.clone());
        }
    };
    let kernel = match &plan.kernel {
        Ok(kernel) => kernel,
        Err(error) => {
            fail_all(&mut report, format!("no kernel: {error}"));
            return report;
        }
    };
    if results_dir.exists() {
        if let Err(error) = fs::remove_dir_all(&results_dir) {
            fail_all(
                &mut report,
                format!("cannot clear {}: {error}", results_dir.display()),
            );
            return report;
        }
    }
    println!("[{}] booting {}", plan.name, kernel.origin);
    let guest = Guest {
        name: &plan.name,
        kernel: &kernel.image,
        initrd,
        modes: &plan.modes,
        run_dir: &vm_dir.join("runs").join(&plan.name),
        timeout,
    };
    let run = match qemu::boot(&guest) {
        Ok(run) => run,
        Err(error) => {
            fail_all(&mut report, format!("{error:#}"));
            return report;
        }
    };
    report.boot = Some(BootTimes {
        to_init: run.boot_to_init,
        guest_uptime_at_init: run.guest_uptime_at_init,
        wall: run.wall,
    });
    let problem = match &run.end {
        GuestEnd::PoweredOff => None,
        GuestEnd::Timeout => Some(format!("timeout after {} s", timeout.as_secs())),
        GuestEnd::Panic => Some("kernel panic".to_string()),
        GuestEnd::QemuExited(status) => {
            Some(format!("QEMU exited ({status}) before the guest was done"))
        }
    };
    report.guest_problem = problem.map(|problem| {
        (
            format!("{problem} (console: {})", run.console_log.display()),
            run.console_tail.clone(),
        )
    });

    let mut unpacked = results::unpack_stream_file(&run.results_stream, &results_dir);
    for cell in &mut report.cells {
        cell.outcome = match unpacked.remove(&cell.mode) {
            Some(Ok(())) => match guest::judge(cell.mode, &results_dir.join(cell.mode.as_str())) {
                Ok(verdict) => Outcome::Judged(verdict),
                Err(error) => Outcome::Error(format!("cannot judge the results: {error:#}")),
            },
            Some(Err(error)) => Outcome::Error(error),
            None => unreturned(&run.end),
        };
        println!(
            "[{}] {}: {}",
            plan.name,
            cell.mode,
            cell_summary(&cell.outcome)
        );
    }
    report
}

/// The outcome of a mode whose results did not come back from a guest that ended this way.
fn unreturned(end: &GuestEnd) -> Outcome {
    match end {
        GuestEnd::PoweredOff => {
            Outcome::Error("the guest powered off without sending these results".into())
        }
        GuestEnd::Timeout => Outcome::Timeout,
        GuestEnd::Panic => Outcome::Panic,
        GuestEnd::QemuExited(status) => {
            Outcome::Error(format!("QEMU exited ({status}) before these results came"))
        }
    }
}

fn cell_summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Judged(verdict) if verdict.passed() => "PASS".to_string(),
        Outcome::Judged(verdict) => format!("FAIL ({} mismatches)", verdict.mismatches.len()),
        Outcome::Timeout => "TIMEOUT".to_string(),
        Outcome::Panic => "PANIC".to_string(),
        Outcome::Error(reason) => format!("ERROR: {reason}"),
        Outcome::Skipped => "SKIPPED".to_string(),
    }
}
