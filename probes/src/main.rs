//! kspan's eBPF programs. Three interchangeable probe pairs watch `do_signalfd4`, the kernel
//! function behind the `signalfd` and `signalfd4` syscalls; each pair records the call at entry
//! into a per-thread map and, at return, sends one complete [`CallEvent`] to a ring buffer.
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
    declared::{function_key, syscall_key},
    tracepoint_offsets, MaskSource, ProbeKind, Syscall,
};

use crate::{
    capture::{kernel_mask, record_entry, record_return, EntryArgs},
    declared::{declared_entry, declared_return},
};

/// kprobe on `do_signalfd4(int ufd, sigset_t *mask, int flags)`.
#[kprobe]
pub fn kspan_kprobe_enter(ctx: ProbeContext) -> u32 {
    let (Some(ufd), Some(mask), Some(flags)) = (
        ctx.arg::<i32>(0),
        ctx.arg::<*const u64>(1),
        ctx.arg::<i32>(2),
    ) else {
        return 0;
    };
    let (mask, mask_source) = kernel_mask(mask);
    record_entry(EntryArgs {
        probe: ProbeKind::Kprobe,
        syscall: None,
        ufd,
        flags,
        mask,
        mask_source,
    });
    0
}

/// kretprobe on `do_signalfd4`.
#[kretprobe]
pub fn kspan_kprobe_return(ctx: RetProbeContext) -> u32 {
    // The function returns `int`: the upper half of the register is not part of the value.
    let ret = ctx.ret::<i64>() as i32;
    record_return(ret);
    0
}

/// fentry on `do_signalfd4`.
#[fentry(function = "do_signalfd4")]
pub fn kspan_fentry(ctx: FEntryContext) -> u32 {
    // SAFETY: fentry arguments are typed by the kernel's BTF: `mask` is a `sigset_t *` the
    // verifier lets the program load through directly (fault-tolerant), no helper call.
    let mask = unsafe { *ctx.arg::<*const u64>(1) };
    record_entry(EntryArgs {
        probe: ProbeKind::Fentry,
        syscall: None,
        ufd: ctx.arg::<i32>(0),
        flags: ctx.arg::<i32>(2),
        mask,
        mask_source: MaskSource::Kernel,
    });
    0
}

/// fexit on `do_signalfd4`.
#[fexit(function = "do_signalfd4")]
pub fn kspan_fexit(ctx: FExitContext) -> u32 {
    if let Ok(ret) = ctx.ret::<i64>() {
        record_return(ret as i32);
    }
    0
}

/// `syscalls:sys_enter_signalfd`: `signalfd(ufd, user_mask, sizemask)`, no flags.
#[tracepoint]
pub fn kspan_tp_enter_signalfd(ctx: TracePointContext) -> u32 {
    tracepoint_entry(&ctx, Syscall::Signalfd);
    0
}

/// `syscalls:sys_enter_signalfd4`: `signalfd4(ufd, user_mask, sizemask, flags)`.
#[tracepoint]
pub fn kspan_tp_enter_signalfd4(ctx: TracePointContext) -> u32 {
    tracepoint_entry(&ctx, Syscall::Signalfd4);
    0
}

/// `syscalls:sys_exit_signalfd` and `syscalls:sys_exit_signalfd4`.
#[tracepoint]
pub fn kspan_tp_exit(ctx: TracePointContext) -> u32 {
    record_return(tracepoint_field(&ctx, tracepoint_offsets::RET) as i32);
    0
}

/// Every declared syscall's `sys_enter_*` tracepoint: the record's syscall number says which.
#[tracepoint]
pub fn kspan_dtp_enter(ctx: TracePointContext) -> u32 {
    let key = syscall_key(syscall_nr(&ctx));
    declared_entry(ProbeKind::Tracepoint, key, u64::MAX, |values| {
        // All six argument words in one helper call: loading them directly would make the
        // program too wide for syscalls with fewer arguments (the kernel refuses to attach a
        // program that reads past a record), while BPF programs always get all six words.
        // SAFETY: the helper validates the source and fails instead of faulting.
        unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                values.as_mut_ptr().cast(),
                size_of_val(values) as u32,
                ctx.as_ptr()
                    .cast::<u8>()
                    .add(tracepoint_offsets::ARGS)
                    .cast(),
            ) == 0
        }
    });
    0
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

/// fentry and fexit on one declared kernel function each, its address says which: a tracing
/// program is loaded for one target, so there are `MAX_FENTRY_PROBES` identical pairs, named as
/// `kspan_common::programs::DECLARED_FENTRY` and `DECLARED_FEXIT` list them.
macro_rules! declared_fentry_pairs {
    ($($entry:ident $exit:ident),* $(,)?) => {$(
        #[fentry]
        pub fn $entry(ctx: FEntryContext) -> u32 {
            declared_fentry(&ctx);
            0
        }

        #[fexit]
        pub fn $exit(ctx: FExitContext) -> u32 {
            declared_fexit(&ctx);
            0
        }
    )*};
}

declared_fentry_pairs!(
    kspan_dfentry_0 kspan_dfexit_0,
    kspan_dfentry_1 kspan_dfexit_1,
    kspan_dfentry_2 kspan_dfexit_2,
    kspan_dfentry_3 kspan_dfexit_3,
    kspan_dfentry_4 kspan_dfexit_4,
    kspan_dfentry_5 kspan_dfexit_5,
    kspan_dfentry_6 kspan_dfexit_6,
    kspan_dfentry_7 kspan_dfexit_7,
);

#[inline(always)]
fn declared_fentry(ctx: &FEntryContext) {
    let key = function_key(function_address(ctx));
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
fn declared_fexit(ctx: &FExitContext) {
    let mut ret = 0u64;
    // SAFETY: inlined by the verifier, as `bpf_get_func_arg`; writes a local.
    unsafe { aya_ebpf::helpers::generated::bpf_get_func_ret(ctx.as_ptr(), &mut ret) };
    declared_return(function_key(function_address(ctx)), ret as i64);
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

/// The address of the function a kprobe, kretprobe, fentry or fexit fired on (its symbol's,
/// whatever the kprobe's own placement).
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

#[inline(always)]
fn tracepoint_entry(ctx: &TracePointContext, syscall: Syscall) {
    let flags = match syscall {
        Syscall::Signalfd4 => tracepoint_field(ctx, tracepoint_offsets::FLAGS) as i32,
        _ => 0,
    };
    // The kernel reads the mask only when `sizemask` is exactly `sizeof(sigset_t)`.
    let (mask, mask_source) = if tracepoint_field(ctx, tracepoint_offsets::SIZEMASK) == 8 {
        capture::user_mask(tracepoint_field(ctx, tracepoint_offsets::USER_MASK) as *const u64)
    } else {
        (0, MaskSource::NotRead)
    };
    record_entry(EntryArgs {
        probe: ProbeKind::Tracepoint,
        syscall: Some(syscall),
        ufd: tracepoint_field(ctx, tracepoint_offsets::UFD) as i32,
        flags,
        mask,
        mask_source,
    });
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
