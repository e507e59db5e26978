//! rotel, a third-party OpenTelemetry collector (PyPI `rotel` bundles `rotel-agent`, written in
//! Rust), between kspan and the receiver: what users run is a collector, not our receiver.
//! `cargo xtask setup` installs the pinned version into a venv under cargo's target directory;
//! a run starts it on free loopback ports, forwarding over OTLP/gRPC, and stops it (which
//! flushes what it holds) before the receiver's store is saved.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context as _};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use tokio::process::{Child, Command};

use crate::transport::Transport;

/// The PyPI release `cargo xtask setup` installs and the tests run.
pub const ROTEL_VERSION: &str = "0.0.1a15";

/// How long rotel may take to listen on both ports.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long rotel may take to flush and exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The venv rotel is installed into, under cargo's target directory `target_dir`.
pub fn venv_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("tools").join("rotel-venv")
}

/// The collector's binary in a venv: setup links it into the venv's `bin/` (pip leaves it
/// inside the package, under a path that names the Python version).
pub fn agent_path(venv: &Path) -> PathBuf {
    venv.join("bin").join("rotel-agent")
}

/// Where the tests look for rotel: the venv under `CARGO_TARGET_DIR`, else under the
/// workspace's `target/` (as `cargo xtask setup` puts it).
pub fn installed_agent() -> anyhow::Result<PathBuf> {
    // cargo runs tests in the package's directory: a relative CARGO_TARGET_DIR is taken from
    // the workspace root, where cargo was run (Path::join keeps an absolute one as is).
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = package.parent().unwrap_or(package);
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let agent = agent_path(&venv_dir(&target_dir));
    if !agent.is_file() {
        bail!(
            "the rotel collector (PyPI rotel {ROTEL_VERSION}) is not installed at {}: run `cargo xtask setup`",
            agent.display()
        );
    }
    Ok(agent)
}

/// How rotel is set up for a run.
#[derive(Clone, Debug)]
pub struct RotelConfig {
    /// rotel-agent.
    pub agent: PathBuf,
    /// The OTLP/gRPC endpoint rotel forwards every signal to.
    pub forward_to: String,
    /// Whether rotel's receiver takes metrics; without, it answers them as a collector without
    /// a metrics pipeline does (gRPC UNIMPLEMENTED, HTTP 404).
    pub accepts_metrics: bool,
    /// Where its log and pid file go.
    pub dir: PathBuf,
}

/// A running rotel.
#[derive(Debug)]
pub struct Rotel {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    log: PathBuf,
}

impl Rotel {
    /// Starts rotel on two free loopback ports and returns once it accepts connections on both.
    pub async fn start(config: &RotelConfig) -> anyhow::Result<Self> {
        let [grpc, http] = free_ports()?;
        let log = config.dir.join("rotel.log");
        let output =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(&config.agent);
        command
            .arg("start")
            .arg("--otlp-grpc-endpoint")
            .arg(grpc.to_string())
            .arg("--otlp-http-endpoint")
            .arg(http.to_string())
            .args(["--exporter", "otlp", "--otlp-exporter-protocol", "grpc"])
            .arg("--otlp-exporter-endpoint")
            .arg(&config.forward_to)
            // Its own files in the run's directory, not /tmp's shared defaults.
            .arg("--pid-file")
            .arg(config.dir.join("rotel.pid"))
            .arg("--log-file")
            .arg(config.dir.join("rotel-daemon.log"));
        if !config.accepts_metrics {
            command.arg("--otlp-receiver-metrics-disabled");
        }
        let child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(output.try_clone()?))
            .stderr(Stdio::from(output))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", config.agent.display()))?;
        let mut rotel = Rotel {
            child,
            grpc,
            http,
            log,
        };
        rotel.wait_until_listening().await?;
        Ok(rotel)
    }

    /// Polls both ports until they accept a connection; rotel exiting first is a failure.
    async fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        for addr in [self.grpc, self.http] {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                if let Some(status) = self.child.try_wait()? {
                    bail!(
                        "rotel exited ({status}) before listening on {addr}: {}",
                        self.log_text()
                    );
                }
                if tokio::time::Instant::now() > deadline {
                    bail!(
                        "rotel did not listen on {addr} within {START_TIMEOUT:?}: {}",
                        self.log_text()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// The base URL kspan sends to over `transport`.
    pub fn endpoint(&self, transport: Transport) -> String {
        match transport {
            Transport::Grpc => format!("http://{}", self.grpc),
            Transport::Http => format!("http://{}", self.http),
        }
    }

    /// SIGTERM, which makes rotel export what it still holds, then waits for its exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().context("rotel was already reaped")?;
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).context("signalling rotel")?;
        let status = tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .with_context(|| format!("rotel did not exit within {STOP_TIMEOUT:?} of SIGTERM"))??;
        if !status.success() {
            bail!("rotel exited with {status}: {}", self.log_text());
        }
        Ok(())
    }

    /// Where its output is, and its last lines, for an error message.
    fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{} ends with:\n{}", self.log.display(), tail.join("\n"))
    }
}

/// Two distinct loopback ports nothing listens on now (bound together, read, released: rotel
/// takes addresses, not listening sockets).
fn free_ports() -> anyhow::Result<[SocketAddr; 2]> {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port");
    let (first, second) = (bind()?, bind()?);
    Ok([first.local_addr()?, second.local_addr()?])
}
