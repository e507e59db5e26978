//! The one definition of what crosses the kernel/user boundary: the probe vocabulary, the
//! paired call events, the loss counters and the tracepoint field offsets. `no_std` so the probes can use it.
#![no_std]

// clap's derive refers to `std`; only user space turns `cli` on.
#[cfg(feature = "cli")]
extern crate std;

use num_enum::TryFromPrimitive;

pub mod declared;
mod probe;

pub use probe::{programs, AttachMode, ProbeKind};

/// Maximum length of a task's `comm`, including the trailing NUL (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Bytes of the executable's name an event carries: the most a dentry keeps inline
/// (`DNAME_INLINE_LEN`: 40 on 64-bit kernels since 6.14, 32 before), NUL included. Longer names
/// live outside the dentry, where only a helper call could read them: those are not sent.
pub const EXE_NAME_LEN: usize = 40;

/// Name of the ring buffer map that carries complete calls ([`declared::DeclaredEvent`]s).
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the hash map of process ids (tgid) to capture, when the pid filter is on.
pub const PID_FILTER_MAP: &str = "PID_FILTER";
/// Name of the hash map of `comm` values to capture, when the comm filter is on.
pub const COMM_FILTER_MAP: &str = "COMM_FILTER";
/// Most distinct values each of [`PID_FILTER_MAP`] and [`COMM_FILTER_MAP`] holds.
pub const FILTER_CAPACITY: u32 = 1024;
/// Name of the cgroup array of cgroups whose tasks (and their descendants') to capture, when the
/// cgroup filter is on.
pub const CGROUP_FILTER_MAP: &str = "CGROUP_FILTER";
/// Most cgroups [`CGROUP_FILTER_MAP`] holds: the probes test the caller against each slot in
/// use, one helper call each, so it stays small.
pub const CGROUP_FILTER_CAPACITY: u32 = 64;
/// Name of the array of run-time switches the agent sets while the probes run.
pub const CONTROL_MAP: &str = "CONTROL";
/// Slot of [`CONTROL_MAP`]: non-zero once the agent is stopping (no new entries are recorded).
pub const CONTROL_STOPPING: u32 = 0;
/// Number of slots in [`CONTROL_MAP`].
pub const CONTROL_SLOTS: u32 = 1;
/// Name of the global that holds the [`ProbeConfig`].
pub const CONFIG_GLOBAL: &str = "CONFIG";

/// The syscall that led into `do_signalfd4`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, TryFromPrimitive)]
pub enum Syscall {
    /// The probe could not tell (not a signalfd syscall, or not x86_64).
    Unknown = 0,
    /// `signalfd(ufd, mask, sizemask)`: no flags.
    Signalfd = 1,
    /// `signalfd4(ufd, mask, sizemask, flags)`.
    Signalfd4 = 2,
}

/// Where the signal mask in an event was read from.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, TryFromPrimitive)]
pub enum MaskSource {
    /// The kernel's own copy, the value `do_signalfd4` uses.
    Kernel = 1,
    /// The caller's buffer in user memory, read at syscall entry.
    User = 2,
    /// Not read: `sizemask` was not `sizeof(sigset_t)`, so the kernel never reads it either.
    NotRead = 3,
    /// The user pointer could not be read (the kernel fails the call with EFAULT).
    Unreadable = 4,
}

/// Byte offsets of the kernel fields the probes load the caller's identity from, read by the
/// agent from the running kernel's BTF (`/sys/kernel/btf/vmlinux`). Plain loads through the
/// current task cost nothing next to the helper calls they replace (pid/tgid, comm, uid,
/// cgroup id: ~0.1 µs each where returns are mitigated against SRSO).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskLayout {
    /// `task_struct.pid` (the thread id).
    pub task_pid: u32,
    /// `task_struct.tgid` (the process id).
    pub task_tgid: u32,
    /// `task_struct.comm`.
    pub task_comm: u32,
    /// `task_struct.cred` (the subjective credentials, as `bpf_get_current_uid_gid` reads).
    pub task_cred: u32,
    /// `cred.uid` (the real uid).
    pub cred_uid: u32,
    /// `cred.euid` (the effective uid).
    pub cred_euid: u32,
    /// `task_struct.cgroups`.
    pub task_cgroups: u32,
    /// `css_set.dfl_cgrp` (the cgroup v2 cgroup).
    pub css_set_dfl_cgrp: u32,
    /// `cgroup.kn`.
    pub cgroup_kn: u32,
    /// `kernfs_node.id` (the cgroup id).
    pub kernfs_node_id: u32,
    /// `task_struct.mm`.
    pub task_mm: u32,
    /// `mm_struct.exe_file`.
    pub mm_exe_file: u32,
    /// `file.f_path.dentry`.
    pub file_dentry: u32,
    /// `dentry.d_name.len`.
    pub dentry_name_len: u32,
    /// `dentry.d_shortname` (`d_iname` before 6.14): the name, when it is short enough.
    pub dentry_inline_name: u32,
    /// Its size (`DNAME_INLINE_LEN`): names shorter than this are kept there; at most
    /// [`EXE_NAME_LEN`].
    pub dentry_inline_name_size: u32,
}

