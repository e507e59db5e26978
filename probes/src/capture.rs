//! What every probe shares: the ring buffer, filters, the agent's settings, and the caller's
//! identity.
//!
//! Every helper call costs the traced call ~0.1 µs where the kernel mitigates returns against
//! SRSO, more than the rest of a probe, so the caller's identity is loaded straight from its
//! `task_struct` at offsets the agent read from the kernel's BTF, not asked of helpers.

use aya_ebpf::{
    bindings::{
        bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE, task_struct, BPF_F_NO_PREALLOC,
        BPF_LOCAL_STORAGE_GET_F_CREATE,
    },
    helpers::{bpf_get_current_task_btf, bpf_task_storage_get},
    macros::map,
    maps::{Array, CgroupArray, HashMap, RingBuf},
};
use kspan_common::{
    ProbeConfig, TaskLayout, CGROUP_FILTER_CAPACITY, COMM_LEN, CONTROL_SLOTS, CONTROL_STOPPING,
    EXE_NAME_LEN, FILTER_CAPACITY,
};

/// Complete calls for user space. The agent may resize it at load time.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Process ids to capture when `CONFIG.filter_pid` is set.
#[map]
static PID_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(FILTER_CAPACITY, 0);

/// Run-time switches from the agent; slot [`CONTROL_STOPPING`] set: the agent is detaching.
#[map]
static CONTROL: Array<u32> = Array::with_max_entries(CONTROL_SLOTS, 0);

/// `comm` values to capture when `CONFIG.filter_comm` is set.
#[map]
static COMM_FILTER: HashMap<[u8; COMM_LEN], u8> = HashMap::with_max_entries(FILTER_CAPACITY, 0);

/// cgroups to capture (with their descendants) when `CONFIG.filter_cgroup` is set.
#[map]
static CGROUP_FILTER: CgroupArray = CgroupArray::with_max_entries(CGROUP_FILTER_CAPACITY, 0);

/// Written by the agent before loading (read-only data: the verifier sees constants, which the
/// task field loads rely on).
#[no_mangle]
static CONFIG: ProbeConfig = ProbeConfig {
    filter_pid: 0,
    filter_comm: 0,
    filter_cgroup: 0,
    cgroup_slots: 0,
    task: TaskLayout {
        task_pid: 0,
        task_tgid: 0,
        task_comm: 0,
        task_cred: 0,
        cred_uid: 0,
        cred_euid: 0,
        task_mm: 0,
        mm_exe_file: 0,
        file_dentry: 0,
        dentry_name_len: 0,
        dentry_inline_name: 0,
        dentry_inline_name_size: 0,
        task_cgroups: 0,
        css_set_dfl_cgrp: 0,
        cgroup_kn: 0,
        kernfs_node_id: 0,
    },
};

