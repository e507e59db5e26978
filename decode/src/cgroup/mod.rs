//! The caller's cgroup, from the id the probes report to its path in the v2 hierarchy and the
//! container and pod that path names. A cgroup's id is the inode number of its directory on
//! cgroup2, unique for the boot (never reused), and cgroup v2 directories cannot be renamed: an
//! id resolved once keeps its answer, so answers are cached and shared by every call.

mod container;
mod mount;

use std::{collections::HashMap, os::unix::fs::DirEntryExt as _, path::PathBuf, sync::Arc};

pub use container::{is_container_id, ContainerIdentity, ContainerRuntime};
pub use mount::Cgroup2Mount;

/// Bound on the cache, whatever the churn of cgroups; it is emptied when full.
const MAX_ENTRIES: usize = 16_384;

/// A cgroup found in the hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// Its path in the v2 hierarchy, as `/proc/<pid>/cgroup` shows it (`/` is the root).
    pub path: String,
    /// The container and pod its path names.
    pub identity: ContainerIdentity,
}

/// What a cgroup id resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLookup {
    /// The cgroup, by path.
    Found(Cgroup),
    /// No directory of the hierarchy kspan sees has this id: the cgroup was removed before
    /// kspan looked, or lies outside kspan's cgroup namespace. Never another cgroup's answer.
    NotFound,
    /// kspan sees no cgroup2 mount.
    NoHierarchy,
}

impl CgroupLookup {
    /// The cgroup, when found.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        match self {
            CgroupLookup::Found(cgroup) => Some(cgroup),
            CgroupLookup::NotFound | CgroupLookup::NoHierarchy => None,
        }
    }

    /// Why there is no path: `not_found` or `no_cgroup2` (`kspan.cgroup.unresolved`).
    pub fn unresolved_reason(&self) -> Option<&'static str> {
        match self {
            CgroupLookup::Found(_) => None,
            CgroupLookup::NotFound => Some("not_found"),
            CgroupLookup::NoHierarchy => Some("no_cgroup2"),
        }
    }
}

/// Resolves cgroup ids to cgroups, cached (bounded). A miss walks the hierarchy once, caching
/// every cgroup it passes, so one walk answers for every cgroup that existed then.
#[derive(Debug)]
pub struct CgroupResolver {
    mount: Option<Cgroup2Mount>,
    known: HashMap<u64, Arc<CgroupLookup>>,
    no_hierarchy: Arc<CgroupLookup>,
}

impl CgroupResolver {
    /// A resolver over this process's view of the v2 hierarchy (`/proc/self/mountinfo`).
    pub fn new() -> std::io::Result<Self> {
        let mount = Cgroup2Mount::find()?;
        if mount.is_none() {
            tracing::warn!("no cgroup2 mount in /proc/self/mountinfo: calls carry no cgroup path, container or pod");
        }
        Ok(Self::with_mount(mount))
    }

    /// A resolver over `mount`.
    pub fn with_mount(mount: Option<Cgroup2Mount>) -> Self {
        Self {
            mount,
            known: HashMap::new(),
            no_hierarchy: Arc::new(CgroupLookup::NoHierarchy),
        }
    }

    /// The mount it reads.
    pub fn mount(&self) -> Option<&Cgroup2Mount> {
        self.mount.as_ref()
    }

    /// The cgroup with id `id`.
    pub fn resolve(&mut self, id: u64) -> Arc<CgroupLookup> {
        if let Some(known) = self.known.get(&id) {
            return known.clone();
        }
        let Some(mount) = &self.mount else {
            return self.no_hierarchy.clone();
        };
        if self.known.len() >= MAX_ENTRIES {
            self.known.clear();
        }
        let mut found = None;
        for (cgroup_id, path) in walk(mount) {
            if cgroup_id == id {
                found = Some(path.clone());
            }
            if self.known.len() < MAX_ENTRIES {
                self.known
                    .entry(cgroup_id)
                    .or_insert_with(|| Arc::new(CgroupLookup::Found(cgroup(path))));
            }
        }
        let lookup = match found {
            Some(path) => Arc::new(CgroupLookup::Found(cgroup(path))),
            None => {
                tracing::debug!(cgroup.id = id, "cgroup not found: removed before it was resolved, or outside kspan's cgroup namespace");
                Arc::new(CgroupLookup::NotFound)
            }
        };
        self.known.insert(id, lookup.clone());
        lookup
    }
}

fn cgroup(path: String) -> Cgroup {
    Cgroup {
        identity: ContainerIdentity::from_path(&path),
        path,
    }
}