/// Kernel-side counters, one slot each per probe in the per-CPU
/// [`declared::DECLARED_COUNTERS_MAP`] array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A complete event was dropped because the ring buffer was full.
    RingBufferFull = 0,
    /// An entry was overwritten by a newer entry on the same thread: its return never came.
    StaleEntry = 1,
    /// A return arrived with no entry recorded for its thread (e.g. attached mid-call).
    ReturnWithoutEntry = 2,
    /// An entry could not be stored: the kernel could not allocate the thread's pending-call
    /// storage, or refused it to avoid recursion.
    EntryNotStored = 3,
    /// Entries stored (with the returns read, the stale entries and the ring-buffer losses, this
    /// tells how many calls were still inside the kernel).
    Entries = 4,
}

impl Counter {
    /// Every counter, in slot order.
    pub const ALL: [Counter; 5] = [
        Counter::RingBufferFull,
        Counter::StaleEntry,
        Counter::ReturnWithoutEntry,
        Counter::EntryNotStored,
        Counter::Entries,
    ];
    /// Number of slots in the counters array.
    pub const SLOTS: u32 = Counter::ALL.len() as u32;
}

/// Byte offsets of the fields the tracepoint programs read: the records of every syscall
/// tracepoint (`struct syscall_trace_enter` and `_exit`) hold an 8-byte header, the syscall number
/// padded to 8 bytes, then the arguments or the result, 8 bytes each. The programs read them as
/// constants (the verifier only allows fixed context offsets); the agent checks them against the
/// tracefs `format` files before it attaches.
pub mod tracepoint_offsets {
    /// `__syscall_nr` (an `int`) in every syscall tracepoint's record.
    pub const SYSCALL_NR: usize = 8;
    /// The first argument in every `sys_enter_*` record (then 8 bytes each), and `ret` in every
    /// `sys_exit_*` record.
    pub const ARGS: usize = 16;
}

/// Settings the agent writes into the probes before loading them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Non-zero: only tgids present in [`PID_FILTER_MAP`] are captured.
    pub filter_pid: u8,
    /// Non-zero: only `comm` values present in [`COMM_FILTER_MAP`] are captured.
    pub filter_comm: u8,
    /// Non-zero: only tasks under a cgroup in [`CGROUP_FILTER_MAP`] are captured (none when it
    /// holds none: the cgroups asked for did not exist at start).
    pub filter_cgroup: u8,
    /// Slots in use in [`CGROUP_FILTER_MAP`], from slot 0.
    pub cgroup_slots: u8,
    /// Where the caller's identity lives in this kernel's structures.
    pub task: TaskLayout,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: a `repr(C)` struct of plain integers with no padding holes: any bit pattern is a
    // valid value.
    unsafe impl aya::Pod for super::ProbeConfig {}
}

// Both sides read it as raw bytes: no implicit padding.
const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 68);

#[cfg(test)]
mod tests {
    use super::*;

    /// The variant declared for `raw` in `table`, if any.
    fn declared<T: Copy>(table: &[(u8, T)], raw: u8) -> Option<T> {
        table
            .iter()
            .find(|(value, _)| *value == raw)
            .map(|&(_, variant)| variant)
    }

    #[test]
    fn each_byte_converts_to_the_variant_that_declares_it_or_to_nothing() {
        let syscalls = [
            (0, Syscall::Unknown),
            (1, Syscall::Signalfd),
            (2, Syscall::Signalfd4),
        ];
        let probes = [
            (1, ProbeKind::Kprobe),
            (2, ProbeKind::Fentry),
            (3, ProbeKind::Tracepoint),
        ];
        let sources = [
            (1, MaskSource::Kernel),
            (2, MaskSource::User),
            (3, MaskSource::NotRead),
            (4, MaskSource::Unreadable),
        ];
        for raw in 0..=u8::MAX {
            let syscall = Syscall::try_from(raw).ok();
            assert_eq!(syscall, declared(&syscalls, raw), "syscall {raw}");
            let probe = ProbeKind::try_from(raw).ok();
            assert_eq!(probe, declared(&probes, raw), "probe {raw}");
            let source = MaskSource::try_from(raw).ok();
            assert_eq!(source, declared(&sources, raw), "mask source {raw}");
        }
    }
}
