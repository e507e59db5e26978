//! One capture run: receiver, workload (held until the agent is ready), agent, then stop.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context as _};
use kspan_receiver::{Receiver, ReceiverConfig, ReceiverSecurity, ReceiverStats};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use tokio::process::{Child, Command};

use crate::rotel::{self, Rotel, RotelConfig};

/// Files a run leaves in its output directory.
pub mod artifacts {
    /// The workload's manifest (JSON lines).
    pub const MANIFEST: &str = "manifest.jsonl";
    /// The workload's manifest of calls of declared syscalls (JSON lines), e.g. the `open`
    /// scenario's openat calls.
    pub const DECLARED_MANIFEST: &str = "declared.jsonl";
    /// Everything the receiver got (JSON lines of OTLP requests).
    pub const RECEIVED: &str = "received.jsonl";
    /// kspan's `--summary-file`.
    pub const SUMMARY: &str = "summary.json";
    /// kspan's stderr (and its stdout, when it sends to a receiver).
    pub const KSPAN_LOG: &str = "kspan.log";
    /// The run's settings and exit statuses.
    pub const RUN: &str = "run.json";
    /// kspan's ready file.
    pub const READY: &str = "ready";
    /// The workload's file saying its mid-flight calls are held inside the kernel.
    pub const HELD: &str = "held";
    /// The cgroups the workloads ran in and what kspan must say of them
    /// ([`crate::FakeContainer`]s).
    pub const CONTAINERS: &str = "containers.json";
}

pub use crate::transport::Transport;

/// Where kspan sends what it captures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Destination {
    /// An in-process OTLP receiver, over this transport; what it gets is saved for the judge.
    Receiver(Transport),
    /// rotel, a real OpenTelemetry collector, in between: kspan sends to it over `transport`,
    /// it forwards everything over OTLP/gRPC to an in-process receiver, saved for the judge.
    Rotel {
        /// From kspan to rotel.
        transport: Transport,
        /// Whether rotel takes metrics; without, it answers them as a collector without a
        /// metrics pipeline does (gRPC UNIMPLEMENTED, HTTP 404).
        accepts_metrics: bool,
    },
    /// kspan's own stdout (`--exporter stdout`), passed through: the demo.
    Stdout,
}

/// What the workload does while kspan watches.
#[derive(Clone, Debug)]
pub enum Workload {
    /// Scenarios, recorded call by call in the manifest; the arguments pick them
    /// (e.g. `--scenario threads --threads 16`), none means the default set.
    Scenarios(Vec<String>),
    /// The tight benchmark loop: this many updates of one signalfd (plus the call that creates
    /// it), as fast as possible, with no manifest.
    Bench {
        /// Updates to make.
        calls: u64,
    },
    /// One workload process per cgroup directory, each moved into its cgroup before it starts
    /// (its manifests are merged into one); kspan gets no `--pid` filter, so the run's
    /// `kspan_args` must say what to watch (e.g. `--cgroup`).
    InCgroups {
        /// cgroup directories under the v2 mount.
        cgroups: Vec<PathBuf>,
        /// Scenario arguments, for each of them.
        scenarios: Vec<String>,
    },
    /// `calls` calls held inside the kernel before kspan starts (`--midflight`): kspan starts
    /// once they are held and they finish once it is ready; then the scenarios, as above.
    MidFlight {
        /// Calls held, one thread each.
        calls: u16,
        /// Scenario arguments.
        scenarios: Vec<String>,
    },
}

/// What to run.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    /// `--attach` value for kspan.
    pub attach: String,
    /// Where kspan sends calls.
    pub destination: Destination,
    /// Directory holding the `kspan` and `signalfd-workload` binaries.
    pub bin_dir: PathBuf,
    /// Program and arguments that launch kspan, its path and arguments appended (e.g. capsh
    /// with fewer capabilities); empty: kspan runs directly.
    pub kspan_wrapper: Vec<String>,
    /// Where the artifacts go (created if missing).
    pub out_dir: PathBuf,
    /// What the workload does.
    pub workload: Workload,
    /// Extra arguments for kspan.
    pub kspan_args: Vec<String>,
    /// Extra environment variables for kspan.
    pub kspan_env: Vec<(String, String)>,
    /// Longest the workload may run.
    pub timeout: Duration,
    /// Stop kspan (SIGTERM) this long after it is ready, while the workload still runs.
    pub stop_kspan_after: Option<Duration>,
    /// Take the receiver away for a while during the run.
    pub receiver_outage: Option<Outage>,
    /// TLS and a required header for the receiver (kspan's trust and header go in
    /// `kspan_args`/`kspan_env`); none by default.
    pub receiver_security: ReceiverSecurity,
    /// `user:password` put in kspan's endpoint URL (`http://user:password@127.0.0.1:port`).
    pub endpoint_userinfo: Option<String>,
}

