//! The end-of-run report: one row per kernel × attach mode, then what went wrong and how long
//! the guests took.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use super::guest::Verdict;
use crate::probe_run::ProbeRun;

/// Mismatch lines shown per failing cell; the rest are in the results folder.
const MISMATCHES_SHOWN: usize = 20;

/// What became of one attach mode on one kernel.
#[derive(Debug)]
pub enum Outcome {
    /// Results came back and were judged.
    Judged(Verdict),
    /// The guest ran out of time before this mode's results came back.
    Timeout,
    /// The kernel panicked before this mode's results came back.
    Panic,
    /// No usable results, for the reason given.
    Error(String),
    /// Not run: an earlier kernel failed and `--keep-going` was not given.
    Skipped,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Judged(verdict) if verdict.passed() => "PASS",
            Outcome::Judged(_) => "FAIL",
            Outcome::Timeout => "TIMEOUT",
            Outcome::Panic => "PANIC",
            Outcome::Error(_) => "ERROR",
            Outcome::Skipped => "SKIPPED",
        }
    }

    /// Whether this cell counts as a success.
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Judged(verdict) if verdict.passed())
    }
}

/// One attach mode's outcome.
#[derive(Debug)]
pub struct Cell {
    /// The attach mode.
    pub mode: ProbeRun,
    /// What became of it.
    pub outcome: Outcome,
}

/// Timings of a guest that was booted.
#[derive(Debug)]
pub struct BootTimes {
    /// Host time from starting QEMU to `/init`.
    pub to_init: Option<Duration>,
    /// The guest's uptime when `/init` started.
    pub guest_uptime_at_init: Option<f64>,
    /// Host time from starting QEMU to its exit.
    pub wall: Duration,
}

/// Everything about one kernel.
#[derive(Debug)]
pub struct KernelReport {
    /// Kernel name.
    pub name: String,
    /// Package and version, or the user's path.
    pub origin: String,
    /// Set when the guest was booted.
    pub boot: Option<BootTimes>,
    /// Why the guest as a whole failed (timeout, panic, QEMU exit), with its last console lines.
    pub guest_problem: Option<(String, Vec<String>)>,
    /// Where this kernel's results were unpacked.
    pub results_dir: PathBuf,
    /// One per attach mode run.
    pub cells: Vec<Cell>,
}

impl KernelReport {
    /// Whether every mode passed.
    pub fn passed(&self) -> bool {
        self.cells.iter().all(|cell| cell.outcome.passed())
    }
}

