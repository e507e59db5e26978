//! Running `signalfd-workload` for a benchmark and reading the numbers it prints.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};

/// A started workload, held until `go` exists.
pub struct Workload {
    child: Child,
    what: String,
}

/// What a volume-mode run reported (its summary line on stderr).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VolumeOutcome {
    /// Calls made.
    pub calls: u64,
    /// Time the calls took.
    pub elapsed: Duration,
    /// Calls the kernel answered other than planned (the workload exits 1 then).
    pub unexpected: u64,
}

impl Workload {
    /// Starts `signalfd-workload ARGS --wait-for go` from `bin_dir`.
    pub fn spawn(bin_dir: &Path, args: &[String], go: &Path) -> anyhow::Result<Self> {
        let binary = binary(bin_dir, "signalfd-workload")?;
        let child = Command::new(&binary)
            .args(args)
            .arg("--wait-for")
            .arg(go)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child,
            what: format!("signalfd-workload {}", args.join(" ")),
        })
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .with_context(|| format!("`{}` exited at once", self.what))
    }

    /// Waits for the workload to end; returns its stdout and stderr, or fails with stderr if it
    /// failed (unless `failure_ok`).
    async fn finish(self, timeout: Duration, failure_ok: bool) -> anyhow::Result<(String, String)> {
        let what = self.what;
        let output = match tokio::time::timeout(timeout, self.child.wait_with_output()).await {
            Ok(output) => output.with_context(|| format!("waiting for `{what}`"))?,
            Err(_) => bail!("`{what}` did not finish within {timeout:?}"),
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() && !failure_ok {
            bail!("`{what}` failed ({}): {}", output.status, stderr.trim());
        }
        Ok((stdout, stderr))
    }

    /// Waits for a `bench` run and returns its nanoseconds per call.
    pub async fn bench_result(self, timeout: Duration) -> anyhow::Result<f64> {
        let (stdout, _) = self.finish(timeout, false).await?;
        parse_ns_per_call(&stdout)
            .with_context(|| format!("no ns_per_call in the bench output: {stdout:?}"))
    }

    /// Waits for a volume or scenario run and returns what it counted.
    pub async fn volume_result(self, timeout: Duration) -> anyhow::Result<VolumeOutcome> {
        let (_, stderr) = self.finish(timeout, true).await?;
        parse_volume_summary(&stderr)
            .with_context(|| format!("no call summary in the workload's stderr: {stderr:?}"))
    }
}

/// `ns_per_call=123.4` from the bench output.
fn parse_ns_per_call(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("ns_per_call="))
        .and_then(|value| value.parse().ok())
}

/// `calls=`, `unexpected=` and `elapsed=…s` from the workload's summary line.
fn parse_volume_summary(stderr: &str) -> Option<VolumeOutcome> {
    let line = stderr
        .lines()
        .find(|line| line.starts_with("signalfd-workload: calls="))?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
    };
    Some(VolumeOutcome {
        calls: field("calls")?.parse().ok()?,
        elapsed: Duration::from_secs_f64(field("elapsed")?.strip_suffix('s')?.parse().ok()?),
        unexpected: field("unexpected")?.parse().ok()?,
    })
}

/// `dir/name`, or an error saying how to build it.
pub fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it first (`cargo build --release -p kspan -p signalfd-workload`)",
            path.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bench_output() {
        let stdout = "ns_per_call=285.25\ncalls=100000\nsetup_calls=1\n";
        assert_eq!(parse_ns_per_call(stdout), Some(285.25));
        assert_eq!(parse_ns_per_call("calls=1\n"), None);
    }

    #[test]
    fn reads_the_volume_summary() {
        let stderr = "signalfd-workload: calls=200000 ok=170287 errors=29713 unexpected=0 \
                      elapsed=10.000s rate=20000/s manifest=none\n";
        assert_eq!(
            parse_volume_summary(stderr),
            Some(VolumeOutcome {
                calls: 200000,
                elapsed: Duration::from_secs(10),
                unexpected: 0,
            })
        );
        assert_eq!(parse_volume_summary("something else\n"), None);
    }
}
