//! `--cgroup` and `--container`: the cgroups whose tasks (and their descendants') are captured,
//! found once at start in the cgroup v2 hierarchy and handed to the probes.

use std::path::PathBuf;

use kspan_common::CGROUP_FILTER_CAPACITY;
use kspan_decode::cgroup::{walk, Cgroup2Mount, ContainerIdentity};

/// A cgroup filter that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum CgroupFilterError {
    /// The filter needs the v2 hierarchy, and kspan sees none.
    #[error("--cgroup and --container need the cgroup v2 hierarchy, and /proc/self/mountinfo has no cgroup2 mount: mount it (`mount -t cgroup2 none /sys/fs/cgroup/unified`) or drop the filter")]
    NoHierarchy,
    /// A container id prefix matches more than one container.
    #[error("--container {prefix} matches {} containers ({}): give more of the id", ids.len(), ids.join(", "))]
    AmbiguousContainer {
        /// The prefix given.
        prefix: String,
        /// The full ids it matches.
        ids: Vec<String>,
    },
    /// More cgroups than the kernel-side array holds.
    #[error("--cgroup and --container select {given} cgroups: the in-kernel filter holds at most {CGROUP_FILTER_CAPACITY}")]
    TooMany {
        /// Cgroups selected.
        given: usize,
    },
}

/// What the filter selects: cgroup paths in the hierarchy, and their directories.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CgroupSelection {
    /// Paths as `/proc/<pid>/cgroup` shows them, for the log.
    pub paths: Vec<String>,
    /// Their directories under the cgroup2 mount, for the probes' cgroup array.
    pub dirs: Vec<PathBuf>,
}

/// The cgroups `--cgroup` and `--container` select now; `None` when neither is given. A value
/// that matches nothing is a warning: containers come and go. The outer error is the system's
/// (no cgroup v2 hierarchy, unreadable), the inner one the user's (a value that cannot be used).
pub fn resolve(
    cgroups: &[String],
    containers: &[String],
) -> anyhow::Result<Result<Option<CgroupSelection>, CgroupFilterError>> {
    if cgroups.is_empty() && containers.is_empty() {
        return Ok(Ok(None));
    }
    let mount = Cgroup2Mount::find()?.ok_or(CgroupFilterError::NoHierarchy)?;
    let existing: Vec<String> = walk(&mount).into_iter().map(|(_, path)| path).collect();
    Ok(select(&mount, &existing, cgroups, containers).map(Some))
}

