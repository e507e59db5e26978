//! tracefs: making sure it is mounted, and checking the signalfd tracepoints' field offsets.

use std::path::{Path, PathBuf};

use kspan_common::tracepoint_offsets;
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
    /// A format file could not be read.
    #[error("cannot read {}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A field kspan needs is missing from a format file.
    #[error("field `{field}` is missing from {}", path.display())]
    MissingField {
        /// The field.
        field: &'static str,
        /// The format file.
        path: PathBuf,
    },
    /// A field is not where the probes read it.
    #[error("field `{field}` is at offset {found} in {}, but the probes read it at {expected}", path.display())]
    UnexpectedOffset {
        /// The field.
        field: &'static str,
        /// The format file.
        path: PathBuf,
        /// The compiled-in offset.
        expected: usize,
        /// The offset tracefs gives.
        found: usize,
    },
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

/// Checks that `syscalls:sys_{enter,exit}_signalfd{,4}` carry each field the tracepoint programs
/// read at the offset they read it, from the events' format files.
pub fn check_signalfd_offsets(root: &Path) -> Result<(), TracefsError> {
    use tracepoint_offsets::{FLAGS, RET, SIZEMASK, UFD, USER_MASK};
    const FIELDS: [(&str, &str, usize); 9] = [
        ("sys_enter_signalfd", "ufd", UFD),
        ("sys_enter_signalfd", "user_mask", USER_MASK),
        ("sys_enter_signalfd", "sizemask", SIZEMASK),
        ("sys_enter_signalfd4", "ufd", UFD),
        ("sys_enter_signalfd4", "user_mask", USER_MASK),
        ("sys_enter_signalfd4", "sizemask", SIZEMASK),
        ("sys_enter_signalfd4", "flags", FLAGS),
        ("sys_exit_signalfd", "ret", RET),
        ("sys_exit_signalfd4", "ret", RET),
    ];
    for (event, field, expected) in FIELDS {
        let path = root.join("events/syscalls").join(event).join("format");
        let format = std::fs::read_to_string(&path).map_err(|source| TracefsError::Unreadable {
            path: path.clone(),
            source,
        })?;
        match field_offset(&format, field) {
            None => return Err(TracefsError::MissingField { field, path }),
            Some(found) if found != expected => {
                return Err(TracefsError::UnexpectedOffset {
                    field,
                    path,
                    expected,
                    found,
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
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

/// The offset of `field` in a tracefs format file.
fn field_offset(format: &str, field: &str) -> Option<usize> {
    format_fields(format)
        .into_iter()
        .find(|found| found.name == field)
        .map(|found| found.offset)
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
    fn finds_fields_by_name() {
        assert_eq!(field_offset(ENTER4, "ufd"), Some(16));
        assert_eq!(field_offset(ENTER4, "user_mask"), Some(24));
        assert_eq!(field_offset(ENTER4, "sizemask"), Some(32));
        assert_eq!(field_offset(ENTER4, "flags"), Some(40));
        assert_eq!(field_offset(ENTER4, "mask"), None);
        assert_eq!(field_offset(ENTER4, "nr"), None);
    }

    #[test]
    fn checks_the_offsets_against_a_tracing_root() {
        let root = std::env::temp_dir().join(format!("kspan-tracefs-{}", std::process::id()));
        let write = |event: &str, text: &str| {
            let dir = root.join("events/syscalls").join(event);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("format"), text).unwrap();
        };
        let enter = ENTER4.replace("\tfield:int flags;\toffset:40;\tsize:8;\tsigned:0;\n", "");
        let exit = "format:\n\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n";
        write("sys_enter_signalfd", &enter);
        write("sys_enter_signalfd4", ENTER4);
        write("sys_exit_signalfd", exit);
        write("sys_exit_signalfd4", exit);
        check_signalfd_offsets(&root).unwrap();

        write(
            "sys_exit_signalfd4",
            "format:\n\tfield:long ret;\toffset:24;\n",
        );
        let error = check_signalfd_offsets(&root).unwrap_err();
        assert!(
            matches!(
                error,
                TracefsError::UnexpectedOffset {
                    field: "ret",
                    expected: 16,
                    found: 24,
                    ..
                }
            ),
            "{error}"
        );
        write("sys_exit_signalfd4", "format:\n");
        assert!(matches!(
            check_signalfd_offsets(&root),
            Err(TracefsError::MissingField { field: "ret", .. })
        ));
        std::fs::remove_dir_all(&root).unwrap();
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

    #[test]
    fn missing_format_names_the_file() {
        let error = check_signalfd_offsets(Path::new("/nonexistent")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("/nonexistent/events/syscalls/sys_enter_signalfd/format"),
            "{error}"
        );
    }
}
