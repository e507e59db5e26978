//! `bench --vm`: the overhead rounds inside QEMU guests, in kprobe and fentry mode (the host has
//! neither), on every kernel of `ci/kernels.toml`. Reuses vm-test's kernels, initramfs, QEMU
//! runner and results stream; only the guest's command differs.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kspan_e2e::bench::overhead::{OverheadReport, OVERHEAD_JSON};

use super::results::{GuestOverhead, OverheadSummary, VmResults};
use crate::{
    apt::Apt,
    paths,
    probe_run::ProbeRun,
    vm::{initramfs, kernels, qemu, results},
};

/// The modes measured in guests: the ones the host cannot run.
const MODES: [ProbeRun; 2] = [ProbeRun::Kprobe, ProbeRun::Fentry];

/// Variants the guest runs: it has no bpftrace.
const GUEST_VARIANTS: &str = "bare,floor,kspan";

/// The guest's `/init` command for one mode (`$mode` is set by `/init`).
fn guest_command(rounds: usize, calls: u64) -> String {
    format!(
        r#"kspan-e2e overhead --attach "$mode" --variants {GUEST_VARIANTS} --rounds {rounds} --calls {calls} --bin-dir /bin --out-dir "/results/$mode""#
    )
}

/// Boots each kernel once, one after the other (guests side by side would disturb each
/// other's timing), and collects each mode's overhead report.
/// `binaries` are the guest's (vm-test's set, which includes `kspan-e2e`).
pub fn run(binaries: &[PathBuf], rounds: usize, calls: u64, out_dir: &Path) -> Result<VmResults> {
    let mut apt = Apt::default();
    let list = paths::workspace_root().join("ci/kernels.toml");
    let entries = kernels::load_kernels_toml(&list)?;
    let initrd = out_dir.join("initrd.gz");
    initramfs::build(
        binaries,
        &initramfs::init_script(&guest_command(rounds, calls)),
        &out_dir.join("initramfs"),
        &initrd,
    )?;
    // Each mode runs 3 variants × rounds, each starting kspan at most once, under emulation.
    let timeout = std::time::Duration::from_secs(300 + 60 * rounds as u64);
    let mut vm_results = VmResults {
        calls_per_run: calls,
        guests: Vec::new(),
        problems: Vec::new(),
    };
    for entry in entries {
        // vm-test's kernel cache: a kernel fetched for one is there for the other.
        let kernel = match kernels::fetch(&entry, &paths::target_dir().join("vm/kernels"), &mut apt)
        {
            Ok(kernel) => kernel,
            Err(error) => {
                vm_results
                    .problems
                    .push(format!("{}: cannot get the kernel: {error:#}", entry.name));
                continue;
            }
        };
        println!(
            "==> overhead in a QEMU guest: {} ({}), modes {}",
            entry.name,
            kernel.origin,
            MODES.map(ProbeRun::as_str).join(", ")
        );
        let guest = qemu::Guest {
            name: &entry.name,
            kernel: &kernel.image,
            initrd: &initrd,
            modes: &MODES,
            run_dir: &out_dir.join("runs").join(&entry.name),
            timeout,
        };
        let run = match qemu::boot(&guest) {
            Ok(run) => run,
            Err(error) => {
                vm_results
                    .problems
                    .push(format!("{}: cannot boot: {error:#}", entry.name));
                continue;
            }
        };
        let results_dir = out_dir.join("results").join(&entry.name);
        let mut unpacked = results::unpack_stream_file(&run.results_stream, &results_dir);
        for mode in MODES {
            let report = match unpacked.remove(&mode) {
                Some(Ok(())) => {
                    OverheadReport::read(&results_dir.join(mode.as_str()).join(OVERHEAD_JSON))
                        .map_err(|error| {
                            format!("{error:#} (console: {})", run.console_log.display())
                        })
                }
                Some(Err(error)) => Err(error),
                None => Err(format!(
                    "the guest sent no results (it ended: {:?}; console: {})",
                    run.end,
                    run.console_log.display()
                )),
            };
            match report {
                Ok(report) => vm_results.guests.push(GuestOverhead {
                    kernel_name: entry.name.clone(),
                    overhead: OverheadSummary::new(report),
                }),
                Err(error) => vm_results
                    .problems
                    .push(format!("{} {mode}: {error}", entry.name)),
            }
        }
    }
    Ok(vm_results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_measures_its_mode_without_bpftrace() {
        let command = guest_command(5, 20_000);
        assert!(command.starts_with("kspan-e2e overhead --attach \"$mode\""));
        assert!(command.contains("--variants bare,floor,kspan "));
        assert!(command.contains("--rounds 5 --calls 20000"));
        assert!(command.ends_with("--out-dir \"/results/$mode\""));
    }
}
