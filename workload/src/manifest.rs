//! The JSON-lines manifests: one [`CallRecord`] per signalfd/signalfd4 call the workload made,
//! and, in a manifest of their own, one [`declared::DeclaredCall`] per call of a syscall that
//! declared probes trace.
//!
//! Lines are written in the order calls finish (threads interleave); sort by `seq` for call order.

pub mod declared;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Size in bytes of the kernel's `sigset_t` on 64-bit Linux: the only `sizemask` the syscalls accept.
pub const KERNEL_SIGSET_SIZE: u64 = 8;

/// Which of the two syscalls a call used.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Syscall {
    /// `signalfd(ufd, mask, sizemask)`: the kernel passes flags 0 to `do_signalfd4`.
    Signalfd,
    /// `signalfd4(ufd, mask, sizemask, flags)`.
    Signalfd4,
}

impl Syscall {
    /// The syscall's name as the kernel spells it.
    pub fn name(self) -> &'static str {
        match self {
            Syscall::Signalfd => "signalfd",
            Syscall::Signalfd4 => "signalfd4",
        }
    }
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who made a call, as a probe sees the calling thread.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CallerIdentity {
    /// Process id of the workload.
    pub pid: u32,
    /// `gettid()` of the calling thread.
    pub tid: u32,
    /// Real uid of the calling thread.
    pub uid: u32,
    /// Effective uid of the calling thread.
    pub euid: u32,
    /// The calling thread's name (`comm`).
    pub thread_name: String,
    /// The basename of the process's executable, as `/proc/self/exe` names it.
    pub executable: String,
    /// cgroup v2 id of the caller (its cgroup directory's inode); `None` without cgroup2.
    pub cgroup_id: Option<u64>,
    /// cgroup v2 path of the caller (`/proc/self/cgroup`'s `0::` line); `None` without cgroup2.
    #[serde(default)]
    pub cgroup_path: Option<String>,
}

/// One signalfd/signalfd4 call exactly as the workload made it, and what the kernel answered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// Order of the call in this run (unique, taken just before the call).
    pub seq: u64,
    /// Name of the scenario that made the call.
    pub scenario: String,
    /// Process id of the workload.
    pub pid: u32,
    /// `gettid()` of the calling thread.
    pub tid: u32,
    /// Real uid of the calling thread.
    pub uid: u32,
    /// Effective uid of the calling thread (differs from `uid` in the `identity` scenario).
    pub euid: u32,
    /// The calling thread's name (`comm`).
    pub thread_name: String,
    /// The basename of the process's executable, as `/proc/self/exe` names it.
    pub executable: String,
    /// cgroup v2 id of the caller (its cgroup directory's inode); `None` without cgroup2.
    pub cgroup_id: Option<u64>,
    /// cgroup v2 path of the caller (`/proc/self/cgroup`'s `0::` line); `None` without cgroup2.
    #[serde(default)]
    pub cgroup_path: Option<String>,
    /// Which syscall was made.
    pub syscall: Syscall,
    /// The `ufd` argument: -1 creates a new signalfd, anything else updates that fd.
    pub ufd: i32,
    /// The `flags` argument (0 for `signalfd`, which has none).
    pub flags: i32,
    /// The 64-bit sigset in the buffer passed (bit n-1 = signal n); 0 when the pointer was invalid.
    pub mask: u64,
    /// The `sizemask` argument (8 normally).
    pub sizemask: u64,
    /// False when the mask pointer was deliberately unreadable (the EFAULT case).
    pub mask_readable: bool,
    /// The returned fd on success.
    pub fd: Option<i32>,
    /// The errno on failure.
    pub errno: Option<i32>,
    /// The errno's symbolic name on failure, e.g. "EINVAL".
    pub errno_name: Option<String>,
    /// CLOCK_REALTIME in unix ns, read just before the syscall.
    pub wall_before_ns: u64,
    /// CLOCK_REALTIME in unix ns, read just after the syscall.
    pub wall_after_ns: u64,
    /// Held inside the kernel across the run's gate (see `midflight`): an agent that became ready
    /// meanwhile attached while this call was already in flight, and sees only its return.
    #[serde(default)]
    pub midflight: bool,
}

impl CallRecord {
    /// Who made the call.
    pub fn caller(&self) -> CallerIdentity {
        CallerIdentity {
            pid: self.pid,
            tid: self.tid,
            uid: self.uid,
            euid: self.euid,
            thread_name: self.thread_name.clone(),
            executable: self.executable.clone(),
            cgroup_id: self.cgroup_id,
            cgroup_path: self.cgroup_path.clone(),
        }
    }

    /// Whether the kernel function do_signalfd4 runs for this call: the syscall rejects a wrong
    /// sizemask (EINVAL) and an unreadable mask (EFAULT) before calling it.
    pub fn reaches_kernel_function(&self) -> bool {
        self.sizemask == KERNEL_SIGSET_SIZE && self.mask_readable
    }
}

