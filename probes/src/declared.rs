//! Declared probes: generic programs that read what the agent's [`DeclaredProbe`] for the hook
//! says, keep the thread's open calls as a stack in its task storage, and send one
//! [`DeclaredEvent`] per return. Nothing here knows any particular syscall or function.

use core::intrinsics::AtomicOrdering;

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_boot_ns,
        generated::{bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user_str},
    },
    macros::{btf_map, map},
    maps::{HashMap, PerCpuArray},
};
use kspan_common::{
    declared::{
        ArgRead, CallStack, CapturedArgs, DeclaredEvent, DeclaredProbe, MAX_ARGS,
        MAX_DECLARED_PROBES, MAX_DEPTH, MAX_HOPS, MAX_STRINGS, STRING_BYTES,
    },
    Counter, ProbeKind,
};

use crate::capture::{
    comm, count, current_task, exe_name, ids, selected, stopping, user_ids_and_cgroup, TaskStorage,
    EVENTS,
};

/// What each hook's program captures, by [`kspan_common::declared::hook_key`].
#[map]
static DECLARED: HashMap<u64, DeclaredProbe> = HashMap::with_max_entries(MAX_DECLARED_PROBES, 0);

/// Each thread's open declared calls.
#[btf_map]
static CALL_STACKS: TaskStorage<CallStack> = TaskStorage::new();

/// Per-probe counters: slot `probe * Counter::SLOTS + counter`.
#[map]
static DECLARED_COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(MAX_DECLARED_PROBES * Counter::SLOTS, 0);

/// Counts `counter` in the totals and in `probe`'s own slots.
#[inline(always)]
fn count_for(probe: u32, counter: Counter) {
    count(counter);
    if let Some(slot) = DECLARED_COUNTERS.get_ptr_mut(probe * Counter::SLOTS + counter as u32) {
        // SAFETY: a live, aligned u64 map value; atomic as in `count`.
        unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, 1) };
    }
}

/// `index` masked into the stack (MAX_DEPTH is a power of two), in a way the compiler cannot
/// drop: it would, knowing the callers' checks, and the verifier, tracking another register,
/// would then see an unbounded index.
#[inline(always)]
fn slot(index: usize) -> usize {
    // SAFETY: a volatile read of a local.
    unsafe { core::ptr::read_volatile(&index) & (MAX_DEPTH - 1) }
}

/// Records a declared call's entry. `read_values` fills the arguments' raw values and returns
/// whether it could.
#[inline(always)]
pub fn declared_entry(
    kind: ProbeKind,
    key: u64,
    read_values: impl FnOnce(&mut [u64; MAX_ARGS]) -> bool,
) {
    if stopping() {
        return;
    }
    // SAFETY: a lookup; the value is copied out at once.
    let Some(probe) = (unsafe { DECLARED.get(key) }).copied() else {
        return;
    };
    let task = current_task();
    if !selected(task.cast()) {
        return;
    }
    let Some(stack) = CALL_STACKS.get(task, true) else {
        count_for(probe.probe, Counter::EntryNotStored);
        return;
    };
    // SAFETY: `stack` is this thread's storage; only this thread touches it.
    let stack = unsafe { &mut *stack };
    if kind == ProbeKind::Tracepoint && stack.depth != 0 {
        // A thread is in one syscall at a time: whatever is open lost its return.
        for _ in 0..MAX_DEPTH {
            if stack.depth == 0 {
                break;
            }
            count(Counter::StaleEntry);
            stack.depth -= 1;
        }
        stack.overflow = 0;
    }
    let depth = stack.depth as usize;
    if depth >= MAX_DEPTH {
        stack.overflow += 1;
        count_for(probe.probe, Counter::EntryNotStored);
        return;
    }
    let call = &mut stack.calls[slot(depth)];
    call.probe = probe.probe;
    call.kind = kind as u8;
    if !read_values(&mut call.captured.values) {
        count_for(probe.probe, Counter::EntryNotStored);
        return;
    }
    follow_member_paths(&probe, &mut call.captured);
    read_strings(&probe, &mut call.captured);
    // SAFETY: a helper without arguments. Taken last, so the span starts at the call itself.
    call.start_boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    stack.depth += 1;
    count_for(probe.probe, Counter::Entries);
}

/// Replaces each argument that has a member path by the member's value, one helper read per
/// pointer followed; a bad pointer marks the argument unreadable.
#[inline(always)]
fn follow_member_paths(probe: &DeclaredProbe, captured: &mut CapturedArgs) {
    captured.unreadable = 0;
    for arg in 0..MAX_ARGS {
        let spec = probe.args[arg];
        for hop in 0..MAX_HOPS {
            if hop >= spec.hops as usize {
                break;
            }
            let address = captured.values[arg].wrapping_add(u64::from(spec.offsets[hop]));
            let mut value = 0u64;
            // SAFETY: the helper validates the address and fails instead of faulting; the
            // destination is a local u64.
            let read = unsafe {
                bpf_probe_read_kernel(
                    core::ptr::addr_of_mut!(value).cast(),
                    8,
                    address as *const core::ffi::c_void,
                )
            };
            if read != 0 {
                captured.unreadable |= 1 << arg;
                captured.values[arg] = 0;
                break;
            }
            captured.values[arg] = value;
        }
    }
}

