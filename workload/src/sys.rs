//! Raw syscalls: the exact signalfd/signalfd4 calls (no libc wrapper, which always picks
//! signalfd4) and openat calls, the wall clock that brackets them, and small fd queries.

use crate::manifest::Syscall;
use nix::errno::Errno;
use std::os::fd::RawFd;

/// A syscall's result with CLOCK_REALTIME read immediately around the syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedResult {
    /// The fd returned, or the errno.
    pub result: Result<RawFd, Errno>,
    /// Unix ns just before the syscall.
    pub wall_before_ns: u64,
    /// Unix ns just after the syscall.
    pub wall_after_ns: u64,
}

/// CLOCK_REALTIME as unix nanoseconds (a vDSO read on Linux, not a syscall).
#[inline(always)]
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists, so the call
    // cannot fail and leaves errno alone.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// The mask pointer to pass: a real 8-byte buffer, or null (unreadable: the EFAULT case).
pub fn mask_ptr(mask: Option<&u64>) -> *const u64 {
    mask.map_or(std::ptr::null(), |m| m as *const u64)
}

/// `signalfd4(ufd, mask, sizemask, flags)` as a raw syscall; returns the raw return value.
#[inline(always)]
pub fn raw_signalfd4(ufd: RawFd, mask: Option<&u64>, sizemask: u64, flags: i32) -> libc::c_long {
    signalfd4_at(ufd, mask_ptr(mask), sizemask, flags)
}

/// `signalfd4` with the mask read from `mask`, an address the kernel checks (a bad one is EFAULT).
#[inline(always)]
fn signalfd4_at(ufd: RawFd, mask: *const u64, sizemask: u64, flags: i32) -> libc::c_long {
    // SAFETY: only the kernel reads through the pointer, with copy_from_user: an address it
    // cannot read is reported as EFAULT. It rejects any sizemask but 8 before reading, then
    // reads exactly those 8 bytes.
    unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            ufd as libc::c_long,
            mask,
            sizemask as libc::c_long,
            flags as libc::c_long,
        )
    }
}

/// `signalfd` with the mask read from `mask`, an address the kernel checks (a bad one is EFAULT).
#[inline(always)]
fn signalfd_at(ufd: RawFd, mask: *const u64, sizemask: u64) -> libc::c_long {
    // SAFETY: as for `signalfd4_at`: only the kernel reads through the pointer, and it reports
    // an address it cannot read as EFAULT.
    unsafe {
        libc::syscall(
            libc::SYS_signalfd,
            ufd as libc::c_long,
            mask,
            sizemask as libc::c_long,
        )
    }
}

/// Makes one call with the mask read from `mask` (see [`mask_ptr`]), reading the wall clock
/// immediately before and after it and nothing else in between, so that the kernel's view of
/// the call falls inside the two readings.
pub fn timed_call(
    syscall: Syscall,
    ufd: RawFd,
    mask: *const u64,
    sizemask: u64,
    flags: i32,
) -> TimedResult {
    let (wall_before_ns, ret, wall_after_ns) = match syscall {
        Syscall::Signalfd4 => {
            let before = realtime_ns();
            let ret = signalfd4_at(ufd, mask, sizemask, flags);
            (before, ret, realtime_ns())
        }
        Syscall::Signalfd => {
            let before = realtime_ns();
            let ret = signalfd_at(ufd, mask, sizemask);
            (before, ret, realtime_ns())
        }
    };
    timed_result(wall_before_ns, ret, wall_after_ns)
}

/// `openat(dfd, filename, flags, mode)` as one raw syscall between two wall-clock readings, as
/// [`timed_call`] makes signalfd calls; `filename` may be an address the kernel cannot read.
pub fn timed_openat(
    dfd: RawFd,
    filename: *const libc::c_char,
    flags: i32,
    mode: u32,
) -> TimedResult {
    let wall_before_ns = realtime_ns();
    // SAFETY: only the kernel reads through `filename`, with strncpy_from_user: an address it
    // cannot read is reported as EFAULT. The fd the call may return is the caller's to close.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat,
            dfd as libc::c_long,
            filename,
            flags as libc::c_long,
            mode as libc::c_long,
        )
    };
    timed_result(wall_before_ns, ret, realtime_ns())
}

/// `openat2(dfd, filename, &how, sizeof how)` as [`timed_openat`] makes openat.
pub fn timed_openat2(
    dfd: RawFd,
    filename: *const libc::c_char,
    flags: i32,
    mode: u32,
) -> TimedResult {
    // SAFETY: `open_how` is plain integers; all zero is its default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = u64::from(mode);
    let wall_before_ns = realtime_ns();
    // SAFETY: as in `timed_openat`; `how` is a live local of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dfd as libc::c_long,
            filename,
            std::ptr::addr_of!(how),
            size_of::<libc::open_how>(),
        )
    };
    timed_result(wall_before_ns, ret, realtime_ns())
}

