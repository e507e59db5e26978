//! Per-call overhead: the workload's bench loop (updates of one signalfd's mask) timed bare, under
//! the empty-program floor, under kspan exporting to a receiver, and under bpftrace doing the
//! equivalent work, the variants interleaved round by round.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};
use signalfd_workload::bench::SETUP_CALLS;

use super::{
    counting_receiver, kernel_release,
    kernel_time::{self, ProgramTime, RunTimeStats},
    process::{Readiness, Tracer},
    workload::{binary, Workload},
    AgentSummary,
};

/// The file a run leaves in its output directory (an [`OverheadReport`]).
pub const OVERHEAD_JSON: &str = "overhead.json";

/// Calls each run makes besides the timed ones (creating the signalfd it updates).
pub const UNTIMED_CALLS: u64 = SETUP_CALLS;

/// The line bpftrace's `BEGIN` probe prints once every probe is attached.
const BPFTRACE_READY: &str = "KSPAN-BENCH-READY";

/// Longest a tracer may take to attach.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What runs beside the bench loop.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Nothing attached.
    Bare,
    /// `kspan --floor`: empty programs on the same hooks, the least a probe pair can cost.
    Floor,
    /// kspan capturing every call and exporting it over OTLP/gRPC to a receiver.
    Kspan,
    /// bpftrace keeping a per-thread start time on entry and a histogram of durations on return.
    Bpftrace,
    /// An earlier build of kspan (`--baseline`), capturing as [`Variant::Kspan`] does; run only
    /// with the kernel's statistics on, to set this build's in-kernel cost beside it in the
    /// same run.
    #[serde(rename = "kspan-baseline")]
    #[value(name = "kspan-baseline")]
    KspanBaseline,
}

impl Variant {
    /// Every variant, in the order each round runs them.
    pub const ALL: [Variant; 4] = [
        Variant::Bare,
        Variant::Floor,
        Variant::Kspan,
        Variant::Bpftrace,
    ];

    /// The variant's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::Floor => "floor",
            Variant::Kspan => "kspan",
            Variant::Bpftrace => "bpftrace",
            Variant::KspanBaseline => "kspan-baseline",
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct OverheadConfig {
    /// kspan's `--attach` value; `auto` is resolved once, by a warm-up floor run.
    pub attach: String,
    /// Variants each round runs, in this order.
    pub variants: Vec<Variant>,
    /// Rounds (each runs every variant once).
    pub rounds: usize,
    /// Timed calls per run.
    pub calls: u64,
    /// Directory holding `kspan` and `signalfd-workload`.
    pub bin_dir: PathBuf,
    /// Where logs and [`OVERHEAD_JSON`] go.
    pub out_dir: PathBuf,
    /// Directory holding an earlier build's `kspan`: its in-kernel time is measured too
    /// ([`Variant::KspanBaseline`]).
    pub baseline_bin_dir: Option<PathBuf>,
    /// The bpftrace binary; needed for [`Variant::Bpftrace`].
    pub bpftrace: Option<PathBuf>,
}

/// One timed run of the bench loop.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OverheadSample {
    /// Round number, from 1.
    pub round: usize,
    /// What ran beside the loop.
    pub variant: Variant,
    /// Mean time per call of the loop.
    pub ns_per_call: f64,
    /// From starting the tracer to it being attached (tracers only).
    pub startup_ms: Option<f64>,
    /// Calls the tracer delivered: spans at the receiver (kspan) or histogram entries
    /// (bpftrace); the workload made `calls` + 1 (the create).
    pub delivered: Option<u64>,
    /// Calls kspan counted as lost (kspan only).
    pub lost: Option<u64>,
}

/// A tracer's programs over one run of the bench loop.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KernelTime {
    /// The tracer.
    pub variant: Variant,
    /// Calls the workload made in the run.
    pub calls: u64,
    /// Each program that ran.
    pub programs: Vec<ProgramTime>,
}

impl KernelTime {
    /// In-kernel time of all the tracer's programs, per traced call.
    pub fn ns_per_call(&self) -> f64 {
        let total: u64 = self.programs.iter().map(|p| p.run_time_ns).sum();
        total as f64 / self.calls.max(1) as f64
    }
}

