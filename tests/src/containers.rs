//! Containers without a container engine: cgroup hierarchies under the v2 mount named exactly as
//! containerd, cri-o and docker name them under the systemd and cgroupfs drivers, for the
//! workload to run in and the judge to check kspan's container and pod attributes against.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::run::{artifacts, Workload};

/// One cgroup the harness made, and what kspan must say of the calls made in it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FakeContainer {
    /// Which runtime's naming, under which driver.
    pub naming: String,
    /// Its path in the hierarchy, as `/proc/<pid>/cgroup` shows it.
    pub cgroup_path: String,
    /// `container.id` kspan must send; `None`: none at all.
    pub container_id: Option<String>,
    /// `container.runtime.name` kspan must send.
    pub runtime: Option<String>,
    /// `k8s.pod.uid` kspan must send.
    pub pod_uid: Option<String>,
    /// Whether the run's filter captures this cgroup's calls.
    pub selected: bool,
}

impl FakeContainer {
    /// The containers a run recorded (`containers.json`), if it ran in any.
    pub fn read_all(dir: &Path) -> anyhow::Result<Option<Vec<Self>>> {
        let path = dir.join(artifacts::CONTAINERS);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let containers =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Some(containers))
    }
}

/// The cgroups of one run, under `<v2 mount>/kspan-test-<pid>-<name>`, removed on drop (any
/// process still in them is killed first).
pub struct FakeContainers {
    mount: PathBuf,
    /// Hierarchy path of the run's own top cgroup.
    pub root: String,
    /// One per naming scheme.
    pub containers: Vec<FakeContainer>,
    /// Every directory made, parents first.
    made: Vec<PathBuf>,
}