/// Failure to write or read a manifest; each names the file (and line, when reading).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be created.
    #[error("cannot create manifest {}: {source}", path.display())]
    Create {
        /// The manifest path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A record could not be written (or flushed) to the manifest.
    #[error("cannot write manifest {}: {source}", path.display())]
    Write {
        /// The manifest path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The manifest file could not be opened for reading.
    #[error("cannot open manifest {}: {source}", path.display())]
    Open {
        /// The manifest path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A line of the manifest could not be read.
    #[error("cannot read manifest {} line {line}: {source}", path.display())]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The OS error.
        source: io::Error,
    },
    /// A line of the manifest is not a JSON record of the expected kind.
    #[error("manifest {} line {line} is not a call record: {source}", path.display())]
    Parse {
        /// The manifest path.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What serde_json objected to.
        source: serde_json::Error,
    },
}

/// Appends records to a manifest file, one JSON object per line; shareable between threads.
#[derive(Debug)]
pub struct ManifestWriter {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl ManifestWriter {
    /// Creates (or truncates) the manifest at `path`.
    pub fn create(path: &Path) -> Result<Self, ManifestError> {
        let file = File::create(path).map_err(|source| ManifestError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    /// The manifest's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a line.
    pub fn append(&self, record: &impl Serialize) -> Result<(), ManifestError> {
        // Encoding a plain struct of numbers and strings cannot fail; do it outside the lock.
        let mut line = serde_json::to_vec(record).map_err(|e| self.write_error(e.into()))?;
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(&line).map_err(|e| self.write_error(e))
    }

    /// Flushes buffered lines to the file.
    pub fn flush(&self) -> Result<(), ManifestError> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.flush().map_err(|e| self.write_error(e))
    }

    fn write_error(&self, source: io::Error) -> ManifestError {
        ManifestError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

/// Reads every signalfd call record of a manifest (blank lines are skipped), in file order.
pub fn read_manifest(path: &Path) -> Result<Vec<CallRecord>, ManifestError> {
    read_records(path)
}

/// Reads every record of a manifest of `T`s (blank lines are skipped), in file order.
pub fn read_records<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, ManifestError> {
    let file = File::open(path).map_err(|source| ManifestError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut records = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line_no = index + 1;
        let line = line.map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            line: line_no,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| ManifestError::Parse {
            path: path.to_path_buf(),
            line: line_no,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempPath;

    fn record(seq: u64) -> CallRecord {
        CallRecord {
            seq,
            scenario: "errors".to_string(),
            pid: 10,
            tid: 11,
            uid: 0,
            euid: 0,
            executable: "signalfd-workload".into(),
            thread_name: "worker".to_string(),
            cgroup_id: Some(1),
            cgroup_path: Some("/".to_string()),
            syscall: Syscall::Signalfd4,
            ufd: -1,
            flags: 0x1,
            mask: 1 << 9,
            sizemask: 8,
            mask_readable: true,
            fd: None,
            errno: Some(22),
            errno_name: Some("EINVAL".to_string()),
            wall_before_ns: 1_700_000_000_000_000_000,
            wall_after_ns: 1_700_000_000_000_000_500,
            midflight: false,
        }
    }

    #[test]
    fn written_records_read_back_equal() {
        let path = TempPath::new("roundtrip");
        let writer = ManifestWriter::create(path.as_ref()).expect("create manifest");
        let mut second = record(1);
        second.syscall = Syscall::Signalfd;
        second.fd = Some(5);
        second.errno = None;
        second.errno_name = None;
        let written = vec![record(0), second];
        for r in &written {
            writer.append(r).expect("append");
        }
        writer.flush().expect("flush");
        assert_eq!(read_manifest(path.as_ref()).expect("read"), written);
    }

    #[test]
    fn records_without_the_midflight_field_read_as_ordinary_calls() {
        let mut json: serde_json::Value = serde_json::to_value(record(0)).expect("encode");
        json.as_object_mut().expect("object").remove("midflight");
        let read: CallRecord = serde_json::from_value(json).expect("decode");
        assert_eq!(read, record(0));
    }

    #[test]
    fn syscall_names_are_lowercase_in_json_and_display() {
        let json = serde_json::to_string(&record(0)).expect("encode");
        assert!(json.contains(r#""syscall":"signalfd4""#), "{json}");
        assert_eq!(Syscall::Signalfd.to_string(), "signalfd");
        assert_eq!(Syscall::Signalfd4.to_string(), "signalfd4");
    }

    #[test]
    fn parse_error_names_path_and_line() {
        let path = TempPath::new("bad-line");
        let good = serde_json::to_string(&record(0)).expect("encode");
        std::fs::write(path.as_ref(), format!("{good}\n\n{{not json\n")).expect("write");
        let err = read_manifest(path.as_ref()).expect_err("line 3 is broken");
        let message = err.to_string();
        assert!(
            message.contains(&path.as_ref().display().to_string()),
            "{message}"
        );
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn missing_manifest_names_path() {
        let path = TempPath::new("missing");
        let message = read_manifest(path.as_ref())
            .expect_err("absent")
            .to_string();
        assert!(message.contains("cannot open manifest"), "{message}");
    }

    #[test]
    fn only_valid_sizemask_and_readable_mask_reach_do_signalfd4() {
        let mut r = record(0);
        assert!(
            r.reaches_kernel_function(),
            "invalid flags are rejected inside do_signalfd4"
        );
        r.sizemask = 4;
        assert!(!r.reaches_kernel_function());
        r.sizemask = 8;
        r.mask_readable = false;
        assert!(!r.reaches_kernel_function());
    }
}
