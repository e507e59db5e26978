//! Declared probes: generic programs that read what the agent's [`DeclaredProbe`] for the hook
//! says, keep the thread's open calls as a stack in its task storage, and send one
//! [`DeclaredEvent`] per return. Nothing here knows any particular syscall or function.

use core::intrinsics::AtomicOrdering;

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_boot_ns,
        generated::{
            bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
            bpf_probe_read_user_str,
        },
    },
    macros::{btf_map, map},
    maps::{Array, HashMap, PerCpuArray},
};
use kspan_common::{
    declared::{
        ArgRead, CallStack, CapturedArgs, DeclaredEvent, DeclaredProbe, OpenCall,
        DECLARED_EVENT_WITHOUT_STRINGS, MAX_ARGS, MAX_DECLARED_PROBES, MAX_DEPTH, MAX_HOPS,
        MAX_STRINGS, NO_SYSCALL, STRING_BYTES, SYSCALL_SLOTS,
    },
    Counter, ProbeKind,
};

use crate::capture::{
    comm, current_syscall, current_task, exe_name, ids, selected, stopping, submit_flags,
    user_ids_and_cgroup, TaskStorage, EVENTS,
};

/// What each kernel function's programs capture, by [`kspan_common::declared::function_key`].
#[map]
static DECLARED: HashMap<u64, DeclaredProbe> = HashMap::with_max_entries(MAX_DECLARED_PROBES, 0);

/// What each syscall's tracepoint programs capture, by syscall number.
#[map]
static DECLARED_SYSCALLS: Array<DeclaredProbe> = Array::with_max_entries(SYSCALL_SLOTS, 0);

/// The probe declared for the hook `key` (a syscall's below [`SYSCALL_SLOTS`]).
#[inline(always)]
fn declared(key: u64) -> Option<&'static DeclaredProbe> {
    if key < u64::from(SYSCALL_SLOTS) {
        DECLARED_SYSCALLS
            .get(key as u32)
            .filter(|probe| probe.declared != 0)
    } else {
        // SAFETY: a lookup; callers copy what they need at once.
        unsafe { DECLARED.get(key) }
    }
}

/// Each thread's open declared calls.
#[btf_map]
static CALL_STACKS: TaskStorage<CallStack> = TaskStorage::new();

/// Loss counters, per probe: slot `probe * Counter::SLOTS + counter` (the agent adds them up).
#[map]
static DECLARED_COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(MAX_DECLARED_PROBES * Counter::SLOTS, 0);

