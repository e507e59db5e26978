//! Where the cgroup v2 hierarchy is mounted, from `/proc/self/mountinfo`: `/sys/fs/cgroup` on a
//! pure v2 host, `/sys/fs/cgroup/unified` beside the v1 controllers in systemd's hybrid layout.

use std::path::PathBuf;

/// The id (directory inode) of the root cgroup of the v2 hierarchy.
const ROOT_CGROUP_ID: u64 = 1;

/// A cgroup2 mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The cgroup at its top, as a path in the hierarchy (`/` unless it is a bind mount of a
    /// sub-tree, or the reader is in a cgroup namespace).
    pub root: String,
}

impl Cgroup2Mount {
    /// This process's view of the cgroup v2 hierarchy; `None` without a cgroup2 mount. A mount
    /// whose top directory is the hierarchy's root cgroup (id 1) wins whatever `mountinfo` says
    /// its root is: in a cgroup namespace (a pod's, on cgroup v2) that field is relative to the
    /// namespace, and a bind mount of the host's hierarchy is the one that shows every cgroup.
    pub fn find() -> std::io::Result<Option<Self>> {
        use std::os::unix::fs::MetadataExt as _;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let whole = Self::all(&mountinfo).into_iter().find(|mount| {
            std::fs::metadata(&mount.mount_point).is_ok_and(|top| top.ino() == ROOT_CGROUP_ID)
        });
        Ok(whole
            .map(|mount| Self {
                root: "/".to_string(),
                ..mount
            })
            .or_else(|| Self::from_mountinfo(&mountinfo)))
    }

    /// The first cgroup2 mount of a `mountinfo` text whose top is the hierarchy's root, else
    /// the first one (see proc(5): `id parent major:minor root mount-point options... - fstype
    /// source super-options`).
    pub fn from_mountinfo(mountinfo: &str) -> Option<Self> {
        let mounts = Self::all(mountinfo);
        let whole = mounts.iter().position(|mount| mount.root == "/");
        whole
            .or((!mounts.is_empty()).then_some(0))
            .map(|index| mounts[index].clone())
    }

    fn all(mountinfo: &str) -> Vec<Self> {
        mountinfo.lines().filter_map(Self::from_line).collect()
    }

    fn from_line(line: &str) -> Option<Self> {
        let (mount, filesystem) = line.split_once(" - ")?;
        if filesystem.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut fields = mount.split(' ').skip(3);
        let root = unescape(fields.next()?);
        let mount_point = unescape(fields.next()?);
        Some(Self {
            mount_point: PathBuf::from(mount_point),
            root,
        })
    }
}

/// mountinfo writes space, tab, newline and backslash as three-digit octal escapes (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        });
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(point: &str, root: &str) -> Option<Cgroup2Mount> {
        Some(Cgroup2Mount {
            mount_point: point.into(),
            root: root.into(),
        })
    }

    #[test]
    fn finds_the_v2_hierarchy_in_every_layout() {
        let pure_v2 = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        let hybrid = "\
31 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
44 31 0:41 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
";
        let v1_only = "\
44 31 0:41 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
";
        // A container's own view (cgroup namespace) and a host mount bind-mounted in for it.
        let in_container = "\
700 690 0:30 /kubepods.slice/kubepods-pod1.slice /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw
701 690 0:30 / /host/sys\\040fs/cgroup ro,nosuid - cgroup2 cgroup rw
";
        assert_eq!(
            Cgroup2Mount::from_mountinfo(pure_v2),
            mount("/sys/fs/cgroup", "/")
        );
        assert_eq!(
            Cgroup2Mount::from_mountinfo(hybrid),
            mount("/sys/fs/cgroup/unified", "/")
        );
        assert_eq!(Cgroup2Mount::from_mountinfo(v1_only), None);
        assert_eq!(
            Cgroup2Mount::from_mountinfo(in_container),
            mount("/host/sys fs/cgroup", "/")
        );
        assert_eq!(
            Cgroup2Mount::from_mountinfo(in_container.lines().next().unwrap()),
            mount("/sys/fs/cgroup", "/kubepods.slice/kubepods-pod1.slice")
        );
    }

    #[test]
    fn finds_this_hosts_mount() {
        let mount = Cgroup2Mount::find()
            .unwrap()
            .expect("cgroup2 is mounted here");
        let magic = nix::sys::statfs::statfs(&mount.mount_point)
            .unwrap()
            .filesystem_type();
        assert_eq!(magic, nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    }

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(unescape(r"/a\040b\011c\134e"), "/a b\tc\\e");
        assert_eq!(unescape(r"\04"), r"\04");
    }
}