fn timed_result(wall_before_ns: u64, ret: libc::c_long, wall_after_ns: u64) -> TimedResult {
    // errno survives the clock read: clock_gettime only sets it on failure, which cannot happen.
    let result = if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret as RawFd)
    };
    TimedResult {
        result,
        wall_before_ns,
        wall_after_ns,
    }
}

/// The calling thread's name (`comm`), as probes see it. Through prctl, not
/// /proc/thread-self/comm: reading it opens no file, so no openat of the thread's own.
pub fn thread_name() -> Result<String, Errno> {
    let mut comm = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes (the name and its NUL) to the buffer given.
    Errno::result(unsafe { libc::prctl(libc::PR_GET_NAME, comm.as_mut_ptr()) })?;
    let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    Ok(String::from_utf8_lossy(&comm[..len]).into_owned())
}

/// The calling process's cgroup v2 path, as `/proc/self/cgroup` shows it (its `0::` line);
/// `None` on a host without cgroup v2.
pub fn cgroup_path() -> Option<String> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups.lines().find_map(|line| line.strip_prefix("0::"))?;
    Some(path.to_string())
}

/// Where the whole cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on a pure v2 host,
/// `/sys/fs/cgroup/unified` in systemd's hybrid layout), from `/proc/self/mountinfo`.
pub fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (mount, filesystem) = line.split_once(" - ")?;
        let mut fields = mount.split(' ').skip(3);
        let (root, mount_point) = (fields.next()?, fields.next()?);
        (filesystem.starts_with("cgroup2 ") && root == "/").then(|| mount_point.into())
    })
}

/// The cgroup v2 id of the calling process, as `bpf_get_current_cgroup_id` reports it: the inode
/// of its cgroup's directory. `None` without a cgroup2 mount of the whole hierarchy.
pub fn cgroup_id() -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = cgroup2_mount()?.join(cgroup_path()?.trim_start_matches('/'));
    std::fs::metadata(dir).ok().map(|meta| meta.ino())
}

/// The calling thread's kernel thread id.
/// The basename of this process's executable, as `/proc/self/exe` names it.
pub fn executable_name() -> std::io::Result<String> {
    let path = std::fs::read_link("/proc/self/exe")?;
    Ok(path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default())
}

/// Sets the calling thread's effective uid, leaving its real and saved uids as they are. The
/// raw syscall changes this thread only (glibc's `setresuid` changes every thread of the process).
pub fn set_thread_euid(euid: u32) -> Result<(), Errno> {
    // SAFETY: setresuid takes three integers; -1 (as uid_t) leaves an id unchanged.
    let ret = unsafe { libc::syscall(libc::SYS_setresuid, u32::MAX, euid, u32::MAX) };
    Errno::result(ret).map(drop)
}

pub fn gettid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

/// The fd's open-file state in SFD_* terms: SFD_NONBLOCK if O_NONBLOCK is set, SFD_CLOEXEC if
/// FD_CLOEXEC is set.
pub fn sfd_flags_of(fd: RawFd) -> Result<i32, Errno> {
    // SAFETY: F_GETFL takes no pointer argument; an invalid fd is reported as EBADF.
    let status = Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: F_GETFD takes no pointer argument; an invalid fd is reported as EBADF.
    let fd_flags = Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let mut flags = 0;
    if status & libc::O_NONBLOCK != 0 {
        flags |= libc::SFD_NONBLOCK;
    }
    if fd_flags & libc::FD_CLOEXEC != 0 {
        flags |= libc::SFD_CLOEXEC;
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn timed_call_brackets_and_reports_errno() {
        let timed = timed_call(Syscall::Signalfd4, -1, &0, 8, 0x1);
        assert_eq!(timed.result, Err(Errno::EINVAL));
        assert!(timed.wall_before_ns <= timed.wall_after_ns);
        assert!(timed.wall_before_ns > 1_600_000_000_000_000_000);
    }

    #[test]
    fn fd_flags_reflect_cloexec_and_nonblock() {
        let (reader, _writer) = std::io::pipe().expect("pipe");
        // std opens pipes close-on-exec and blocking.
        assert_eq!(sfd_flags_of(reader.as_raw_fd()), Ok(libc::SFD_CLOEXEC));
        assert_eq!(sfd_flags_of(i32::MAX), Err(Errno::EBADF));
    }
}
