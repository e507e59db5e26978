//! kspan's eBPF programs: generic probe pairs (syscall tracepoints, kprobe/kretprobe,
//! fentry/fexit) that capture what the agent declared for the hook they fired on, keep each
//! thread's open calls in its task storage and, at return, send one complete call to a ring
//! buffer. The built-in signalfd probe is declared like any other.
#![no_std]
#![no_main]
// Atomic add on a map value: `core::sync::atomic` offers no fetch_add on the BPF target.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod capture;
mod declared;

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe, tracepoint},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
    EbpfContext,
};
use kspan_common::{
    declared::{fentry_key, function_key, syscall_key},
    tracepoint_offsets, ProbeKind,
};

use crate::declared::{declared_entry, declared_return};

/// `sys_enter_*` of every declared syscall, one program per argument count: each loads its
/// syscall's arguments straight from the record, no helper call, and reads no further (the
/// kernel refuses to attach a program that reads past a record).
macro_rules! declared_syscall_entries {
    ($($name:ident $arguments:literal),* $(,)?) => {$(
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            declared_syscall_entry::<$arguments>(&ctx);
            0
        }
    )*};
}

declared_syscall_entries!(
    kspan_dtp_ent_0 0,
    kspan_dtp_ent_1 1,
    kspan_dtp_ent_2 2,
    kspan_dtp_ent_3 3,
    kspan_dtp_ent_4 4,
    kspan_dtp_ent_5 5,
    kspan_dtp_ent_6 6,
);

#[inline(always)]
fn declared_syscall_entry<const ARGUMENTS: usize>(ctx: &TracePointContext) {
    let key = syscall_key(syscall_nr(ctx));
    declared_entry(ProbeKind::Tracepoint, key, u64::MAX, |values| {
        for (position, value) in values.iter_mut().enumerate() {
            // The slot holds the previous call's values: the ones past the syscall's are reset,
            // each by its own store (together the compiler makes them a memset call).
            match position < ARGUMENTS {
                true => *value = tracepoint_field(ctx, tracepoint_offsets::ARGS + 8 * position),
                // SAFETY: `value` is a valid, aligned u64.
                false => unsafe { core::ptr::write_volatile(value, 0) },
            }
        }
        true
    });
}

/// Every declared syscall's `sys_exit_*` tracepoint.
#[tracepoint]
pub fn kspan_dtp_exit(ctx: TracePointContext) -> u32 {
    let key = syscall_key(syscall_nr(&ctx));
    declared_return(key, tracepoint_field(&ctx, tracepoint_offsets::ARGS) as i64);
    0
}

/// kprobe on every declared kernel function: its address says which.
#[kprobe]
pub fn kspan_dkp_enter(ctx: ProbeContext) -> u32 {
    let key = function_key(function_address(&ctx));
    declared_entry(ProbeKind::Kprobe, key, stack_pointer(&ctx), |values| {
        for (position, value) in values.iter_mut().enumerate() {
            *value = ctx.arg::<u64>(position).unwrap_or(0);
        }
        true
    });
    0
}

/// kretprobe on every declared kernel function.
#[kretprobe]
pub fn kspan_dkp_exit(ctx: RetProbeContext) -> u32 {
    let key = function_key(function_address(&ctx));
    declared_return(key, ctx.ret::<i64>());
    0
}

/// fentry and fexit on one declared kernel function each, their slot says which: a tracing
/// program is loaded for one target, so there are `MAX_FENTRY_PROBES` identical pairs, named as
/// `kspan_common::programs::DECLARED_FENTRY` and `DECLARED_FEXIT` list them.
macro_rules! declared_fentry_pairs {
    ($($entry:ident $exit:ident $slot:literal),* $(,)?) => {$(
        #[fentry]
        pub fn $entry(ctx: FEntryContext) -> u32 {
            declared_fentry(&ctx, fentry_key($slot));
            0
        }

        #[fexit]
        pub fn $exit(ctx: FExitContext) -> u32 {
            declared_fexit(&ctx, fentry_key($slot));
            0
        }
    )*};
}

declared_fentry_pairs!(
    kspan_dfentry_0 kspan_dfexit_0 0,
    kspan_dfentry_1 kspan_dfexit_1 1,
    kspan_dfentry_2 kspan_dfexit_2 2,
    kspan_dfentry_3 kspan_dfexit_3 3,
    kspan_dfentry_4 kspan_dfexit_4 4,
    kspan_dfentry_5 kspan_dfexit_5 5,
    kspan_dfentry_6 kspan_dfexit_6 6,
    kspan_dfentry_7 kspan_dfexit_7 7,
);

#[inline(always)]
fn declared_fentry(ctx: &FEntryContext, key: u64) {
    // No stack pointer (0): fexit sees every return, so no fentry call is left open unseen.
    declared_entry(ProbeKind::Fentry, key, 0, |values| {
        for (position, value) in values.iter_mut().enumerate() {
            // SAFETY: the verifier inlines this helper into a load from the trampoline's
            // argument array; past the function's own arguments it fails, leaving 0.
            unsafe {
                aya_ebpf::helpers::generated::bpf_get_func_arg(ctx.as_ptr(), position as u32, value)
            };
        }
        true
    });
}

#[inline(always)]
fn declared_fexit(ctx: &FExitContext, key: u64) {
    let mut ret = 0u64;
    // SAFETY: inlined by the verifier, as `bpf_get_func_arg`; writes a local.
    unsafe { aya_ebpf::helpers::generated::bpf_get_func_ret(ctx.as_ptr(), &mut ret) };
    declared_return(key, ret as i64);
}

/// The stack pointer at a kprobed function's entry.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn stack_pointer(ctx: &ProbeContext) -> u64 {
    // SAFETY: the kprobe's context is the registers at the function's entry, loaded directly.
    unsafe { (*ctx.regs).rsp }
}

/// Other architectures: unknown (0), which keeps every open call.
#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
fn stack_pointer(_ctx: &ProbeContext) -> u64 {
    0
}

/// The address of the function a kprobe or kretprobe fired on (its symbol's, whatever the
/// kprobe's own placement).
#[inline(always)]
fn function_address(ctx: &impl EbpfContext) -> u64 {
    // SAFETY: the helper takes the program's own context.
    unsafe { aya_ebpf::helpers::generated::bpf_get_func_ip(ctx.as_ptr()) }
}

/// The syscall number every syscall tracepoint record carries (`__syscall_nr`, an `int`).
#[inline(always)]
fn syscall_nr(ctx: &TracePointContext) -> u32 {
    // SAFETY: a constant offset inside every syscall record's fixed part (the first 8 bytes,
    // which a program may not load, hold the registers); checked by the verifier.
    unsafe {
        core::ptr::read(
            ctx.as_ptr()
                .cast::<u8>()
                .add(tracepoint_offsets::SYSCALL_NR)
                .cast::<u32>(),
        )
    }
}

/// One 8-byte field of a syscall tracepoint record, loaded directly: unlike `read_at`, no
/// helper call, which matters on the hot path.
#[inline(always)]
fn tracepoint_field(ctx: &TracePointContext, offset: usize) -> u64 {
    // SAFETY: the offsets are constants inside the record (the agent checks them against
    // tracefs before attaching) and 8-aligned; the verifier checks every context access.
    unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(offset).cast::<u64>()) }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this: no panic survives loading.
    loop {}
}