/// Everything one overhead measurement produced.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OverheadReport {
    /// The probe mode measured (resolved if `auto` was asked for).
    pub attach: String,
    /// The kernel release it ran on.
    pub kernel: String,
    /// Timed calls per run.
    pub calls: u64,
    /// Rounds run.
    pub rounds: usize,
    /// Every run, in the order they ran.
    pub samples: Vec<OverheadSample>,
    /// One more run of each tracer after the rounds, with the kernel's run-time statistics on:
    /// its programs' time inside the kernel.
    #[serde(default)]
    pub kernel_time: Vec<KernelTime>,
}

impl OverheadReport {
    /// Reads an [`OVERHEAD_JSON`] file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not an overhead report", path.display()))
    }
}

/// Runs the rounds, calling `progress` after each run, and writes [`OVERHEAD_JSON`].
pub async fn measure_overhead(
    config: &OverheadConfig,
    mut progress: impl FnMut(&OverheadSample),
) -> anyhow::Result<OverheadReport> {
    if config.variants.contains(&Variant::Bpftrace) && config.bpftrace.is_none() {
        bail!("the bpftrace variant needs bpftrace (`cargo xtask setup --bench` installs it)");
    }
    let out = &config.out_dir;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The warm-up run settles `auto` and pages the binaries in; it is not reported.
    let warm_up = Run {
        config,
        attach: &config.attach,
        round: 0,
    };
    let attach = warm_up.floor_probe().await?;
    let mut samples = Vec::new();
    for round in 1..=config.rounds {
        let run = Run {
            config,
            attach: &attach,
            round,
        };
        for &variant in &config.variants {
            let (sample, _) = run
                .sample(variant, false)
                .await
                .with_context(|| format!("round {round}, {}", variant.name()))?;
            progress(&sample);
            samples.push(sample);
        }
    }
    // Statistics cost each program run two clock reads: a run of their own, not a timed round.
    let stats = RunTimeStats::enable()?;
    let run = Run {
        config,
        attach: &attach,
        round: config.rounds + 1,
    };
    let mut kernel_time = Vec::new();
    let baseline = config
        .baseline_bin_dir
        .is_some()
        .then_some(Variant::KspanBaseline);
    let tracers = config
        .variants
        .iter()
        .copied()
        .filter(|v| *v != Variant::Bare);
    for variant in tracers.chain(baseline) {
        let (_, programs) = run
            .sample(variant, true)
            .await
            .with_context(|| format!("in-kernel time, {}", variant.name()))?;
        kernel_time.push(KernelTime {
            variant,
            calls: config.calls + UNTIMED_CALLS,
            programs: programs.unwrap_or_default(),
        });
    }
    drop(stats);
    let report = OverheadReport {
        attach,
        kernel: kernel_release(),
        calls: config.calls,
        rounds: config.rounds,
        samples,
        kernel_time,
    };
    let path = out.join(OVERHEAD_JSON);
    fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(report)
}

/// One round's runs.
struct Run<'a> {
    config: &'a OverheadConfig,
    attach: &'a str,
    round: usize,
}

