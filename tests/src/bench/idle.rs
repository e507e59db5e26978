//! An idle kspan's cost, which every node pays all day: `kspan --exporter stdout` attached but
//! with nothing to capture (its `--pid` is a sleeping process), its CPU time and context
//! switches summed over all its threads across a quiet spell.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    process::{Readiness, Tracer},
    workload::binary,
};

/// Longest kspan may take to attach.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Left to kspan after it is ready, before measuring: its start-up work is not idle.
const SETTLE: Duration = Duration::from_secs(1);

/// What to measure.
#[derive(Clone, Debug)]
pub struct IdleConfig {
    /// kspan's `--attach` value.
    pub attach: String,
    /// How long the quiet spell lasts.
    pub duration: Duration,
    /// Directory holding `kspan`.
    pub bin_dir: PathBuf,
    /// Where kspan's log goes.
    pub out_dir: PathBuf,
}

/// What one idle spell measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IdleRun {
    /// How long it was measured.
    pub seconds: f64,
    /// CPU time over the spell as a share of one core, in percent (from the scheduler's
    /// nanosecond count, `/proc/<pid>/task/*/schedstat`).
    pub cpu_percent: f64,
    /// The same from `/proc/<pid>/stat` (clock ticks: coarse over a short spell).
    pub cpu_percent_ticks: f64,
    /// Voluntary context switches per second, all threads: how often kspan woke.
    pub wakeups_per_second: f64,
    /// Involuntary context switches per second, all threads.
    pub preemptions_per_second: f64,
    /// Threads kspan runs.
    pub threads: usize,
    /// Resident memory at the end of the spell (`VmRSS`), in KiB.
    pub rss_kib: u64,
}

/// Starts kspan with nothing to capture, waits for it to be ready and settle, and measures it
/// over `config.duration`.
pub async fn measure_idle(config: &IdleConfig) -> anyhow::Result<IdleRun> {
    let out = &config.out_dir;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ready = out.join("idle.ready");
    let _ = fs::remove_file(&ready);
    // A process that makes no signalfd calls, for kspan's --pid: on a shared machine some
    // other process may call signalfd, and that would not be idle.
    let mut sleeper = Command::new("sleep")
        .arg(
            (config.duration + READY_TIMEOUT + SETTLE * 10)
                .as_secs()
                .to_string(),
        )
        .stdin(Stdio::null())
        .spawn()
        .context("starting `sleep` as the process kspan watches")?;
    let measured = measure(config, &ready, sleeper.id()).await;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    measured
}

async fn measure(config: &IdleConfig, ready: &Path, pid: u32) -> anyhow::Result<IdleRun> {
    let mut command = Command::new(binary(&config.bin_dir, "kspan")?);
    command
        .args(["--attach", &config.attach, "--exporter", "stdout"])
        .args(["--pid", &pid.to_string()])
        .arg("--ready-file")
        .arg(ready)
        .stdout(Stdio::null());
    let log = config.out_dir.join("idle.log");
    let mut kspan = Tracer::spawn("kspan", &mut command, &log)?;
    kspan
        .wait_ready(&Readiness::File(ready.to_path_buf()), READY_TIMEOUT)
        .await?;
    tokio::time::sleep(SETTLE).await;
    let before = Snapshot::take(kspan.pid())?;
    let started = Instant::now();
    tokio::time::sleep(config.duration).await;
    let after = Snapshot::take(kspan.pid())?;
    let seconds = started.elapsed().as_secs_f64();
    kspan.stop().await?;
    Ok(after.since(&before, seconds))
}

/// kspan's counters at one moment, summed over its threads.
#[derive(Debug, Default, PartialEq)]
struct Snapshot {
    cpu_ns: u64,
    cpu_ticks: u64,
    voluntary: u64,
    involuntary: u64,
    threads: usize,
    rss_kib: u64,
}

impl Snapshot {
    fn take(pid: u32) -> anyhow::Result<Self> {
        let read = |path: &str| fs::read_to_string(path).with_context(|| format!("reading {path}"));
        let stat = read(&format!("/proc/{pid}/stat"))?;
        let mut snapshot = Snapshot {
            cpu_ticks: super::process::stat_cpu_ticks(&stat)
                .with_context(|| format!("/proc/{pid}/stat is not parseable"))?,
            rss_kib: status_field(&read(&format!("/proc/{pid}/status"))?, "VmRSS")
                .with_context(|| format!("/proc/{pid}/status has no VmRSS"))?,
            ..Snapshot::default()
        };
        let tasks = format!("/proc/{pid}/task");
        for task in fs::read_dir(&tasks).with_context(|| format!("listing {tasks}"))? {
            let task = task?.path();
            let task = task.display();
            // A thread that ended between the listing and the read counts no more.
            let (Ok(schedstat), Ok(status)) = (
                fs::read_to_string(format!("{task}/schedstat")),
                fs::read_to_string(format!("{task}/status")),
            ) else {
                continue;
            };
            snapshot.cpu_ns += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .with_context(|| format!("{task}/schedstat is not parseable"))?;
            snapshot.voluntary += status_field(&status, "voluntary_ctxt_switches")
                .with_context(|| format!("{task}/status has no voluntary_ctxt_switches"))?;
            snapshot.involuntary += status_field(&status, "nonvoluntary_ctxt_switches")
                .with_context(|| format!("{task}/status has no nonvoluntary_ctxt_switches"))?;
            snapshot.threads += 1;
        }
        Ok(snapshot)
    }

    /// What happened from `before` to this snapshot, `seconds` later.
    fn since(&self, before: &Snapshot, seconds: f64) -> IdleRun {
        let per_second = |after: u64, before: u64| after.saturating_sub(before) as f64 / seconds;
        // SAFETY: sysconf only reads a configuration value.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        IdleRun {
            seconds,
            cpu_percent: per_second(self.cpu_ns, before.cpu_ns) / 1e9 * 100.0,
            cpu_percent_ticks: per_second(self.cpu_ticks, before.cpu_ticks) / ticks_per_second
                * 100.0,
            wakeups_per_second: per_second(self.voluntary, before.voluntary),
            preemptions_per_second: per_second(self.involuntary, before.involuntary),
            threads: self.threads,
            rss_kib: self.rss_kib,
        }
    }
}

/// The number in a `/proc/*/status` line `name:   123 [kB]`.
fn status_field(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tkspan\nVmRSS:\t   20480 kB\nvoluntary_ctxt_switches:\t42\n\
                      nonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_field(status, "VmRSS"), Some(20480));
        assert_eq!(status_field(status, "voluntary_ctxt_switches"), Some(42));
        assert_eq!(status_field(status, "nonvoluntary_ctxt_switches"), Some(3));
        assert_eq!(status_field(status, "VmHWM"), None);
    }

    #[test]
    fn rates_over_the_spell() {
        let before = Snapshot {
            cpu_ns: 1_000_000_000,
            voluntary: 100,
            ..Snapshot::default()
        };
        let after = Snapshot {
            cpu_ns: 1_060_000_000,
            voluntary: 1300,
            involuntary: 60,
            threads: 4,
            rss_kib: 20_000,
            ..Snapshot::default()
        };
        let run = after.since(&before, 60.0);
        // 60 ms of CPU in 60 s: 0.1 % of a core.
        assert!((run.cpu_percent - 0.1).abs() < 1e-9, "{run:?}");
        assert_eq!(run.wakeups_per_second, 20.0);
        assert_eq!(run.preemptions_per_second, 1.0);
        assert_eq!((run.threads, run.rss_kib), (4, 20_000));
    }
}
