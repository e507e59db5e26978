//! A tracer under measurement (kspan, its floor, or bpftrace): started, timed until it is ready,
//! stopped with SIGINT, and reaped with `wait4` so the kernel reports its whole CPU time and
//! peak memory, including the flush after the signal.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// How often readiness is checked.
const POLL: Duration = Duration::from_millis(1);

/// How long a tracer may take to exit after SIGINT (kspan exports what it holds first).
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// What the kernel counted for a reaped process.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// User plus system CPU time over the whole life of the process.
    pub cpu_seconds: f64,
    /// Peak resident set size (`ru_maxrss`, the same as `VmHWM`), in KiB.
    pub peak_rss_kib: u64,
    /// Exit code; `None` when a signal ended it.
    pub exit_code: Option<i32>,
    /// From SIGINT to exit: how long it took to finish its work (kspan exports what it holds).
    pub exit_seconds: f64,
}

/// When a tracer counts as ready.
pub enum Readiness {
    /// This file exists (kspan's `--ready-file`).
    File(PathBuf),
    /// This file (the tracer's stdout) holds this line.
    Line(PathBuf, &'static str),
}

impl Readiness {
    fn reached(&self) -> bool {
        match self {
            Readiness::File(path) => path.exists(),
            Readiness::Line(path, line) => {
                fs::read_to_string(path).is_ok_and(|text| text.lines().any(|l| l.trim() == *line))
            }
        }
    }
}

/// A started tracer; killed and reaped on drop unless [`Tracer::stop`] reaped it.
pub struct Tracer {
    name: &'static str,
    child: Child,
    started: Instant,
    log: PathBuf,
    reaped: bool,
}

impl Tracer {
    /// Starts `command` with its stderr in `log`.
    pub fn spawn(name: &'static str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let stderr =
            fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let started = Instant::now();
        // SAFETY: signal() is async-signal-safe, the only kind of call allowed between fork and
        // exec. A tracer is stopped with SIGINT: if this process was started with SIGINT ignored
        // (a background job of a non-interactive shell), the tracer would inherit that, and a
        // shell cannot even trap a signal ignored on entry.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let child = command
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name,
            child,
            started,
            log: log.to_path_buf(),
            reaped: false,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `readiness` is reached; returns the time from spawn to ready.
    pub async fn wait_ready(
        &mut self,
        readiness: &Readiness,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        loop {
            if readiness.reached() {
                return Ok(self.started.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                self.reaped = true;
                bail!(
                    "{} exited ({status}) before it was ready; see {}",
                    self.name,
                    self.log.display()
                );
            }
            if self.started.elapsed() > timeout {
                bail!(
                    "{} was not ready within {timeout:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// CPU time used so far (from `/proc/<pid>/stat`).
    pub fn cpu_so_far(&self) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let ticks = stat_cpu_ticks(&stat).with_context(|| format!("{path} is not parseable"))?;
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if per_second <= 0 {
            bail!("sysconf(_SC_CLK_TCK) failed");
        }
        Ok(ticks as f64 / per_second as f64)
    }

    /// Sends SIGINT and reaps the tracer, returning what the kernel counted for it.
    pub async fn stop(mut self) -> anyhow::Result<Usage> {
        let pid = self.pid() as i32;
        kill(Pid::from_raw(pid), Signal::SIGINT)
            .with_context(|| format!("signalling {}", self.name))?;
        self.reaped = true;
        let signalled = Instant::now();
        let mut reaping = tokio::task::spawn_blocking(move || wait_with_usage(pid));
        let waited = match tokio::time::timeout(STOP_TIMEOUT, &mut reaping).await {
            Ok(waited) => waited,
            Err(_) => {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = reaping.await;
                bail!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGINT; see {}",
                    self.name,
                    self.log.display()
                );
            }
        };
        let mut usage = waited
            .context("the reaping thread failed")?
            .with_context(|| format!("waiting for {}", self.name))?;
        usage.exit_seconds = signalled.elapsed().as_secs_f64();
        Ok(usage)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `wait4` on our own child: its exit status and the kernel's resource usage for it.
fn wait_with_usage(pid: i32) -> std::io::Result<Usage> {
    let mut status = 0;
    // SAFETY: `rusage` is plain old data, for which all zero bytes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our unreaped child; `status` and `usage` are live, writable locals.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Usage {
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        exit_seconds: 0.0,
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks.
pub(super) fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from its last `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state): utime is field 14, index 11 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_past_a_strange_command_name() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 500 0 0 0 17 5 0 0 20 0 3 0 100";
        assert_eq!(stat_cpu_ticks(stat), Some(22));
        assert_eq!(stat_cpu_ticks("4242 (short) S 1"), None);
    }

    #[tokio::test]
    async fn a_stopped_process_reports_its_usage() {
        let dir = std::env::temp_dir().join(format!("kspan-bench-process-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let ready = dir.join("ready");
        let _ = fs::remove_file(&ready);
        let script = format!(
            "trap 'exit 3' INT; touch {}; while :; do sleep 0.01; done",
            ready.display()
        );
        let mut tracer = Tracer::spawn(
            "sh",
            Command::new("sh").args(["-c", &script]),
            &dir.join("sh.log"),
        )
        .expect("spawn");
        let took = tracer
            .wait_ready(&Readiness::File(ready), Duration::from_secs(10))
            .await
            .expect("ready");
        assert!(took < Duration::from_secs(10));
        assert!(tracer.cpu_so_far().expect("cpu") >= 0.0);
        let usage = tracer.stop().await.expect("stops");
        assert_eq!(usage.exit_code, Some(3));
        assert!(usage.exit_seconds > 0.0, "{usage:?}");
        assert!(usage.peak_rss_kib > 0, "{usage:?}");
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