/// Reads the string arguments into their slots.
#[inline(always)]
fn read_strings(probe: &DeclaredProbe, captured: &mut CapturedArgs) {
    // The slots hold the previous call's strings at this depth.
    for string in &mut captured.strings {
        string.len = 0;
    }
    for arg in 0..MAX_ARGS {
        let spec = probe.args[arg];
        let is_string = spec.read == ArgRead::UserString as u8
            || spec.read == ArgRead::KernelString as u8
            || spec.read == ArgRead::AnyString as u8;
        let Some(string) = captured
            .strings
            .get_mut(spec.string_slot as usize % MAX_STRINGS)
        else {
            continue;
        };
        if !is_string {
            continue;
        }
        if captured.unreadable & (1 << arg) != 0 {
            // The path to the string's address was bad: no address to read.
            string.len = -1;
            continue;
        }
        let address = captured.values[arg] as *const core::ffi::c_void;
        let destination = string.bytes.as_mut_ptr().cast();
        // SAFETY: both helpers validate the source address and fail instead of faulting; the
        // destination is the slot's own bytes, `STRING_BYTES` long.
        let len = unsafe {
            if spec.read == ArgRead::UserString as u8 {
                bpf_probe_read_user_str(destination, STRING_BYTES as u32, address)
            } else if spec.read == ArgRead::KernelString as u8 {
                bpf_probe_read_kernel_str(destination, STRING_BYTES as u32, address)
            } else if spec.read == ArgRead::AnyString as u8 {
                // A user address fails the kernel read at once (it never faults).
                match bpf_probe_read_kernel_str(destination, STRING_BYTES as u32, address) {
                    len if len >= 0 => len,
                    _ => bpf_probe_read_user_str(destination, STRING_BYTES as u32, address),
                }
            } else {
                continue;
            }
        };
        string.len = len as i32;
    }
}

/// Completes the thread's innermost declared call, if it is `key`'s, and sends it.
#[inline(always)]
pub fn declared_return(key: u64, ret: i64) {
    // SAFETY: a helper without arguments.
    let end_boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: a lookup; the value is read at once.
    let Some(probe) = (unsafe { DECLARED.get(key) }).map(|probe| probe.probe) else {
        return;
    };
    let task = current_task();
    let Some(stack) = CALL_STACKS.get(task, false) else {
        if !stopping() && selected(task.cast()) {
            count_for(probe, Counter::ReturnWithoutEntry);
        }
        return;
    };
    // SAFETY: as in `declared_entry`.
    let stack = unsafe { &mut *stack };
    if stack.overflow != 0 {
        // The return of an entry the full stack refused (counted then).
        stack.overflow -= 1;
        return;
    }
    let depth = stack.depth as usize;
    let top = slot(depth.wrapping_sub(1));
    if depth == 0 || depth > MAX_DEPTH || stack.calls[top].probe != probe {
        if !stopping() && selected(task.cast()) {
            count_for(probe, Counter::ReturnWithoutEntry);
        }
        return;
    }
    let call = &stack.calls[top];
    stack.depth -= 1;
    let root_start_boot_ns = stack.calls[0].start_boot_ns;
    let parent_start_boot_ns = match depth {
        1 => 0,
        _ => stack.calls[slot(depth.wrapping_sub(2))].start_boot_ns,
    };
    let Some(mut entry) = EVENTS.reserve::<DeclaredEvent>(0) else {
        count_for(probe, Counter::RingBufferFull);
        return;
    };
    let event = entry.as_mut_ptr();
    let task = task.cast::<u8>().cast_const();
    let (pid, tid) = ids(task);
    let (user_ids, cgroup_id) = user_ids_and_cgroup(task);
    let (exe_name_len, exe_name) = exe_name(task);
    // SAFETY: `event` is the reserved record, `size_of::<DeclaredEvent>()` bytes; fields are
    // written in place (the whole record is larger than the BPF stack), the captured values in
    // one helper call from the stack's entry.
    unsafe {
        (*event).start_boot_ns = call.start_boot_ns;
        (*event).end_boot_ns = end_boot_ns;
        (*event).parent_start_boot_ns = parent_start_boot_ns;
        (*event).root_start_boot_ns = root_start_boot_ns;
        (*event).ret = ret;
        (*event).cgroup_id = cgroup_id;
        (*event).probe = probe;
        (*event).pid = pid;
        (*event).tid = tid;
        (*event).uid = user_ids.real;
        (*event).euid = user_ids.effective;
        (*event).kind = call.kind;
        (*event).depth = (depth - 1) as u8;
        (*event).exe_name_len = exe_name_len;
        (*event)._pad = 0;
        (*event).comm = comm(task);
        (*event).exe_name = exe_name;
        bpf_probe_read_kernel(
            core::ptr::addr_of_mut!((*event).captured).cast(),
            size_of::<CapturedArgs>() as u32,
            core::ptr::addr_of!(call.captured).cast(),
        );
    }
    // Wake the reader as for signalfd events.
    entry.submit(crate::capture::submit_flags());
}