/// The table, failure details, timings and the total wall time.
pub fn render(kernels: &[KernelReport], total: Duration) -> String {
    let mut out = String::new();
    let kernel_width = kernels
        .iter()
        .map(|k| k.name.len())
        .max()
        .unwrap_or(0)
        .max("kernel".len());
    let mode_width = kernels
        .iter()
        .flat_map(|k| &k.cells)
        .map(|cell| cell.mode.as_str().len())
        .max()
        .unwrap_or(0)
        .max(10);
    let row = |kernel: &str, mode: &str, numbers: &[String], verdict: &str| {
        let numbers: String = numbers.iter().map(|n| format!("  {n:>8}")).collect();
        format!("{kernel:<kernel_width$}  {mode:<mode_width$}{numbers}  {verdict}\n")
    };
    let headings = ["expected", "spans", "logs", "lost", "missing"].map(String::from);
    out.push_str(&row("kernel", "mode", &headings, "verdict"));
    for kernel in kernels {
        for cell in &kernel.cells {
            let numbers = match &cell.outcome {
                // The signalfd calls and the declared probes' calls together.
                Outcome::Judged(v) => vec![
                    (v.expected + v.declared.expected).to_string(),
                    (v.spans + v.declared.spans).to_string(),
                    (v.logs + v.declared.logs).to_string(),
                    v.lost.to_string(),
                    (v.missing + v.declared.missing).to_string(),
                ],
                _ => vec!["-".to_string(); headings.len()],
            };
            out.push_str(&row(
                &kernel.name,
                cell.mode.as_str(),
                &numbers,
                cell.outcome.label(),
            ));
        }
    }

    for kernel in kernels {
        if let Some((problem, tail)) = &kernel.guest_problem {
            let _ = writeln!(
                out,
                "\n{} ({}): {problem}; last console lines:",
                kernel.name, kernel.origin
            );
            for line in tail {
                let _ = writeln!(out, "  | {line}");
            }
            if tail.is_empty() {
                let _ = writeln!(out, "  (the console stayed silent)");
            }
        }
        if kernel
            .cells
            .iter()
            .any(|cell| matches!(cell.outcome, Outcome::Skipped))
        {
            let _ = writeln!(
                out,
                "\n{}: not booted after an earlier failure (--keep-going boots every kernel)",
                kernel.name
            );
        }
        for cell in kernel.cells.iter().filter(|cell| !cell.outcome.passed()) {
            match &cell.outcome {
                Outcome::Judged(verdict) => {
                    let _ = writeln!(
                        out,
                        "\n{} / {}: {} mismatches (results in {}):",
                        kernel.name,
                        cell.mode,
                        verdict.mismatches.len(),
                        kernel.results_dir.join(cell.mode.as_str()).display()
                    );
                    for mismatch in verdict.mismatches.iter().take(MISMATCHES_SHOWN) {
                        let _ = writeln!(out, "  - {mismatch}");
                    }
                    if verdict.mismatches.len() > MISMATCHES_SHOWN {
                        let _ = writeln!(
                            out,
                            "  … {} more",
                            verdict.mismatches.len() - MISMATCHES_SHOWN
                        );
                    }
                }
                Outcome::Error(reason) => {
                    let _ = writeln!(out, "\n{} / {}: {reason}", kernel.name, cell.mode);
                }
                Outcome::Timeout | Outcome::Panic | Outcome::Skipped => {}
            }
        }
    }

    let _ = writeln!(out);
    for kernel in kernels {
        let Some(boot) = &kernel.boot else { continue };
        let uptime = boot
            .guest_uptime_at_init
            .map(|s| format!(" (guest uptime {s:.2} s)"))
            .unwrap_or_default();
        let init = match boot.to_init {
            Some(to_init) => format!("/init after {:.1} s{uptime}", to_init.as_secs_f64()),
            None => "/init never ran".to_string(),
        };
        let _ = writeln!(
            out,
            "{}: {}; {init}; guest ran {:.1} s",
            kernel.name,
            kernel.origin,
            boot.wall.as_secs_f64()
        );
    }
    let passed = kernels.iter().all(KernelReport::passed);
    let _ = writeln!(
        out,
        "vm-test {} in {:.1} s",
        if passed { "passed" } else { "FAILED" },
        total.as_secs_f64()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(expected: usize, spans: usize, mismatches: &[&str]) -> Verdict {
        Verdict {
            expected,
            spans,
            logs: spans,
            missing: expected - spans,
            mismatches: mismatches.iter().map(|m| m.to_string()).collect(),
            ..Verdict::default()
        }
    }

    fn sample() -> Vec<KernelReport> {
        vec![
            KernelReport {
                name: "debian-6.1".into(),
                origin: "linux-image-6.1.0-56-amd64-unsigned 6.1.192-2".into(),
                boot: Some(BootTimes {
                    to_init: Some(Duration::from_millis(3200)),
                    guest_uptime_at_init: Some(1.25),
                    wall: Duration::from_millis(9100),
                }),
                guest_problem: None,
                results_dir: PathBuf::from("target/vm/results/debian-6.1"),
                cells: vec![
                    Cell {
                        mode: ProbeRun::Kprobe,
                        outcome: Outcome::Judged(verdict(12, 12, &[])),
                    },
                    Cell {
                        mode: ProbeRun::Fentry,
                        outcome: Outcome::Judged(verdict(
                            12,
                            11,
                            &["call 7 (signalfd4 ufd=-1): no span"],
                        )),
                    },
                ],
            },
            KernelReport {
                name: "debian-6.12".into(),
                origin: "linux-image-6.12.117+deb12-amd64-unsigned 6.12.117-1~deb12u1".into(),
                boot: Some(BootTimes {
                    to_init: None,
                    guest_uptime_at_init: None,
                    wall: Duration::from_secs(120),
                }),
                guest_problem: Some((
                    "timeout after 120 s".into(),
                    vec!["[    1.0] Run /init as init process".into()],
                )),
                results_dir: PathBuf::from("target/vm/results/debian-6.12"),
                cells: vec![Cell {
                    mode: ProbeRun::Kprobe,
                    outcome: Outcome::Timeout,
                }],
            },
        ]
    }

    #[test]
    fn renders_the_table_failures_and_times() {
        let text = render(&sample(), Duration::from_millis(130_400));
        let expected_rows = "\
kernel       mode        expected     spans      logs      lost   missing  verdict
debian-6.1   kprobe            12        12        12         0         0  PASS
debian-6.1   fentry            12        11        11         0         1  FAIL
debian-6.12  kprobe             -         -         -         -         -  TIMEOUT
";
        assert!(text.starts_with(expected_rows), "table:\n{text}");
        for needed in [
            "debian-6.1 / fentry: 1 mismatches (results in target/vm/results/debian-6.1/fentry):\n  - call 7 (signalfd4 ufd=-1): no span",
            "debian-6.12 (linux-image-6.12.117+deb12-amd64-unsigned 6.12.117-1~deb12u1): timeout after 120 s; last console lines:\n  | [    1.0] Run /init as init process",
            "debian-6.1: linux-image-6.1.0-56-amd64-unsigned 6.1.192-2; /init after 3.2 s (guest uptime 1.25 s); guest ran 9.1 s",
            "debian-6.12: linux-image-6.12.117+deb12-amd64-unsigned 6.12.117-1~deb12u1; /init never ran; guest ran 120.0 s",
            "vm-test FAILED in 130.4 s",
        ] {
            assert!(text.contains(needed), "missing `{needed}` in:\n{text}");
        }
    }

    #[test]
    fn long_mismatch_lists_are_cut() {
        let many: Vec<String> = (0..25).map(|i| format!("call {i}: no span")).collect();
        let mut kernels = sample();
        kernels[0].cells[1].outcome = Outcome::Judged(Verdict {
            mismatches: many,
            ..Verdict::default()
        });
        let text = render(&kernels, Duration::ZERO);
        assert!(
            text.contains("call 19: no span") && !text.contains("call 20: no span"),
            "{text}"
        );
        assert!(text.contains("… 5 more"), "{text}");
    }

    #[test]
    fn all_pass_is_reported_as_passed() {
        let mut kernels = sample();
        kernels.truncate(1);
        kernels[0].cells.truncate(1);
        assert!(kernels[0].passed());
        assert!(render(&kernels, Duration::from_secs(42)).contains("vm-test passed in 42.0 s"));
    }
}