/// [`resolve`] over the cgroups that exist (`existing`, hierarchy paths).
fn select(
    mount: &Cgroup2Mount,
    existing: &[String],
    cgroups: &[String],
    containers: &[String],
) -> Result<CgroupSelection, CgroupFilterError> {
    let mut paths: Vec<String> = Vec::new();
    for asked in cgroups {
        let path = hierarchy_path(mount, asked);
        if existing.contains(&path) {
            paths.push(path);
        } else {
            tracing::warn!(cgroup = %asked, mount = %mount.mount_point.display(), "--cgroup matches no cgroup now: none of its calls will be captured");
        }
    }
    for prefix in containers {
        let matches: Vec<(&String, String)> = existing
            .iter()
            .filter_map(|path| {
                let id = ContainerIdentity::from_path(path).container_id?;
                id.starts_with(prefix.as_str()).then_some((path, id))
            })
            .collect();
        let mut ids: Vec<String> = matches.iter().map(|(_, id)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        if ids.len() > 1 {
            return Err(CgroupFilterError::AmbiguousContainer {
                prefix: prefix.clone(),
                ids,
            });
        }
        if matches.is_empty() {
            tracing::warn!(container = %prefix, "--container matches no container's cgroup now: none of its calls will be captured");
        }
        paths.extend(matches.into_iter().map(|(path, _)| path.clone()));
    }
    // A cgroup below another selected one is covered by it.
    paths.sort();
    paths.dedup();
    let covered = |path: &String, by: &String| {
        path != by && (by == "/" || path.starts_with(&format!("{by}/")))
    };
    let paths: Vec<String> = paths
        .iter()
        .filter(|path| !paths.iter().any(|other| covered(path, other)))
        .cloned()
        .collect();
    if paths.len() > CGROUP_FILTER_CAPACITY as usize {
        return Err(CgroupFilterError::TooMany { given: paths.len() });
    }
    let dirs = paths.iter().map(|path| directory(mount, path)).collect();
    Ok(CgroupSelection { paths, dirs })
}

/// `asked` as a path in the hierarchy: a directory under the mount, or already such a path.
fn hierarchy_path(mount: &Cgroup2Mount, asked: &str) -> String {
    let trimmed = asked.trim_end_matches('/');
    let relative = match std::path::Path::new(trimmed).strip_prefix(&mount.mount_point) {
        Ok(below) => below.to_string_lossy().into_owned(),
        Err(_) => return format!("/{}", trimmed.trim_start_matches('/')),
    };
    join(&mount.root, &relative)
}

/// The directory of hierarchy path `path` under the mount.
fn directory(mount: &Cgroup2Mount, path: &str) -> PathBuf {
    let relative = match mount.root.as_str() {
        "/" => path,
        root => path.strip_prefix(root).unwrap_or(path),
    };
    mount.mount_point.join(relative.trim_start_matches('/'))
}

fn join(root: &str, relative: &str) -> String {
    match (root, relative) {
        (root, "") => root.to_string(),
        ("/", relative) => format!("/{relative}"),
        (root, relative) => format!("{root}/{relative}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789ab0123456789abcdef0123456789abcdef0123456789abcdef0000";
    const B: &str = "0123456789ab0123456789abcdef0123456789abcdef0123456789abcdef1111";

    fn mount() -> Cgroup2Mount {
        Cgroup2Mount {
            mount_point: "/sys/fs/cgroup/unified".into(),
            root: "/".into(),
        }
    }

    fn existing() -> Vec<String> {
        [
            "/".to_string(),
            "/system.slice".into(),
            format!("/system.slice/docker-{A}.scope"),
            format!("/system.slice/docker-{A}.scope/init.scope"),
            format!("/kubepods/besteffort/podx/crio-conmon-{B}"),
            format!("/kubepods/besteffort/podx/crio-{B}"),
            "/user.slice".into(),
        ]
        .into()
    }

    fn selected(cgroups: &[&str], containers: &[&str]) -> Result<Vec<String>, String> {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        select(
            &mount(),
            &existing(),
            &strings(cgroups),
            &strings(containers),
        )
        .map(|selection| selection.paths)
        .map_err(|error| error.to_string())
    }

    #[test]
    fn containers_are_found_by_id_prefix_and_cgroups_by_path() {
        let docker = format!("/system.slice/docker-{A}.scope");
        let crio = format!("/kubepods/besteffort/podx/crio-{B}");
        assert_eq!(selected(&[], &[&A[..64]]), Ok(vec![docker.clone()]));
        assert_eq!(selected(&[], &[&B[..61]]), Ok(vec![crio.clone()]));
        // As /proc/<pid>/cgroup shows it, or as its directory; descendants are covered.
        assert_eq!(
            selected(
                &["/system.slice/", "/sys/fs/cgroup/unified/user.slice"],
                &[&A[..61]]
            ),
            Ok(vec!["/system.slice".to_string(), "/user.slice".to_string()])
        );
        // Nothing there: a warning, and the filter selects nothing.
        assert_eq!(selected(&["/gone"], &["fedcba987654"]), Ok(vec![]));
    }

    #[test]
    fn an_ambiguous_prefix_is_refused_with_the_ids() {
        assert_eq!(
            selected(&[], &[&A[..12]]),
            Err(format!(
                "--container 0123456789ab matches 2 containers ({A}, {B}): give more of the id"
            ))
        );
    }

    #[test]
    fn directories_sit_under_the_mount() {
        let mount = Cgroup2Mount {
            mount_point: "/host/cgroup".into(),
            root: "/kubepods".into(),
        };
        assert_eq!(
            directory(&mount, "/kubepods/pod1/abc"),
            PathBuf::from("/host/cgroup/pod1/abc")
        );
        assert_eq!(
            hierarchy_path(&mount, "/host/cgroup/pod1"),
            "/kubepods/pod1"
        );
        assert_eq!(hierarchy_path(&mount, "/host/cgroup"), "/kubepods");
        assert_eq!(hierarchy_path(&mount, "/kubepods/pod1/"), "/kubepods/pod1");
    }
}