/// The run's settings and outcome, saved as `run.json` for the judge.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// `--attach` value.
    pub attach: String,
    /// Where kspan sent calls.
    pub destination: Destination,
    /// kspan's exit code.
    pub kspan_exit: Option<i32>,
    /// The workload's exit code.
    pub workload_exit: Option<i32>,
    /// What the receiver accepted and refused, when kspan sent to one.
    #[serde(default)]
    pub receiver: Option<ReceiverStats>,
    /// Ids of the BPF programs kspan held once ready (read when it is stopped mid-run), so a
    /// test can check that exactly these are gone, whatever other kspans the host runs.
    #[serde(default)]
    pub kspan_program_ids: Vec<u32>,
}

/// Runs the workload under kspan with a receiver, leaving the artifacts in `out_dir`.
pub async fn run_capture(config: &CaptureConfig) -> anyhow::Result<RunRecord> {
    let out = &config.out_dir;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ready = out.join(artifacts::READY);
    let _ = std::fs::remove_file(&ready);
    let mut rotel = None;
    let (receiver, exporter_args) = match config.destination {
        Destination::Rotel {
            transport,
            accepts_metrics,
        } => {
            if config.receiver_outage.is_some() {
                bail!("a receiver outage is not supported behind rotel");
            }
            let agent = rotel::installed_agent()?;
            let (receiver, _) =
                start_receiver(Transport::Grpc, ReceiverSecurity::default(), None).await?;
            let forward_to = receiver
                .grpc_endpoint()
                .context("receiver has no gRPC endpoint")?;
            let collector = Rotel::start(&RotelConfig {
                agent,
                forward_to,
                accepts_metrics,
                dir: out.clone(),
            })
            .await?;
            let protocol = match transport {
                Transport::Grpc => "grpc",
                Transport::Http => "http/protobuf",
            };
            let args = [
                "--otlp-protocol",
                protocol,
                "--otlp-endpoint",
                &collector.endpoint(transport),
            ]
            .map(String::from)
            .to_vec();
            rotel = Some(collector);
            (Some(ReceiverHandle::Running(receiver)), args)
        }
        Destination::Receiver(transport) => {
            let (receiver, args) = start_receiver(
                transport,
                config.receiver_security.clone(),
                config.endpoint_userinfo.as_deref(),
            )
            .await?;
            let receiver = match config.receiver_outage {
                Some(outage) => ReceiverHandle::Outage(tokio::spawn(outage.run(
                    receiver,
                    ready.clone(),
                    config.timeout,
                ))),
                None => ReceiverHandle::Running(receiver),
            };
            (Some(receiver), args)
        }
        Destination::Stdout => (None, vec!["--exporter".to_string(), "stdout".to_string()]),
    };

    let held = out.join(artifacts::HELD);
    let _ = std::fs::remove_file(&held);
    let workload_binary = binary(&config.bin_dir, "signalfd-workload")?;
    let mut commands = Vec::new();
    let mut manifests = Vec::new();
    let mut declared_manifests = Vec::new();
    let manifests_in_out: [std::ffi::OsString; 4] = [
        "--manifest".into(),
        out.join(artifacts::MANIFEST).into(),
        "--declared-manifest".into(),
        out.join(artifacts::DECLARED_MANIFEST).into(),
    ];
    match &config.workload {
        Workload::Scenarios(args) => {
            let mut workload = Command::new(&workload_binary);
            workload.args(&manifests_in_out).args(args);
            commands.push(workload);
        }
        Workload::Bench { calls } => {
            let mut workload = Command::new(&workload_binary);
            workload.args(["bench", "--calls", &calls.to_string()]);
            commands.push(workload);
        }
        Workload::MidFlight { calls, scenarios } => {
            let mut workload = Command::new(&workload_binary);
            workload
                .args(&manifests_in_out)
                .args(["--midflight", &calls.to_string(), "--midflight-file"])
                .arg(&held)
                .args(scenarios);
            commands.push(workload);
        }
        Workload::InCgroups { cgroups, scenarios } => {
            for (index, cgroup) in cgroups.iter().enumerate() {
                let manifest = out.join(format!("manifest-{index}.jsonl"));
                let declared = out.join(format!("declared-{index}.jsonl"));
                let mut workload = Command::new(&workload_binary);
                workload
                    .arg("--manifest")
                    .arg(&manifest)
                    .arg("--declared-manifest")
                    .arg(&declared)
                    .args(scenarios);
                move_into_cgroup(&mut workload, cgroup)?;
                commands.push(workload);
                manifests.push(manifest);
                declared_manifests.push(declared);
            }
        }
    };
    let mut workloads = Vec::new();
    for mut workload in commands {
        workloads.push(
            workload
                .arg("--wait-for")
                .arg(&ready)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("starting signalfd-workload")?,
        );
    }
    let mut workload = workloads.remove(0);
    let workload_pid = workload.id().context("workload exited at once")?;
    if let Workload::MidFlight { .. } = config.workload {
        // kspan must attach while the held calls are already inside the kernel.
        tokio::select! {
            waited = wait_for_file(&held, config.timeout) => waited?,
            status = workload.wait() => bail!("the workload exited ({status:?}) before its mid-flight calls were held"),
        }
    }

    let kspan_log = std::fs::File::create(out.join(artifacts::KSPAN_LOG))?;
    let pid_filter = match config.workload {
        Workload::InCgroups { .. } => Vec::new(),
        _ => vec!["--pid".to_string(), workload_pid.to_string()],
    };
    let mut kspan = kspan_command(&config.kspan_wrapper, binary(&config.bin_dir, "kspan")?)
        .args(["--attach", &config.attach])
        .args(&pid_filter)
        .args(&exporter_args)
        .arg("--ready-file")
        .arg(&ready)
        .arg("--summary-file")
        .arg(out.join(artifacts::SUMMARY))
        .args(&config.kspan_args)
        .envs(config.kspan_env.iter().cloned())
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .stdin(Stdio::null())
        .stdout(match config.destination {
            Destination::Stdout => Stdio::inherit(),
            Destination::Receiver(_) | Destination::Rotel { .. } => {
                Stdio::from(kspan_log.try_clone()?)
            }
        })
        .stderr(kspan_log)
        .kill_on_drop(true)
        .spawn()
        .context("starting kspan")?;

    let kspan_pid = kspan.id().context("kspan exited at once")?;
    let stop_kspan = async {
        match config.stop_kspan_after {
            // Stopping mid-run: counted from the moment kspan is ready.
            Some(delay) => {
                wait_for_file(&ready, config.timeout).await?;
                let programs = bpf_program_ids(kspan_pid)?;
                tokio::time::sleep(delay).await;
                anyhow::Ok(programs)
            }
            None => std::future::pending().await,
        }
    };
    // The workload starts calling once kspan is ready; kspan dying first is a failure.
    let all_exited = async {
        let first = workload.wait().await?;
        let mut worst = first;
        for other in &mut workloads {
            let status = other.wait().await?;
            if worst.success() {
                worst = status;
            }
        }
        std::io::Result::Ok(worst)
    };
    let (workload_exit, kspan_exit, kspan_program_ids) = tokio::select! {
        status = all_exited => (status?, stop(&mut kspan, Signal::SIGINT).await?, Vec::new()),
        stopped = stop_kspan => {
            let programs = stopped?;
            let kspan_exit = stop(&mut kspan, Signal::SIGTERM).await?;
            (workload.wait().await?, kspan_exit, programs)
        }
        status = kspan.wait() => {
            let _ = workload.start_kill();
            bail!("kspan exited early ({status:?}); see {}", out.join(artifacts::KSPAN_LOG).display());
        }
        _ = tokio::time::sleep(config.timeout) => bail!("the workload did not finish within {:?}", config.timeout),
    };
    merge_manifests(&manifests, &out.join(artifacts::MANIFEST))?;
    merge_manifests(&declared_manifests, &out.join(artifacts::DECLARED_MANIFEST))?;
    // rotel exports what it still holds when it stops: the receiver then has everything.
    if let Some(rotel) = rotel {
        rotel.stop().await?;
    }
    let mut receiver_stats = None;
    if let Some(receiver) = receiver {
        let receiver = match receiver {
            ReceiverHandle::Running(receiver) => receiver,
            ReceiverHandle::Outage(task) => task.await??,
        };
        receiver
            .store()
            .write_jsonl(&out.join(artifacts::RECEIVED))?;
        receiver_stats = Some(receiver.store().stats());
        receiver.shutdown().await;
    }

    let record = RunRecord {
        attach: config.attach.clone(),
        destination: config.destination,
        kspan_exit,
        workload_exit: workload_exit.code(),
        receiver: receiver_stats,
        kspan_program_ids,
    };
    std::fs::write(
        out.join(artifacts::RUN),
        serde_json::to_string_pretty(&record)?,
    )?;
    Ok(record)
}

