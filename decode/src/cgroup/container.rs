//! What a cgroup's path says about the container and pod it belongs to, from the names container
//! runtimes and the kubelet give their cgroups under the systemd and cgroupfs drivers:
//!
//! | runtime, driver | container's cgroup |
//! |---|---|
//! | containerd, systemd | `.../kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope` |
//! | containerd (or any CRI), cgroupfs | `/kubepods/burstable/pod<uid>/<id>` |
//! | cri-o, systemd | `.../crio-<id>.scope` (`crio-conmon-<id>.scope` is its monitor, not it) |
//! | cri-o, cgroupfs | `.../pod<uid>/crio-<id>` |
//! | docker, systemd | `/system.slice/docker-<id>.scope` |
//! | docker, cgroupfs | `/docker/<id>` |
//!
//! `<id>` is 64 lowercase hex digits; under systemd the pod uid's dashes are underscores. The
//! names are the same in cgroup v1 hierarchies. These are pure functions of the path.

/// The container runtime, where the cgroup's name tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerRuntime {
    /// containerd (`cri-containerd-<id>.scope`).
    Containerd,
    /// CRI-O (`crio-<id>`).
    CriO,
    /// Docker Engine (`docker-<id>.scope`, `/docker/<id>`).
    Docker,
}

impl ContainerRuntime {
    /// `container.runtime.name`, as the runtime calls itself.
    pub fn name(self) -> &'static str {
        match self {
            ContainerRuntime::Containerd => "containerd",
            ContainerRuntime::CriO => "cri-o",
            ContainerRuntime::Docker => "docker",
        }
    }
}

/// The container and pod a cgroup belongs to; all `None` outside containers and pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerIdentity {
    /// `container.id`: the full 64-hex id.
    pub container_id: Option<String>,
    /// `container.runtime.name`, when the cgroup's name tells it.
    pub runtime: Option<ContainerRuntime>,
    /// `k8s.pod.uid`, with its dashes.
    pub pod_uid: Option<String>,
}

impl ContainerIdentity {
    /// Reads the identity from a cgroup path (`/`-separated, as in `/proc/<pid>/cgroup`). The
    /// deepest container name wins (a container nested in another is the inner one; a cgroup a
    /// container made below its own still belongs to it); a pod uid is taken only below a
    /// `kubepods` cgroup.
    pub fn from_path(path: &str) -> Self {
        let mut identity = Self::default();
        let mut parent = "";
        let mut under_kubepods = false;
        for name in path.split('/').filter(|name| !name.is_empty()) {
            under_kubepods |= name == "kubepods" || name.starts_with("kubepods-");
            if under_kubepods {
                if let Some(uid) = pod_uid(name) {
                    identity.pod_uid = Some(uid);
                }
            }
            if let Some((id, runtime)) = container(name, parent) {
                identity.container_id = Some(id.to_string());
                identity.runtime = runtime;
            }
            parent = name;
        }
        identity
    }

    /// Whether the path named no container and no pod.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The container a cgroup named `name` (child of `parent`) is, if it is one.
fn container<'a>(name: &'a str, parent: &str) -> Option<(&'a str, Option<ContainerRuntime>)> {
    let scoped = [
        ("cri-containerd-", ContainerRuntime::Containerd),
        ("crio-", ContainerRuntime::CriO),
        ("docker-", ContainerRuntime::Docker),
    ];
    for (prefix, runtime) in scoped {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        // cri-o's cgroupfs names have no `.scope`.
        let id = match runtime {
            ContainerRuntime::CriO => rest.strip_suffix(".scope").unwrap_or(rest),
            _ => rest.strip_suffix(".scope")?,
        };
        return is_container_id(id).then_some((id, Some(runtime)));
    }
    // cgroupfs: the bare id, named by its parent for docker; the kubelet's pod directories
    // do not say which CRI runtime made them.
    is_container_id(name).then_some((
        name,
        (parent == "docker").then_some(ContainerRuntime::Docker),
    ))
}

