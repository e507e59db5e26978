//! `kspan-floor`: empty programs on the same hooks as the real pairs, the least any probe pair
//! can cost. `cargo xtask bench` attaches them (through kspan's hidden `--floor`) as the
//! overhead floor; an object of their own, so the product's object holds only what it runs.
#![no_std]
#![no_main]

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe, tracepoint},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};

/// Empty kprobe.
#[kprobe]
pub fn kspan_floor_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

/// Empty kretprobe.
#[kretprobe]
pub fn kspan_floor_kretprobe(_ctx: RetProbeContext) -> u32 {
    0
}

/// Empty fentry.
#[fentry(function = "do_signalfd4")]
pub fn kspan_floor_fentry(_ctx: FEntryContext) -> u32 {
    0
}

/// Empty fexit.
#[fexit(function = "do_signalfd4")]
pub fn kspan_floor_fexit(_ctx: FExitContext) -> u32 {
    0
}

/// Empty syscall-entry tracepoint program (attached to both entry tracepoints).
#[tracepoint]
pub fn kspan_floor_tp_enter(_ctx: TracePointContext) -> u32 {
    0
}

/// Empty syscall-exit tracepoint program (attached to both exit tracepoints).
#[tracepoint]
pub fn kspan_floor_tp_exit(_ctx: TracePointContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this: no panic survives loading.
    loop {}
}
