//! One recorded call: what to pass, what the kernel should answer, and the per-thread [`Caller`]
//! that makes it, checks it, proves the fd works and records it.

use crate::manifest::{CallRecord, CallerIdentity, ManifestError, Syscall, KERNEL_SIGSET_SIZE};
use crate::mask;
use crate::proof::prove_delivery;
use crate::record::Recorder;
use crate::scenario::Scenario;
use crate::sys::{self, TimedResult};
use nix::errno::Errno;
use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// What the kernel should answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A new signalfd whose O_NONBLOCK/FD_CLOEXEC state matches the call's flags.
    Created,
    /// The updated fd itself, its O_NONBLOCK/FD_CLOEXEC state unchanged (`fd_flags`, in SFD_*
    /// terms, from its creation): the kernel ignores valid flags on an update.
    Updated {
        /// The SFD_* flags the fd was created with.
        fd_flags: i32,
    },
    /// This errno.
    Failed(Errno),
}

/// One call to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallSpec {
    /// Which syscall.
    pub syscall: Syscall,
    /// -1 to create, else the fd to update.
    pub ufd: RawFd,
    /// signalfd4 flags (must stay 0 for signalfd).
    pub flags: i32,
    /// The mask buffer's value, or `None` for an unreadable (null) mask pointer.
    pub mask: Option<u64>,
    /// The sizemask argument.
    pub sizemask: u64,
    /// The answer the kernel should give.
    pub expect: Expect,
}

impl CallSpec {
    /// Create a signalfd for `mask` (no flags, correct sizemask).
    pub fn create(syscall: Syscall, mask: u64) -> Self {
        Self {
            syscall,
            ufd: -1,
            flags: 0,
            mask: Some(mask),
            sizemask: KERNEL_SIGSET_SIZE,
            expect: Expect::Created,
        }
    }

    /// Update `fd` (created with SFD_* `fd_flags`) to watch `mask`.
    pub fn update(syscall: Syscall, fd: RawFd, fd_flags: i32, mask: u64) -> Self {
        Self {
            ufd: fd,
            expect: Expect::Updated { fd_flags },
            ..Self::create(syscall, mask)
        }
    }

    /// The same call with these signalfd4 flags.
    pub fn with_flags(self, flags: i32) -> Self {
        Self { flags, ..self }
    }

    /// The same call on another `ufd`.
    pub fn with_ufd(self, ufd: RawFd) -> Self {
        Self { ufd, ..self }
    }

    /// The same call with another sizemask argument.
    pub fn with_sizemask(self, sizemask: u64) -> Self {
        Self { sizemask, ..self }
    }

    /// The same call with a null mask pointer.
    pub fn with_unreadable_mask(self) -> Self {
        Self { mask: None, ..self }
    }

    /// The same call, expected to fail with `errno`.
    pub fn failing(self, errno: Errno) -> Self {
        Self {
            expect: Expect::Failed(errno),
            ..self
        }
    }
}

impl fmt::Display for CallSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(ufd={}, mask=", self.syscall, self.ufd)?;
        match self.mask {
            Some(m) => write!(f, "{m:#x}")?,
            None => f.write_str("NULL")?,
        }
        write!(f, ", sizemask={}", self.sizemask)?;
        if self.syscall == Syscall::Signalfd4 {
            write!(f, ", flags={:#x}", self.flags)?;
        }
        f.write_str(")")
    }
}

/// A call made and recorded.
#[derive(Debug)]
pub struct Called {
    /// The fd the call succeeded with, as the caller expected a success: the new fd for a create
    /// (now owned by the scenario), the same fd for an update (still owned by whoever had it).
    pub fd: Option<RawFd>,
    /// Whether the kernel answered as expected (and the fd proved to work).
    pub as_expected: bool,
}

impl Called {
    /// Takes ownership of a newly created fd so that dropping it closes it.
    pub fn into_owned_fd(self) -> Option<OwnedFd> {
        // SAFETY: for a create, the kernel just returned this fd and nothing else owns it.
        self.fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Makes calls for one scenario on the current thread and records them.
pub struct Caller<'r> {
    recorder: &'r Recorder,
    scenario: Scenario,
    caller: CallerIdentity,
}

impl CallerIdentity {
    /// The calling thread's identity (reads /proc: opens files).
    pub fn current() -> Self {
        Self {
            pid: std::process::id(),
            // As for the thread name below: an empty one only makes the judge report a mismatch.
            executable: sys::executable_name().unwrap_or_default(),
            cgroup_id: sys::cgroup_id(),
            cgroup_path: sys::cgroup_path(),
            ..Self::of_this_thread_in(0, String::new(), None, None)
        }
    }

    /// The identity of the calling thread, whose process is `self`'s: reads only what is per
    /// thread, through syscalls that open no file (so a probe on openat sees none from it).
    pub fn on_this_thread(&self) -> Self {
        Self::of_this_thread_in(
            self.pid,
            self.executable.clone(),
            self.cgroup_id,
            self.cgroup_path.clone(),
        )
    }

    fn of_this_thread_in(
        pid: u32,
        executable: String,
        cgroup_id: Option<u64>,
        cgroup_path: Option<String>,
    ) -> Self {
        Self {
            pid,
            tid: sys::gettid(),
            // Per thread: the kernel keeps credentials per task (see the `identity` scenario).
            uid: nix::unistd::getuid().as_raw(),
            euid: nix::unistd::geteuid().as_raw(),
            // PR_GET_NAME cannot fail for the calling thread; an empty name would only make the
            // judge report a mismatch.
            thread_name: sys::thread_name().unwrap_or_default(),
            executable,
            cgroup_id,
            cgroup_path,
        }
    }
}

impl<'r> Caller<'r> {
    /// A caller for the current thread (create it on the thread that will make the calls).
    pub fn new(recorder: &'r Recorder, scenario: Scenario) -> Self {
        Self {
            recorder,
            scenario,
            caller: CallerIdentity::current(),
        }
    }

