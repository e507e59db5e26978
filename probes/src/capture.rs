//! Pairing of entries with returns, filters and loss counters, shared by every probe pair.

use core::intrinsics::AtomicOrdering;

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_probe_read_user,
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use kspan_common::{
    CallEvent, Counter, MaskSource, ProbeConfig, ProbeKind, Syscall, COMM_LEN, CONTROL_SLOTS,
    CONTROL_STOPPING,
};

/// Complete calls for user space. The agent may resize it at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Entries waiting for their return, keyed by thread id.
#[map]
static IN_FLIGHT: HashMap<u32, CallEvent> = HashMap::with_max_entries(16_384, 0);

/// Loss counters, one slot per [`Counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::SLOTS, 0);

/// Process ids to capture when `CONFIG.filter_pid` is set.
#[map]
static PID_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);

/// Run-time switches from the agent; slot [`CONTROL_STOPPING`] set: the agent is detaching.
#[map]
static CONTROL: Array<u32> = Array::with_max_entries(CONTROL_SLOTS, 0);

/// `comm` values to capture when `CONFIG.filter_comm` is set.
#[map]
static COMM_FILTER: HashMap<[u8; COMM_LEN], u8> = HashMap::with_max_entries(1024, 0);

/// Written by the agent before loading (read-only data: the verifier sees constants).
#[no_mangle]
static CONFIG: ProbeConfig = ProbeConfig {
    filter_pid: 0,
    filter_comm: 0,
    _pad: [0; 2],
};

/// `-EEXIST` from a map insert with `BPF_NOEXIST`.
const EEXIST: i32 = -17;

/// x86_64 syscall numbers (`orig_ax` in the task's user registers).
const NR_SIGNALFD: u64 = 282;
const NR_SIGNALFD4: u64 = 289;

/// The agent's settings, read so the compiler cannot fold them to their load-time defaults.
fn config() -> ProbeConfig {
    // SAFETY: CONFIG is a plain static; a volatile read just stops constant folding.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// What an entry probe knows about a call.
pub struct EntryArgs {
    pub probe: ProbeKind,
    pub syscall: Syscall,
    pub ufd: i32,
    pub flags: i32,
    pub mask: u64,
    pub mask_source: MaskSource,
}

/// Reads the mask from the kernel's copy, the value `do_signalfd4` acts on.
pub fn kernel_mask(mask: *const u64) -> (u64, MaskSource) {
    // SAFETY: bpf_probe_read_kernel validates the address and fails instead of faulting.
    match unsafe { bpf_probe_read_kernel(mask) } {
        Ok(mask) => (mask, MaskSource::Kernel),
        Err(_) => (0, MaskSource::Unreadable),
    }
}

/// Reads the mask from the caller's buffer, as the syscall is about to.
pub fn user_mask(mask: *const u64) -> (u64, MaskSource) {
    // SAFETY: bpf_probe_read_user validates the address and fails instead of faulting.
    match unsafe { bpf_probe_read_user(mask) } {
        Ok(mask) => (mask, MaskSource::User),
        Err(_) => (0, MaskSource::Unreadable),
    }
}

/// Which syscall the current task is in, from the syscall number in its saved user registers.
#[cfg(bpf_target_arch = "x86_64")]
pub fn current_syscall() -> Syscall {
    use aya_ebpf::{
        bindings::pt_regs,
        helpers::{bpf_get_current_task_btf, bpf_task_pt_regs},
    };
    // SAFETY: both helpers return kernel pointers for the current task; the field read goes
    // through bpf_probe_read_kernel, which fails instead of faulting.
    let nr = unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const pt_regs;
        bpf_probe_read_kernel(&(*regs).orig_rax)
    };
    match nr {
        Ok(NR_SIGNALFD) => Syscall::Signalfd,
        Ok(NR_SIGNALFD4) => Syscall::Signalfd4,
        _ => Syscall::Unknown,
    }
}

/// Other architectures: the syscall is not decoded yet.
#[cfg(not(bpf_target_arch = "x86_64"))]
pub fn current_syscall() -> Syscall {
    Syscall::Unknown
}

/// Records a call's entry for the current thread, if the filters select it.
pub fn record_entry(args: EntryArgs) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    // Once the agent is stopping, no new call starts for any syscall at the same instant, so
    // each thread's captured calls end cleanly; calls already inside still complete.
    if stopping() || !selected(pid, &comm) {
        return;
    }
    // SAFETY: plain helper calls with no arguments.
    let (start_boot_ns, cgroup_id) =
        unsafe { (bpf_ktime_get_boot_ns(), bpf_get_current_cgroup_id()) };
    let event = CallEvent {
        start_boot_ns,
        end_boot_ns: 0,
        mask: args.mask,
        cgroup_id,
        pid,
        tid,
        uid: bpf_get_current_uid_gid() as u32,
        ufd: args.ufd,
        flags: args.flags,
        ret: 0,
        syscall: args.syscall as u8,
        probe: args.probe as u8,
        mask_source: args.mask_source as u8,
        _pad: [0; 5],
        comm,
    };
    // Every helper call costs the traced call (~0.1 µs each where returns are mitigated
    // against SRSO): the common case takes one insert, a stale entry a second.
    let inserted = match IN_FLIGHT.insert(tid, event, BPF_NOEXIST as u64) {
        Err(EEXIST) => {
            // A thread is in one call at a time: an older entry lost its return.
            count(Counter::StaleEntry);
            IN_FLIGHT.insert(tid, event, BPF_ANY as u64)
        }
        other => other,
    };
    if inserted.is_err() {
        count(Counter::InFlightMapFull);
    }
}

/// Completes the current thread's call with its result and sends it to user space.
pub fn record_return(ret: i32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(pending) = IN_FLIGHT.get_ptr_mut(tid) else {
        let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
        // While stopping, entries are skipped on purpose: their returns are expected alone.
        if !stopping() && selected((pid_tgid >> 32) as u32, &comm) {
            count(Counter::ReturnWithoutEntry);
        }
        return;
    };
    // SAFETY: `pending` points at this thread's map value; only this thread touches it.
    unsafe {
        (*pending).end_boot_ns = bpf_ktime_get_boot_ns();
        (*pending).ret = ret;
        // Never wake the reader: a wakeup costs the traced call more than the rest of the
        // probe, and the reader drains on a timer paced to the buffer (see the agent's reader).
        if EVENTS
            .output::<CallEvent>(&*pending, BPF_RB_NO_WAKEUP as u64)
            .is_err()
        {
            count(Counter::RingBufferFull);
        }
    }
    let _ = IN_FLIGHT.remove(tid);
}

fn stopping() -> bool {
    CONTROL.get(CONTROL_STOPPING).is_some_and(|flag| *flag != 0)
}

fn selected(pid: u32, comm: &[u8; COMM_LEN]) -> bool {
    let config = config();
    // SAFETY: lookups only; the values are never dereferenced.
    unsafe {
        (config.filter_pid == 0 || PID_FILTER.get(pid).is_some())
            && (config.filter_comm == 0 || COMM_FILTER.get(comm).is_some())
    }
}

fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the slot is a live, aligned u64 map value; atomic because two programs can
        // interleave on one CPU when a syscall tracepoint program is preempted.
        unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, 1) };
    }
}