impl Run<'_> {
    fn path(&self, variant: Variant, what: &str) -> PathBuf {
        self.config
            .out_dir
            .join(format!("{}-{}.{what}", variant.name(), self.round))
    }

    fn kspan(&self) -> anyhow::Result<Command> {
        Ok(Command::new(binary(&self.config.bin_dir, "kspan")?))
    }

    /// The earlier build's kspan.
    fn baseline_kspan(&self) -> anyhow::Result<Command> {
        let dir = self
            .config
            .baseline_bin_dir
            .as_deref()
            .context("no --baseline")?;
        Ok(Command::new(binary(dir, "kspan")?))
    }

    /// The workload's longest plausible run: generous, it only catches a hang.
    fn workload_timeout(&self) -> Duration {
        Duration::from_secs(60) + Duration::from_secs_f64(self.config.calls as f64 * 1e-4)
    }

    /// Starts the bench loop, held until `go` exists.
    fn start_workload(&self, go: &Path) -> anyhow::Result<Workload> {
        let _ = fs::remove_file(go);
        let args = [
            "bench".to_string(),
            "--calls".into(),
            self.config.calls.to_string(),
        ];
        Workload::spawn(&self.config.bin_dir, &args, go)
    }

    /// A floor run with the configured `--attach`; returns the probe mode kspan reported.
    async fn floor_probe(&self) -> anyhow::Result<String> {
        let ready = self.path(Variant::Floor, "ready");
        let _ = fs::remove_file(&ready);
        let go = self.path(Variant::Floor, "go");
        let workload = self.start_workload(&go)?;
        let mut tracer = self.start_floor(&ready)?;
        tracer
            .wait_ready(&Readiness::File(ready.clone()), READY_TIMEOUT)
            .await?;
        fs::write(&go, b"").with_context(|| format!("creating {}", go.display()))?;
        workload.bench_result(self.workload_timeout()).await?;
        tracer.stop().await?;
        let text = fs::read_to_string(&ready)?;
        text.lines()
            .find_map(|line| line.strip_prefix("probe="))
            .map(str::to_string)
            .with_context(|| format!("kspan's ready file {} names no probe", ready.display()))
    }

    fn start_floor(&self, ready: &Path) -> anyhow::Result<Tracer> {
        let mut command = self.kspan()?;
        command
            .args(["--floor", "--attach", self.attach, "--exporter", "stdout"])
            .arg("--ready-file")
            .arg(ready)
            .stdout(Stdio::null());
        Tracer::spawn(
            "kspan --floor",
            &mut command,
            &self.path(Variant::Floor, "log"),
        )
    }

    /// Runs the bench loop once beside `variant`; with `program_times`, also reads the
    /// tracer's programs' run times before stopping it.
    async fn sample(
        &self,
        variant: Variant,
        program_times: bool,
    ) -> anyhow::Result<(OverheadSample, Option<Vec<ProgramTime>>)> {
        let go = self.path(variant, "go");
        let workload = self.start_workload(&go)?;
        let pid = workload.pid()?;
        let ready = self.path(variant, "ready");
        let _ = fs::remove_file(&ready);
        let mut receiver = None;
        let (tracer, readiness) = match variant {
            Variant::Bare => (None, None),
            Variant::Floor => (
                Some(self.start_floor(&ready)?),
                Some(Readiness::File(ready.clone())),
            ),
            Variant::Kspan | Variant::KspanBaseline => {
                let (started, exporter_args) = counting_receiver().await?;
                receiver = Some(started);
                let mut command = match variant {
                    Variant::KspanBaseline => self.baseline_kspan()?,
                    _ => self.kspan()?,
                };
                command
                    .args(["--attach", self.attach, "--pid", &pid.to_string()])
                    .args(&exporter_args)
                    .arg("--ready-file")
                    .arg(&ready)
                    .arg("--summary-file")
                    .arg(self.path(variant, "summary.json"))
                    .stdout(Stdio::null());
                let tracer = Tracer::spawn("kspan", &mut command, &self.path(variant, "log"))?;
                (Some(tracer), Some(Readiness::File(ready.clone())))
            }
            Variant::Bpftrace => {
                let bpftrace = self.config.bpftrace.as_deref().context("no bpftrace")?;
                let output = self.path(variant, "out");
                let stdout = fs::File::create(&output)
                    .with_context(|| format!("creating {}", output.display()))?;
                let mut command = Command::new(bpftrace);
                command
                    .arg("-e")
                    .arg(bpftrace_script(self.attach, pid)?)
                    .stdout(stdout);
                let tracer = Tracer::spawn("bpftrace", &mut command, &self.path(variant, "log"))?;
                (Some(tracer), Some(Readiness::Line(output, BPFTRACE_READY)))
            }
        };
        let startup = match (tracer, &readiness) {
            (Some(mut tracer), Some(readiness)) => {
                let took = tracer.wait_ready(readiness, READY_TIMEOUT).await?;
                Some((tracer, took))
            }
            _ => None,
        };
        fs::write(&go, b"").with_context(|| format!("creating {}", go.display()))?;
        let ns_per_call = workload.bench_result(self.workload_timeout()).await?;
        let mut sample = OverheadSample {
            round: self.round,
            variant,
            ns_per_call,
            startup_ms: None,
            delivered: None,
            lost: None,
        };
        let mut times = None;
        if let Some((tracer, took)) = startup {
            sample.startup_ms = Some(took.as_secs_f64() * 1e3);
            if program_times {
                times = Some(kernel_time::program_times(tracer.pid())?);
            }
            let usage = tracer.stop().await?;
            if usage.exit_code != Some(0) {
                bail!(
                    "{} exited with {:?}; see {}",
                    variant.name(),
                    usage.exit_code,
                    self.path(variant, "log").display()
                );
            }
        }
        match variant {
            Variant::Kspan | Variant::KspanBaseline => {
                let summary = AgentSummary::read(&self.path(variant, "summary.json"))?;
                sample.lost = Some(summary.lost);
                if let Some(receiver) = receiver {
                    sample.delivered = Some(receiver.store().stats().spans as u64);
                    receiver.shutdown().await;
                }
            }
            Variant::Bpftrace => {
                let output = fs::read_to_string(self.path(variant, "out"))?;
                sample.delivered = Some(histogram_total(&output));
            }
            Variant::Bare | Variant::Floor => {}
        }
        Ok((sample, times))
    }
}