    /// Makes the call, checks the answer (proving a returned fd delivers a signal from the mask),
    /// and records it. Unexpected answers are recorded as problems, not returned as errors;
    /// the error is only for a manifest that cannot be written.
    pub fn call(&self, spec: &CallSpec) -> Result<Called, ManifestError> {
        self.make(spec, sys::mask_ptr(spec.mask.as_ref()), false)
    }

    /// Like [`Caller::call`], but the kernel reads the mask from `mask_at`, which must hold
    /// `spec.mask` by the time the kernel reads it (a page that faults holds the call inside the
    /// kernel until it is supplied); the record is marked mid-flight.
    pub fn call_held(&self, spec: &CallSpec, mask_at: *const u64) -> Result<Called, ManifestError> {
        self.make(spec, mask_at, true)
    }

    fn make(
        &self,
        spec: &CallSpec,
        mask_at: *const u64,
        midflight: bool,
    ) -> Result<Called, ManifestError> {
        let seq = self.recorder.next_seq();
        let timed = sys::timed_call(spec.syscall, spec.ufd, mask_at, spec.sizemask, spec.flags);
        let mut record = self.record(seq, spec, &timed);
        record.midflight = midflight;
        let verdict = judge(spec, timed.result);
        let fd = match (spec.expect, timed.result) {
            (Expect::Failed(_), Ok(fd)) => {
                if fd != spec.ufd {
                    // SAFETY: an unexpected new fd from the kernel, owned by nobody else.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                }
                None
            }
            (_, result) => result.ok(),
        };
        let as_expected = verdict.is_ok();
        let problem = verdict.err().map(|why| format!("{spec}: {why}"));
        self.recorder.record(&record, self.scenario, problem)?;
        Ok(Called { fd, as_expected })
    }

    fn record(&self, seq: u64, spec: &CallSpec, timed: &TimedResult) -> CallRecord {
        let errno = timed.result.err();
        CallRecord {
            seq,
            scenario: self.scenario.name().to_string(),
            pid: self.caller.pid,
            tid: self.caller.tid,
            uid: self.caller.uid,
            euid: self.caller.euid,
            thread_name: self.caller.thread_name.clone(),
            executable: self.caller.executable.clone(),
            cgroup_id: self.caller.cgroup_id,
            cgroup_path: self.caller.cgroup_path.clone(),
            syscall: spec.syscall,
            ufd: spec.ufd,
            flags: spec.flags,
            mask: spec.mask.unwrap_or(0),
            sizemask: spec.sizemask,
            mask_readable: spec.mask.is_some(),
            fd: timed.result.ok(),
            errno: errno.map(|e| e as i32),
            errno_name: errno.map(|e| format!("{e:?}")),
            wall_before_ns: timed.wall_before_ns,
            wall_after_ns: timed.wall_after_ns,
            midflight: false,
        }
    }
}

/// Checks the kernel's answer against the expectation; for a success also checks the fd's
/// flags and that it delivers a signal from its mask.
fn judge(spec: &CallSpec, result: Result<RawFd, Errno>) -> Result<(), String> {
    let fd = match (spec.expect, result) {
        (Expect::Failed(want), Err(got)) if want == got => return Ok(()),
        (Expect::Failed(want), Err(got)) => return Err(format!("expected {want:?}, got {got:?}")),
        (Expect::Failed(want), Ok(fd)) => return Err(format!("expected {want:?}, got fd {fd}")),
        (_, Err(got)) => return Err(format!("expected success, got {got:?}")),
        (_, Ok(fd)) => fd,
    };
    let want_flags = match spec.expect {
        Expect::Updated { fd_flags } => {
            if fd != spec.ufd {
                return Err(format!("update returned fd {fd}, not the updated fd"));
            }
            fd_flags
        }
        _ => spec.flags,
    };
    let flags = sys::sfd_flags_of(fd).map_err(|e| format!("cannot read flags of fd {fd}: {e}"))?;
    if flags != want_flags {
        return Err(format!(
            "fd {fd} has SFD flags {flags:#x}, expected {want_flags:#x}"
        ));
    }
    match spec.mask.and_then(mask::proof_signal) {
        Some(signal) => prove_delivery(fd, signal).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::bit;

    #[test]
    fn spec_display_names_every_argument() {
        let spec = CallSpec::create(Syscall::Signalfd4, bit(10)).with_flags(0x1);
        assert_eq!(
            spec.to_string(),
            "signalfd4(ufd=-1, mask=0x200, sizemask=8, flags=0x1)"
        );
        let spec = CallSpec::create(Syscall::Signalfd, 0).with_unreadable_mask();
        assert_eq!(spec.to_string(), "signalfd(ufd=-1, mask=NULL, sizemask=8)");
    }

    #[test]
    fn judge_accepts_the_expected_errno_only() {
        let spec = CallSpec::create(Syscall::Signalfd4, 0)
            .with_ufd(-2)
            .failing(Errno::EBADF);
        assert_eq!(judge(&spec, Err(Errno::EBADF)), Ok(()));
        assert!(judge(&spec, Err(Errno::EINVAL)).is_err());
        assert!(judge(&spec, Ok(3)).is_err());
    }
}