/// Makes the workload move itself into cgroup `dir` between fork and exec, so every call it
/// makes is made there.
fn move_into_cgroup(workload: &mut Command, dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let procs = std::ffi::CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
        .context("a cgroup path with a NUL byte")?;
    // SAFETY: the closure makes only async-signal-safe calls (open, write, close) on memory
    // prepared before the fork; "0" moves the writing process itself.
    unsafe {
        workload.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, c"0".as_ptr().cast(), 1);
            let error = std::io::Error::last_os_error();
            libc::close(fd);
            if written != 1 {
                return Err(error);
            }
            Ok(())
        });
    }
    Ok(())
}

/// The workloads' manifests, one after the other, as the run's manifest.
fn merge_manifests(parts: &[PathBuf], merged: &Path) -> anyhow::Result<()> {
    if parts.is_empty() {
        return Ok(());
    }
    let mut all = Vec::new();
    for part in parts {
        all.extend(std::fs::read(part).with_context(|| format!("reading {}", part.display()))?);
    }
    std::fs::write(merged, all).with_context(|| format!("writing {}", merged.display()))
}

/// Ids of the BPF programs process `pid` holds open (`prog_id` in its fds' fdinfo).
pub(crate) fn bpf_program_ids(pid: u32) -> anyhow::Result<Vec<u32>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        // An fd closed since the listing has no fdinfo any more: not a program kspan holds.
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        ids.extend(
            info.lines()
                .filter_map(|line| line.strip_prefix("prog_id:"))
                .filter_map(|id| id.trim().parse::<u32>().ok()),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The receiver, or the task that stops and restarts it.
enum ReceiverHandle {
    Running(Receiver),
    Outage(tokio::task::JoinHandle<anyhow::Result<Receiver>>),
}

/// A collector outage: the receiver stops this long after kspan is ready, and comes back on
/// the same address, with what it had received, after `length`.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    /// From kspan's readiness to the outage.
    pub after: Duration,
    /// How long the receiver is gone.
    pub length: Duration,
}

