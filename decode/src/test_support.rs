//! Calls for other crates' tests (feature `test-support`) and this crate's own.

use std::time::{Duration, SystemTime};

use kspan_common::{MaskSource, ProbeKind, Syscall};

use crate::{Call, SignalMask};

/// A successful `signalfd4` create.
pub fn sample_call() -> Call {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    Call {
        syscall: Syscall::Signalfd4,
        probe: ProbeKind::Tracepoint,
        mask_source: MaskSource::User,
        pid: 100,
        tid: 101,
        uid: 0,
        euid: 0,
        cgroup_id: 7,
        cgroup: None,
        process_name: "app".into(),
        process_details: None,
        thread_name: "worker".into(),
        ufd: -1,
        flags: libc::SFD_CLOEXEC,
        mask: SignalMask(1 << (libc::SIGINT - 1) | 1 << (libc::SIGUSR1 - 1)),
        ret: 5,
        start,
        end: start + Duration::from_micros(3),
    }
}