/// 64 lowercase hex digits: a full container id as runtimes name cgroups with it.
pub fn is_container_id(text: &str) -> bool {
    text.len() == 64 && is_lower_hex(text)
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The pod uid of a kubelet pod cgroup: `kubepods[-<qos>]-pod<uid_>.slice` (systemd, the uid's
/// dashes made underscores) or `pod<uid>` (cgroupfs).
fn pod_uid(name: &str) -> Option<String> {
    let uid = match name.strip_suffix(".slice") {
        Some(slice) => {
            let (_, uid) = slice.rsplit_once("-pod")?;
            uid.replace('_', "-")
        }
        None => name.strip_prefix("pod")?.to_string(),
    };
    is_pod_uid(&uid).then_some(uid)
}

/// A pod uid: a UUID (8-4-4-4-12 lowercase hex), or 32 hex digits (static pods' uids are a
/// hash of their manifest).
fn is_pod_uid(uid: &str) -> bool {
    if uid.len() == 32 {
        return is_lower_hex(uid);
    }
    let groups: Vec<&str> = uid.split('-').collect();
    groups.iter().map(|group| group.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|group| is_lower_hex(group))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809";
    const UID_: &str = "1b2c3d4e_5f60_4718_92a3_b4c5d6e7f809";

    fn expect(
        container: Option<&str>,
        runtime: Option<ContainerRuntime>,
        pod: Option<&str>,
    ) -> ContainerIdentity {
        ContainerIdentity {
            container_id: container.map(str::to_string),
            runtime,
            pod_uid: pod.map(str::to_string),
        }
    }

    #[test]
    fn real_path_shapes_name_their_container_and_pod() {
        use ContainerRuntime::*;
        let static_uid = "6f8e5d2c1b0a49387766554433221100";
        let cases: Vec<(String, ContainerIdentity)> = vec![
            // containerd, systemd driver (cgroup v2, and the same names in a v1 hierarchy).
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                expect(Some(ID), Some(Containerd), Some(UID)),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                expect(Some(ID), Some(Containerd), Some(UID)),
            ),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{static_uid}.slice/cri-containerd-{ID}.scope"),
                expect(Some(ID), Some(Containerd), Some(static_uid)),
            ),
            // cgroupfs driver: the runtime is not in the name.
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                expect(Some(ID), None, Some(UID)),
            ),
            (format!("/kubepods/pod{UID}/{ID}"), expect(Some(ID), None, Some(UID))),
            // cri-o, both drivers; its conmon is not the container.
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"),
                expect(Some(ID), Some(CriO), Some(UID)),
            ),
            (
                format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
                expect(Some(ID), Some(CriO), Some(UID)),
            ),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-conmon-{ID}.scope"),
                expect(None, None, Some(UID)),
            ),
            // docker, both drivers; a cgroup a container made inside its own still is it.
            (format!("/docker/{ID}"), expect(Some(ID), Some(Docker), None)),
            (format!("/system.slice/docker-{ID}.scope"), expect(Some(ID), Some(Docker), None)),
            (
                format!("/system.slice/docker-{ID}.scope/init.scope"),
                expect(Some(ID), Some(Docker), None),
            ),
            // Under a test's or a node agent's own parent cgroup, the names still count.
            (
                format!("/kspan-test-42/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                expect(Some(ID), Some(Containerd), Some(UID)),
            ),
            // docker in docker: the inner container.
            (
                format!("/docker/{}/docker/{ID}", "f".repeat(64)),
                expect(Some(ID), Some(Docker), None),
            ),
            // A pod's own slice: the pod, no container.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
                expect(None, None, Some(UID)),
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(ContainerIdentity::from_path(&path), expected, "{path}");
        }
    }

    #[test]
    fn names_that_merely_look_like_ids_name_nothing() {
        let short = &ID[..63];
        let long = format!("{ID}0");
        let upper = ID.to_uppercase();
        let not_hex = format!("{}g", &ID[..63]);
        let paths = [
            "/".to_string(),
            "/init.scope".to_string(),
            "/user.slice/user-0.slice/session-3.scope".to_string(),
            "/system.slice/docker.service".to_string(),
            "/system.slice/containerd.service".to_string(),
            "/kubepods.slice/kubepods-burstable.slice".to_string(),
            format!("/docker/{short}"),
            format!("/docker/{long}"),
            format!("/docker/{upper}"),
            format!("/docker/{not_hex}"),
            format!("/system.slice/docker-{short}.scope"),
            format!("/system.slice/docker-{ID}.scope.bak"),
            format!("/system.slice/docker-{ID}"),
            format!("/system.slice/cri-containerd-{not_hex}.scope"),
            format!("/system.slice/crio-{long}.scope"),
            // A pod-like name outside kubepods, and malformed uids inside it.
            format!("/pod{UID}"),
            format!("/kubepods/burstable/pod{}", &UID[..35]),
            format!("/kubepods.slice/kubepods-pod{}.slice", UID_.to_uppercase()),
            format!("/kubepods.slice/kubepods-pod{UID_}x.slice"),
        ];
        for path in paths {
            let identity = ContainerIdentity::from_path(&path);
            assert!(identity.is_empty(), "{path}: {identity:?}");
        }
    }

    #[test]
    fn cgroup_v1_lines_read_as_their_path() {
        // /proc/<pid>/cgroup of a v1 controller: hierarchy id, controllers, path.
        let line = format!("4:memory:/kubepods/burstable/pod{UID}/{ID}");
        let path = line.splitn(3, ':').nth(2).unwrap();
        assert_eq!(
            ContainerIdentity::from_path(path),
            expect(Some(ID), None, Some(UID))
        );
    }
}