impl Outage {
    async fn run(
        self,
        receiver: Receiver,
        ready: PathBuf,
        timeout: Duration,
    ) -> anyhow::Result<Receiver> {
        wait_for_file(&ready, timeout).await?;
        tokio::time::sleep(self.after).await;
        let store = receiver.store();
        let config = receiver.config();
        receiver.shutdown().await;
        tokio::time::sleep(self.length).await;
        Receiver::start_with_store(config, store)
            .await
            .context("restarting the receiver after the outage")
    }
}

/// A receiver on a free loopback port, and the kspan arguments that point at it (with
/// `userinfo` in the URL, if given).
async fn start_receiver(
    transport: Transport,
    security: ReceiverSecurity,
    userinfo: Option<&str>,
) -> anyhow::Result<(Receiver, Vec<String>)> {
    let config = match transport {
        Transport::Grpc => ReceiverConfig {
            grpc_addr: Some(loopback()),
            security,
            ..ReceiverConfig::default()
        },
        Transport::Http => ReceiverConfig {
            http_addr: Some(loopback()),
            security,
            ..ReceiverConfig::default()
        },
    };
    let receiver = Receiver::start(config)
        .await
        .context("starting the OTLP receiver")?;
    let (protocol, endpoint) = match transport {
        Transport::Grpc => ("grpc", receiver.grpc_endpoint()),
        Transport::Http => ("http/protobuf", receiver.http_endpoint()),
    };
    let mut endpoint = endpoint.context("receiver has no endpoint")?;
    if let (Some(userinfo), Some(authority)) = (userinfo, endpoint.find("://")) {
        endpoint.insert_str(authority + 3, &format!("{userinfo}@"));
    }
    let args = ["--otlp-protocol", protocol, "--otlp-endpoint", &endpoint]
        .map(String::from)
        .to_vec();
    Ok((receiver, args))
}

/// Sends `signal`, then gives kspan up to a minute to flush and exit.
async fn stop(kspan: &mut Child, signal: Signal) -> anyhow::Result<Option<i32>> {
    let pid = kspan.id().context("kspan already reaped")?;
    kill(Pid::from_raw(pid as i32), signal).context("signalling kspan")?;
    match tokio::time::timeout(Duration::from_secs(60), kspan.wait()).await {
        Ok(status) => Ok(status?.code()),
        Err(_) => bail!("kspan did not exit within 60 s of {signal}"),
    }
}

async fn wait_for_file(path: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !path.exists() {
        if tokio::time::Instant::now() > deadline {
            bail!("{} did not appear within {timeout:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `kspan`, or `wrapper... kspan` when a wrapper launches it.
fn kspan_command(wrapper: &[String], kspan: PathBuf) -> Command {
    match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(kspan);
            command
        }
        None => Command::new(kspan),
    }
}

fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it first (`cargo build -p kspan -p signalfd-workload`; `cargo xtask test` does this)",
            path.display()
        );
    }
    Ok(path)
}