/// Counts `counter` for `probe`.
#[inline(always)]
fn count_for(probe: u32, counter: Counter) {
    if let Some(slot) = DECLARED_COUNTERS.get_ptr_mut(probe * Counter::SLOTS + counter as u32) {
        // SAFETY: a live, aligned u64 map value.
        // SAFETY (cont.): atomic because two programs can interleave on one CPU when a syscall
        // tracepoint program is preempted.
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

/// Size and alignment of a kernel thread stack (x86_64 without KASAN; with it, stacks are twice
/// as large and the check below just finds fewer calls on one stack).
const THREAD_STACK: u64 = 16 << 10;

/// Records a declared call's entry. `stack_pointer` places its frame (`u64::MAX` for a
/// syscall, 0 when unknown); `read_values` fills the arguments' raw values and returns whether it could.
#[inline(always)]
pub fn declared_entry(
    kind: ProbeKind,
    key: u64,
    stack_pointer: u64,
    read_values: impl FnOnce(&mut [u64; MAX_ARGS]) -> bool,
) {
    if stopping() {
        return;
    }
    let Some(probe) = declared(key) else {
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
            stack.depth -= 1;
            count_for(
                stack.calls[slot(stack.depth as usize)].probe,
                Counter::StaleEntry,
            );
        }
        stack.overflow = 0;
    }
    // A function call whose frame this one's does not lie below, on the same kernel stack, has
    // returned unseen (a kretprobe return the kernel missed): it is no parent of this call.
    for _ in 0..MAX_DEPTH {
        let depth = stack.depth as usize;
        if depth == 0 {
            break;
        }
        let open = stack.calls[slot(depth - 1)].stack_pointer;
        let same_stack = open / THREAD_STACK == stack_pointer / THREAD_STACK;
        if stack_pointer == 0 || open > stack_pointer || !same_stack {
            break;
        }
        count_for(stack.calls[slot(depth - 1)].probe, Counter::StaleEntry);
        stack.depth -= 1;
    }
    let depth = stack.depth as usize;
    if depth >= MAX_DEPTH {
        stack.overflow += 1;
        count_for(probe.probe, Counter::EntryNotStored);
        return;
    }
    let call = &mut stack.calls[slot(depth)];
    call.key = key;
    call.stack_pointer = stack_pointer;
    call.probe = probe.probe;
    call.kind = kind as u8;
    if !read_values(&mut call.captured.values) {
        count_for(probe.probe, Counter::EntryNotStored);
        return;
    }
    call.captured.syscall = match kind {
        ProbeKind::Tracepoint => key as u32,
        _ if probe.reads_syscall != 0 => current_syscall(task),
        _ => NO_SYSCALL,
    };
    call.captured.unreadable = 0;
    call.captured.skipped = 0;
    if probe.member_paths_end != 0 {
        follow_member_paths(probe, &mut call.captured);
    }
    call.has_strings = (probe.strings_end != 0) as u8;
    if probe.strings_end != 0 {
        read_strings(probe, &mut call.captured);
    }
    // SAFETY: a helper without arguments. Taken last, so the span starts at the call itself.
    call.start_boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    stack.depth += 1;
    count_for(probe.probe, Counter::Entries);
}

/// Replaces each argument that has a member path by the member's value, one helper read per
/// pointer followed; a bad pointer marks the argument unreadable, an `only_if` that does not
/// hold marks it skipped.
#[inline(always)]
fn follow_member_paths(probe: &DeclaredProbe, captured: &mut CapturedArgs) {
    for arg in 0..MAX_ARGS {
        if arg >= usize::from(probe.member_paths_end) {
            break;
        }
        let spec = &probe.args[arg];
        if spec.hops == 0 {
            continue;
        }
        if spec.only_if != 0 {
            let condition = captured.values.get(usize::from(spec.only_if) - 1).copied();
            if condition != Some(u64::from(spec.only_if_value)) {
                captured.skipped |= 1 << arg;
                captured.values[arg] = 0;
                continue;
            }
        }
        for hop in 0..MAX_HOPS {
            if hop >= spec.hops as usize {
                break;
            }
            let address = captured.values[arg].wrapping_add(u64::from(spec.offsets[hop]));
            let mut value = 0u64;
            let destination = core::ptr::addr_of_mut!(value).cast();
            let source = address as *const core::ffi::c_void;
            // SAFETY: both helpers validate the address and fail instead of faulting; the
            // destination is a local u64.
            let read = unsafe {
                match spec.user_memory {
                    0 => bpf_probe_read_kernel(destination, 8, source),
                    _ => bpf_probe_read_user(destination, 8, source),
                }
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
        if arg >= usize::from(probe.strings_end) {
            break;
        }
        let spec = &probe.args[arg];
        if !spec.is_string() {
            continue;
        }
        let Some(string) = captured
            .strings
            .get_mut(spec.string_slot as usize % MAX_STRINGS)
        else {
            continue;
        };
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
    let task = current_task();
    let Some(stack) = CALL_STACKS.get(task, false) else {
        count_unpaired(key, task);
        return;
    };
    // SAFETY: as in `declared_entry`.
    let stack = unsafe { &mut *stack };
    let depth = stack.depth as usize;
    let top = slot(depth.wrapping_sub(1));
    if stack.overflow != 0 {
        // The return of an entry the full stack refused (counted then).
        stack.overflow -= 1;
        return;
    }
    // The open call's own key pairs it: no lookup of the probe on the way out.
    if depth == 0 || depth > MAX_DEPTH || stack.calls[top].key != key {
        count_unpaired(key, task);
        return;
    }
    let call = &stack.calls[top];
    stack.depth -= 1;
    let root_start_boot_ns = stack.calls[0].start_boot_ns;
    let parent_start_boot_ns = match depth {
        1 => 0,
        _ => stack.calls[slot(depth.wrapping_sub(2))].start_boot_ns,
    };
    let ends = Ends {
        end_boot_ns,
        parent_start_boot_ns,
        root_start_boot_ns,
        ret,
        depth: (depth - 1) as u8,
    };
    // A probe without strings sends the event without them: a quarter of the bytes, built on
    // the stack and copied by one helper call (reserving and submitting takes two). With
    // strings the event is larger than the stack: it is written in place. The two paths stay
    // apart to the end, so that the verifier always knows which size it has.
    if call.has_strings != 0 {
        let Some(mut entry) = EVENTS.reserve::<DeclaredEvent>(0) else {
            count_for(call.probe, Counter::RingBufferFull);
            return;
        };
        let record = entry.as_mut_ptr();
        // SAFETY: `record` is a reserved whole event; the helper validates the source (the
        // thread's own storage) and fails instead of faulting.
        unsafe {
            bpf_probe_read_kernel(
                core::ptr::addr_of_mut!((*record).captured.strings).cast(),
                size_of_val(&call.captured.strings) as u32,
                core::ptr::addr_of!(call.captured.strings).cast(),
            );
            write_event(record, call, &ends, task);
        }
        entry.submit(submit_flags());
    } else {
        let mut record =
            core::mem::MaybeUninit::<[u64; DECLARED_EVENT_WITHOUT_STRINGS / 8]>::uninit();
        // SAFETY: `write_event` writes every byte of the event before its strings: all of it.
        let record = unsafe {
            write_event(record.as_mut_ptr().cast(), call, &ends, task);
            record.assume_init_ref()
        };
        if EVENTS
            .output::<[u64; DECLARED_EVENT_WITHOUT_STRINGS / 8]>(record, submit_flags())
            .is_err()
        {
            count_for(call.probe, Counter::RingBufferFull);
        }
    }
}

/// What the return adds to a call.
struct Ends {
    end_boot_ns: u64,
    parent_start_boot_ns: u64,
    root_start_boot_ns: u64,
    ret: i64,
    depth: u8,
}

/// Writes every field of a declared event but its strings into `record` (reserved in the ring,
/// or on the stack): the values are copied load by store, as a helper call costs the traced
/// call more than a few stores.
///
/// # Safety
/// `record` points at a reserved record of at least `DECLARED_EVENT_WITHOUT_STRINGS` bytes.
#[inline(always)]
unsafe fn write_event(
    record: *mut DeclaredEvent,
    call: &OpenCall,
    ends: &Ends,
    task: *mut aya_ebpf::bindings::task_struct,
) {
    let task = task.cast::<u8>().cast_const();
    let (pid, tid) = ids(task);
    let (user_ids, cgroup_id) = user_ids_and_cgroup(task);
    let (exe_name_len, exe_name) = exe_name(task);
    // SAFETY: every field written lies before the strings, inside the record (the caller's
    // promise).
    unsafe {
        (*record).start_boot_ns = call.start_boot_ns;
        (*record).end_boot_ns = ends.end_boot_ns;
        (*record).parent_start_boot_ns = ends.parent_start_boot_ns;
        (*record).root_start_boot_ns = ends.root_start_boot_ns;
        (*record).ret = ends.ret;
        (*record).cgroup_id = cgroup_id;
        (*record).probe = call.probe;
        (*record).pid = pid;
        (*record).tid = tid;
        (*record).uid = user_ids.real;
        (*record).euid = user_ids.effective;
        (*record).kind = call.kind;
        (*record).depth = ends.depth;
        (*record).exe_name_len = exe_name_len;
        (*record)._pad = 0;
        (*record).comm = comm(task);
        (*record).exe_name = exe_name;
        (*record).captured.values = call.captured.values;
        (*record).captured.unreadable = call.captured.unreadable;
        (*record).captured.skipped = call.captured.skipped;
        (*record).captured.syscall = call.captured.syscall;
    }
}

/// Counts a return that pairs with no entry against its probe (looked up only now, off the
/// paired path), unless the agent is stopping or the filters skip the thread.
#[inline(always)]
fn count_unpaired(key: u64, task: *mut aya_ebpf::bindings::task_struct) {
    if stopping() || !selected(task.cast()) {
        return;
    }
    if let Some(probe) = declared(key).map(|probe| probe.probe) {
        count_for(probe, Counter::ReturnWithoutEntry);
    }
}