/// Every cgroup under `mount` (its top included), as (id, path). Directories that vanish while
/// it walks are skipped.
pub fn walk(mount: &Cgroup2Mount) -> Vec<(u64, String)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut cgroups = Vec::new();
    let Ok(top) = std::fs::metadata(&mount.mount_point) else {
        return cgroups;
    };
    cgroups.push((top.ino(), mount.root.clone()));
    let mut pending: Vec<(PathBuf, String)> = vec![(mount.mount_point.clone(), mount.root.clone())];
    while let Some((dir, path)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = match path.as_str() {
                "/" => format!("/{name}"),
                parent => format!("{parent}/{name}"),
            };
            cgroups.push((entry.ino(), child.clone()));
            pending.push((entry.path(), child));
        }
    }
    cgroups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup of the test's own under the v2 mount, removed on drop.
    struct TestCgroup(PathBuf);

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    fn own_cgroup_path() -> String {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        cgroups
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .unwrap()
            .to_string()
    }

    #[test]
    fn resolves_this_process_and_a_cgroup_made_and_removed() {
        use std::os::unix::fs::MetadataExt as _;
        let mount = Cgroup2Mount::find()
            .unwrap()
            .expect("cgroup2 is mounted here");
        let mut resolver = CgroupResolver::with_mount(Some(mount.clone()));
        let own = own_cgroup_path();
        let own_dir = mount.mount_point.join(own.trim_start_matches('/'));
        let own_id = std::fs::metadata(&own_dir).unwrap().ino();
        assert_eq!(
            resolver.resolve(own_id).cgroup().map(|c| c.path.as_str()),
            Some(own.as_str())
        );

        let name = format!(
            "kspan-decode-test-{}/docker-{}.scope",
            std::process::id(),
            "ab".repeat(32)
        );
        let parent = TestCgroup(mount.mount_point.join(name.split('/').next().unwrap()));
        std::fs::create_dir(&parent.0).unwrap();
        let child = TestCgroup(mount.mount_point.join(&name));
        std::fs::create_dir(&child.0).unwrap();
        let id = std::fs::metadata(&child.0).unwrap().ino();
        let gone_id = std::fs::metadata(&parent.0).unwrap().ino();
        drop(child);
        // Resolved while it exists: its path and container; the answer stays after removal.
        let mut fresh = CgroupResolver::with_mount(Some(mount.clone()));
        let parent_lookup = fresh.resolve(gone_id);
        assert_eq!(
            parent_lookup.cgroup().map(|c| c.path.clone()),
            Some(format!("/kspan-decode-test-{}", std::process::id()))
        );
        drop(parent);
        assert_eq!(fresh.resolve(gone_id), parent_lookup);
        // Removed before it was ever resolved: not found, never another cgroup.
        let lookup = resolver.resolve(id);
        assert_eq!(*lookup, CgroupLookup::NotFound);
        assert_eq!(lookup.unresolved_reason(), Some("not_found"));
    }

    #[test]
    fn a_host_without_cgroup2_resolves_nothing() {
        let mut resolver = CgroupResolver::with_mount(None);
        assert_eq!(*resolver.resolve(1), CgroupLookup::NoHierarchy);
        assert_eq!(resolver.resolve(1).unresolved_reason(), Some("no_cgroup2"));
    }

    #[test]
    fn a_cgroup_is_resolved_with_its_container() {
        let id = "cd".repeat(32);
        let mount = Cgroup2Mount::find()
            .unwrap()
            .expect("cgroup2 is mounted here");
        let top = TestCgroup(
            mount
                .mount_point
                .join(format!("kspan-decode-c-{}", std::process::id())),
        );
        std::fs::create_dir(&top.0).unwrap();
        let dir = TestCgroup(top.0.join(format!("crio-{id}.scope")));
        std::fs::create_dir(&dir.0).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        let cgroup_id = std::fs::metadata(&dir.0).unwrap().ino();
        let lookup = CgroupResolver::with_mount(Some(mount)).resolve(cgroup_id);
        let cgroup = lookup.cgroup().expect("found");
        assert_eq!(
            cgroup.path,
            format!("/kspan-decode-c-{}/crio-{id}.scope", std::process::id())
        );
        assert_eq!(cgroup.identity.container_id.as_deref(), Some(id.as_str()));
        assert_eq!(cgroup.identity.runtime, Some(ContainerRuntime::CriO));
        drop(dir);
    }
}