impl FakeContainers {
    /// Makes a cgroup for every naming scheme, with fresh random ids.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        let mount = signalfd_workload::cgroup2_mount()
            .context("no cgroup2 mount of the whole hierarchy in /proc/self/mountinfo")?;
        let root = format!("/kspan-test-{}-{name}", std::process::id());
        let [id_containerd, id_crio, id_containerd_fs, id_docker_fs, id_docker, id_crio_fs] =
            [(); 6].map(|()| random_hex(32));
        let [uid_burstable, uid_besteffort, uid_fs, uid_crio_fs] = [(); 4].map(|()| pod_uid());
        let underscored = |uid: &str| uid.replace('-', "_");
        let k8s =
            |naming: &str, path: String, id: Option<&str>, runtime: Option<&str>, uid: &str| {
                FakeContainer {
                    naming: naming.to_string(),
                    cgroup_path: format!("{root}/{path}"),
                    container_id: id.map(str::to_string),
                    runtime: runtime.map(str::to_string),
                    pod_uid: Some(uid.to_string()),
                    selected: true,
                }
            };
        let burstable = format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            underscored(&uid_burstable)
        );
        let besteffort = format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            underscored(&uid_besteffort)
        );
        let docker = |naming: &str, path: String, id: &str| FakeContainer {
            naming: naming.to_string(),
            cgroup_path: format!("{root}/{path}"),
            container_id: Some(id.to_string()),
            runtime: Some("docker".to_string()),
            pod_uid: None,
            selected: true,
        };
        let containers = vec![
            k8s(
                "containerd, systemd driver",
                format!("{burstable}/cri-containerd-{id_containerd}.scope"),
                Some(&id_containerd),
                Some("containerd"),
                &uid_burstable,
            ),
            k8s(
                "cri-o, systemd driver",
                format!("{besteffort}/crio-{id_crio}.scope"),
                Some(&id_crio),
                Some("cri-o"),
                &uid_besteffort,
            ),
            // cri-o's container monitor sits in the pod beside the container: not the container.
            k8s(
                "cri-o's conmon, systemd driver",
                format!("{besteffort}/crio-conmon-{id_crio}.scope"),
                None,
                None,
                &uid_besteffort,
            ),
            k8s(
                "containerd, cgroupfs driver",
                format!("kubepods/burstable/pod{uid_fs}/{id_containerd_fs}"),
                Some(&id_containerd_fs),
                None,
                &uid_fs,
            ),
            k8s(
                "cri-o, cgroupfs driver",
                format!("kubepods/besteffort/pod{uid_crio_fs}/crio-{id_crio_fs}"),
                Some(&id_crio_fs),
                Some("cri-o"),
                &uid_crio_fs,
            ),
            docker(
                "docker, cgroupfs driver",
                format!("docker/{id_docker_fs}"),
                &id_docker_fs,
            ),
            docker(
                "docker, systemd driver",
                format!("system.slice/docker-{id_docker}.scope"),
                &id_docker,
            ),
        ];
        let mut fake = Self {
            mount,
            root,
            containers,
            made: Vec::new(),
        };
        let paths: Vec<String> = fake
            .containers
            .iter()
            .map(|c| c.cgroup_path.clone())
            .collect();
        for path in paths {
            fake.make(&path)?;
        }
        Ok(fake)
    }

    /// A cgroup of the run's own beside the containers (`<top>/<name>`), made now and removed
    /// with them; returns its directory.
    pub fn side_cgroup(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        let path = format!("{}/{name}", self.root);
        self.make(&path)?;
        Ok(self.dir(&path))
    }

    /// The directory of hierarchy path `path`.
    pub fn dir(&self, path: &str) -> PathBuf {
        self.mount.join(path.trim_start_matches('/'))
    }

    /// Only `container_id`'s cgroup is captured.
    pub fn select_only(&mut self, container_id: &str) {
        for container in &mut self.containers {
            container.selected = container.container_id.as_deref() == Some(container_id);
        }
    }

    /// kspan arguments for a run that proves both filters: the first container by a 12-digit
    /// prefix of its id (`--container`) and docker's cgroupfs tree (`--cgroup`); the others are
    /// marked as not selected.
    pub fn filter_args(&mut self) -> Vec<String> {
        let chosen = self.containers[0].container_id.clone().unwrap_or_default();
        let docker = format!("{}/docker", self.root);
        for container in &mut self.containers {
            container.selected = container.container_id.as_ref() == Some(&chosen)
                || container.cgroup_path.starts_with(&format!("{docker}/"));
        }
        ["--container", &chosen[..12], "--cgroup", &docker]
            .map(String::from)
            .to_vec()
    }

    /// The workload that runs one process in each cgroup, with scenario arguments `scenarios`.
    pub fn workload(&self, scenarios: Vec<String>) -> Workload {
        Workload::InCgroups {
            cgroups: self
                .containers
                .iter()
                .map(|container| self.dir(&container.cgroup_path))
                .collect(),
            scenarios,
        }
    }

    /// Saves what the judge must find (`containers.json`) in `out_dir`.
    pub fn write(&self, out_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(out_dir)?;
        let path = out_dir.join(artifacts::CONTAINERS);
        std::fs::write(&path, serde_json::to_string_pretty(&self.containers)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Makes `path` and each missing parent, remembering them for removal.
    fn make(&mut self, path: &str) -> anyhow::Result<()> {
        let mut dir = self.mount.clone();
        for name in path.split('/').filter(|name| !name.is_empty()) {
            dir.push(name);
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .with_context(|| format!("making cgroup {}", dir.display()))?;
                self.made.push(dir.clone());
            }
        }
        Ok(())
    }
}

impl Drop for FakeContainers {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            empty(dir);
            if let Err(error) = std::fs::remove_dir(dir) {
                eprintln!("cannot remove test cgroup {}: {error}", dir.display());
            }
        }
    }
}

/// Kills what is left in cgroup `dir` and waits until the kernel says it is empty.
fn empty(dir: &Path) {
    let populated = || {
        std::fs::read_to_string(dir.join("cgroup.events"))
            .is_ok_and(|events| events.lines().any(|line| line == "populated 1"))
    };
    if !populated() {
        return;
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|pid| pid.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while populated() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// `bytes` random bytes as lowercase hex.
fn random_hex(bytes: usize) -> String {
    use std::io::Read as _;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random pod uid, as the API server makes them (a UUID).
fn pod_uid() -> String {
    let hex = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