/// bpftrace doing what kspan's probes do at the least: a per-thread start time on entry (for the
/// workload's process only, as kspan's `--pid`), a duration into a histogram on return.
fn bpftrace_script(attach: &str, pid: u32) -> anyhow::Result<String> {
    let (entry, exit) = match attach {
        "tracepoint" => (
            "tracepoint:syscalls:sys_enter_signalfd4, tracepoint:syscalls:sys_enter_signalfd",
            "tracepoint:syscalls:sys_exit_signalfd4, tracepoint:syscalls:sys_exit_signalfd",
        ),
        "kprobe" => ("kprobe:do_signalfd4", "kretprobe:do_signalfd4"),
        "fentry" => ("kfunc:do_signalfd4", "kretfunc:do_signalfd4"),
        other => bail!("no bpftrace probes for attach mode {other:?}"),
    };
    Ok(format!(
        "BEGIN {{ printf(\"{BPFTRACE_READY}\\n\"); }}\n\
         {entry} /pid == {pid}/ {{ @start[tid] = nsecs; }}\n\
         {exit} /@start[tid]/ {{ @ns = hist(nsecs - @start[tid]); delete(@start[tid]); }}\n"
    ))
}

/// The number of values in the histograms bpftrace printed at exit.
fn histogram_total(output: &str) -> u64 {
    output
        .lines()
        .filter(|line| line.starts_with('['))
        .filter_map(|line| {
            let after_bucket = &line[line.find([')', ']'])? + 1..];
            after_bucket.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_bpftrace_histogram_buckets() {
        let output = "Attaching 5 probes...\nKSPAN-BENCH-READY\n\n\n@ns: \n\
                      [256, 512)         25451 |@                  |\n\
                      [512, 1K)         872642 |@@@@@@@@@@@@@@@@@@@|\n\
                      [1K, 2K)            1324 |                   |\n\
                      [1]                    3 |                   |\n";
        assert_eq!(histogram_total(output), 25451 + 872642 + 1324 + 3);
        assert_eq!(histogram_total("Attaching 5 probes...\n"), 0);
    }

    #[test]
    fn bpftrace_probes_follow_the_attach_mode() {
        let script = bpftrace_script("tracepoint", 42).expect("tracepoint");
        assert!(script.contains("tracepoint:syscalls:sys_enter_signalfd4"));
        assert!(script.contains("/pid == 42/"));
        assert!(script.contains(BPFTRACE_READY));
        assert!(bpftrace_script("kprobe", 1)
            .expect("kprobe")
            .contains("kretprobe:do_signalfd4"));
        assert!(bpftrace_script("uprobe", 1).is_err());
    }

    #[test]
    fn a_report_survives_json() {
        let report = OverheadReport {
            attach: "kprobe".into(),
            kernel: "6.12.0".into(),
            calls: 1000,
            rounds: 1,
            samples: vec![OverheadSample {
                round: 1,
                variant: Variant::Kspan,
                ns_per_call: 512.5,
                startup_ms: Some(120.0),
                delivered: Some(1001),
                lost: Some(0),
            }],
            kernel_time: vec![KernelTime {
                variant: Variant::Kspan,
                calls: 1001,
                programs: vec![ProgramTime {
                    program: "kspan_tp_exit".into(),
                    runs: 1001,
                    run_time_ns: 180_180,
                }],
            }],
        };
        let json = serde_json::to_string(&report).expect("serializes");
        assert!(json.contains(r#""variant":"kspan""#), "{json}");
        assert_eq!(
            serde_json::from_str::<OverheadReport>(&json).expect("parses"),
            report
        );
    }

    #[test]
    fn the_cost_per_call_sums_every_program() {
        let time = KernelTime {
            variant: Variant::Kspan,
            calls: 1000,
            programs: vec![
                ProgramTime {
                    program: "kspan_tp_enter_".into(),
                    runs: 1000,
                    run_time_ns: 150_000,
                },
                ProgramTime {
                    program: "kspan_tp_exit".into(),
                    runs: 1000,
                    run_time_ns: 250_000,
                },
            ],
        };
        assert_eq!(time.ns_per_call(), 400.0);
    }
}
