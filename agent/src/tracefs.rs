//! tracefs: making sure it is mounted, and checking the signalfd tracepoints' field offsets.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

/// Where tracefs normally lives.
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// The older place, under debugfs.
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Why the tracepoints cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    /// Not mounted, and mounting it failed.
    #[error("tracefs is not mounted at {TRACEFS} and mounting it failed ({0}; mounting needs CAP_SYS_ADMIN): run `mount -t tracefs nodev {TRACEFS}` as root")]
    NotMounted(nix::Error),
    /// Mounted, but closed to kspan (tracefs is root-only).
    #[error("cannot open {}: permission denied (tracefs is root-only): run kspan as root or grant it CAP_DAC_READ_SEARCH", .0.display())]
    Denied(PathBuf),
}

/// The tracing root, mounting tracefs at [`TRACEFS`] if no tracing root is available.
pub fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    for root in [TRACEFS, DEBUGFS_TRACING] {
        let events = Path::new(root).join("events");
        match std::fs::metadata(&events) {
            Ok(meta) if meta.is_dir() => return Ok(PathBuf::from(root)),
            // Mounting over a tracefs kspan may not read would not help: say so instead.
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(TracefsError::Denied(events))
            }
            _ => {}
        }
    }
    mount(
        Some("nodev"),
        TRACEFS,
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(TracefsError::NotMounted)?;
    tracing::info!(path = TRACEFS, "mounted tracefs");
    Ok(PathBuf::from(TRACEFS))
}

/// Whether kspan's user may read the mounted tracefs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Readable, or not mounted at all (then mounting it is the question, not reading it).
    Open,
    /// Mounted, but its files are closed to the user kspan runs as, capabilities aside.
    Denied,
}

/// Whether the user kspan runs as may read the first tracepoint format file kspan reads.
/// `access(2)` answers for the real user without its capabilities: the question is whether
/// CAP_DAC_READ_SEARCH is needed, not whether it is held.
pub fn access() -> Access {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mounted = tracefs_mount_points(&mounts);
    let Some(root) = [TRACEFS, DEBUGFS_TRACING]
        .into_iter()
        .find(|root| mounted.contains(root))
    else {
        return Access::Open;
    };
    let format = Path::new(root).join("events/syscalls/sys_enter_signalfd/format");
    match nix::unistd::access(&format, nix::unistd::AccessFlags::R_OK) {
        Err(nix::errno::Errno::EACCES) => Access::Denied,
        _ => Access::Open,
    }
}

/// Where tracefs is mounted, from `/proc/self/mounts` lines (`nodev /sys/kernel/tracing tracefs rw 0 0`).
fn tracefs_mount_points(mounts: &str) -> Vec<&str> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let point = fields.nth(1)?;
            (fields.next()? == "tracefs").then_some(point)
        })
        .collect()
}

/// One field of a tracefs format file (`field:const char * filename;\toffset:24;\tsize:8;\tsigned:0;`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatField {
    /// Its C type as declared (`const char *`, `int`, `umode_t`).
    pub c_type: String,
    /// Its name.
    pub name: String,
    /// Its byte offset in the record.
    pub offset: usize,
    /// Whether the format says it is signed.
    pub signed: bool,
}

/// The fields of a tracefs format file, in order.
pub fn format_fields(format: &str) -> Vec<FormatField> {
    format
        .lines()
        .filter_map(|line| {
            let mut parts = line
                .trim()
                .strip_prefix("field:")?
                .split(';')
                .map(str::trim);
            let declaration = parts.next()?;
            let (c_type, name) = declaration.split_at(declaration.rfind([' ', '*'])? + 1);
            let mut value = |key: &str| -> Option<usize> {
                parts.find_map(|part| part.strip_prefix(key)?.parse().ok())
            };
            Some(FormatField {
                c_type: c_type.trim().to_owned(),
                name: name.trim().to_owned(),
                offset: value("offset:")?,
                // Older kernels' formats may lack it; the offset is what kspan needs.
                signed: value("signed:") == Some(1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTER4: &str = "name: sys_enter_signalfd4
ID: 1200
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int ufd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:sigset_t * user_mask;\toffset:24;\tsize:8;\tsigned:0;
\tfield:size_t sizemask;\toffset:32;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:40;\tsize:8;\tsigned:0;
";

    #[test]
    fn reads_each_field_s_type_name_offset_and_sign() {
        let fields: Vec<(String, String, usize)> = format_fields(ENTER4)
            .into_iter()
            .map(|field| (field.c_type, field.name, field.offset))
            .collect();
        let expected = [
            ("unsigned short", "common_type", 0),
            ("int", "__syscall_nr", 8),
            ("int", "ufd", 16),
            ("sigset_t *", "user_mask", 24),
            ("size_t", "sizemask", 32),
            ("int", "flags", 40),
        ];
        let expected: Vec<(String, String, usize)> = expected
            .into_iter()
            .map(|(c_type, name, offset)| (c_type.into(), name.into(), offset))
            .collect();
        assert_eq!(fields, expected);
        assert!(format_fields(ENTER4)[1].signed);
    }

    #[test]
    fn finds_tracefs_mount_points() {
        let mounts = "sysfs /sys sysfs rw,nosuid 0 0\n\
                      nodev /sys/kernel/tracing tracefs rw,relatime 0 0\n\
                      debugfs /sys/kernel/debug debugfs rw 0 0\n\
                      tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n";
        assert_eq!(
            tracefs_mount_points(mounts),
            ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        );
        assert!(tracefs_mount_points("").is_empty());
    }
}