/// A task-storage map definition in the form the BTF map loader reads (aya-ebpf 0.2 has none):
/// the map's type, flags, key and value are encoded in the fields' types.
#[repr(C)]
pub struct TaskStorage<V> {
    r#type: *const [i32; BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const V,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: the fields are never dereferenced; the loader replaces the definition with a map.
unsafe impl<V> Sync for TaskStorage<V> {}

impl<V> TaskStorage<V> {
    pub(crate) const fn new() -> Self {
        Self {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// The task's value, created zeroed with `create`; `None` if absent or refused.
    #[inline(always)]
    pub(crate) fn get(&self, task: *mut task_struct, create: bool) -> Option<*mut V> {
        let flags = if create {
            BPF_LOCAL_STORAGE_GET_F_CREATE as u64
        } else {
            0
        };
        let map = core::ptr::from_ref(self).cast_mut().cast();
        // SAFETY: `task` is the current task's BTF pointer; a null value pointer asks the kernel
        // to zero a new value.
        let value = unsafe { bpf_task_storage_get(map, task, core::ptr::null_mut(), flags) };
        (!value.is_null()).then_some(value.cast())
    }
}

/// One of the agent's settings, read so the compiler cannot fold it to its load-time default.
#[inline(always)]
fn setting<T: Copy>(field: &T) -> T {
    // SAFETY: CONFIG is a plain static; a volatile read just stops constant folding.
    unsafe { core::ptr::read_volatile(field) }
}

/// The current task, as a BTF pointer the verifier lets the probes load fields through.
#[inline(always)]
pub(crate) fn current_task() -> *mut task_struct {
    // SAFETY: a helper without arguments; the result is never null.
    unsafe { bpf_get_current_task_btf() }
}

/// The number of the syscall the current task is in, from its saved user registers.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn current_syscall(task: *mut task_struct) -> u32 {
    use aya_ebpf::{bindings::pt_regs, helpers::bpf_task_pt_regs};
    // SAFETY: bpf_task_pt_regs returns a BTF pointer to the current task's saved registers; a
    // load through it is checked by the verifier and cannot fault.
    unsafe {
        let regs = bpf_task_pt_regs(task) as *const pt_regs;
        (*regs).orig_rax as u32
    }
}

/// Other architectures: not recorded yet.
#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn current_syscall(_task: *mut task_struct) -> u32 {
    kspan_common::declared::NO_SYSCALL
}

/// Loads a `T` at `offset` (an agent-provided constant) from a kernel object.
#[inline(always)]
fn load<T: Copy>(object: *const u8, offset: &u32) -> T {
    // SAFETY: `object` is a BTF pointer and `offset` a read-only constant the verifier checks
    // against the kernel's BTF; such loads are fault-tolerant (a fault reads zero).
    unsafe { core::ptr::read(object.add(setting(offset) as usize).cast::<T>()) }
}

/// Thread and process ids of `task`.
#[inline(always)]
pub(crate) fn ids(task: *const u8) -> (u32, u32) {
    let layout = &CONFIG.task;
    (load(task, &layout.task_tgid), load(task, &layout.task_pid))
}

/// The thread's `comm`, in two 8-byte loads.
#[inline(always)]
pub(crate) fn comm(task: *const u8) -> [u8; COMM_LEN] {
    let comm = task.wrapping_add(setting(&CONFIG.task.task_comm) as usize);
    let words: [u64; 2] = [load(comm, &0), load(comm, &8)];
    // SAFETY: two u64s are 16 plain bytes; building the array byte by byte would cost a memset.
    unsafe { core::mem::transmute::<[u64; 2], [u8; COMM_LEN]>(words) }
}

/// The basename of `task`'s executable and its length: `mm->exe_file`'s dentry name, loaded
/// from the dentry's inline copy (plain loads, no helper call). Length 0 when the task has no
/// executable or its name is too long to be kept inline (then it lives where only a helper
/// could read it). Loads through a null pointer read zero, so a missing link reads length 0.
#[inline(always)]
pub(crate) fn exe_name(task: *const u8) -> (u8, [u8; EXE_NAME_LEN]) {
    let layout = &CONFIG.task;
    let mm: *const u8 = load(task, &layout.task_mm);
    let exe_file: *const u8 = load(mm, &layout.mm_exe_file);
    let dentry: *const u8 = load(exe_file, &layout.file_dentry);
    let len: u32 = load(dentry, &layout.dentry_name_len);
    let inline_size = setting(&layout.dentry_inline_name_size);
    if len == 0 || len >= inline_size {
        return (0, [0; EXE_NAME_LEN]);
    }
    let name = dentry.wrapping_add(setting(&layout.dentry_inline_name) as usize);
    // Only within the kernel's inline array (32 or 40 bytes): the verifier knows its size.
    let last = if inline_size > 32 { load(name, &32) } else { 0 };
    let words: [u64; EXE_NAME_LEN / 8] = [
        load(name, &0),
        load(name, &8),
        load(name, &16),
        load(name, &24),
        last,
    ];
    // SAFETY: five u64s are 40 plain bytes; building the array byte by byte would cost a memset.
    let bytes = unsafe { core::mem::transmute::<[u64; 5], [u8; EXE_NAME_LEN]>(words) };
    (len as u8, bytes)
}

/// The user ids of a task: real and effective.
pub(crate) struct UserIds {
    pub(crate) real: u32,
    pub(crate) effective: u32,
}

/// Real and effective uid and cgroup v2 id of `task`.
#[inline(always)]
pub(crate) fn user_ids_and_cgroup(task: *const u8) -> (UserIds, u64) {
    let layout = &CONFIG.task;
    let cred: *const u8 = load(task, &layout.task_cred);
    let css_set: *const u8 = load(task, &layout.task_cgroups);
    let cgroup: *const u8 = load(css_set, &layout.css_set_dfl_cgrp);
    let kernfs_node: *const u8 = load(cgroup, &layout.cgroup_kn);
    let ids = UserIds {
        real: load(cred, &layout.cred_uid),
        effective: load(cred, &layout.cred_euid),
    };
    (ids, load(kernfs_node, &layout.kernfs_node_id))
}

/// Ring-buffer submit flags of every probe: none, for the kernel's adaptive wakeup. It wakes the
/// reader only when a record lands in a ring the reader has emptied, at most once per drain, so
/// an idle reader can block until the first call while the calls that follow it pay nothing.
#[inline(always)]
pub(crate) fn submit_flags() -> u64 {
    0
}

#[inline(always)]
pub(crate) fn stopping() -> bool {
    CONTROL.get(CONTROL_STOPPING).is_some_and(|flag| *flag != 0)
}

/// Whether the filters select `task`; loads its ids and name, and tests its cgroup, only when a
/// filter is on.
#[inline(always)]
pub(crate) fn selected(task: *const u8) -> bool {
    let (filter_pid, filter_comm) = (setting(&CONFIG.filter_pid), setting(&CONFIG.filter_comm));
    // SAFETY: lookups only; the values are never dereferenced.
    let by_task = unsafe {
        (filter_pid == 0 || PID_FILTER.get(ids(task).0).is_some())
            && (filter_comm == 0 || COMM_FILTER.get(comm(task)).is_some())
    };
    by_task && (setting(&CONFIG.filter_cgroup) == 0 || under_filtered_cgroup())
}

/// Whether the current task is in one of the filter's cgroups or below one: the kernel's own
/// ancestry check, one helper call per slot in use.
#[inline(always)]
fn under_filtered_cgroup() -> bool {
    let slots = u32::from(setting(&CONFIG.cgroup_slots));
    for slot in 0..CGROUP_FILTER_CAPACITY {
        if slot >= slots {
            break;
        }
        if CGROUP_FILTER.current_task_under_cgroup(slot) == Ok(true) {
            return true;
        }
    }
    false
}
