//! Loading the embedded probes and attaching one probe pair, falling back in a fixed order.

use std::sync::Arc;

use anyhow::Context as _;
use aya::{
    programs::{FEntry, FExit, KProbe, ProgramError, TracePoint},
    Btf, BtfError, Ebpf,
};

use crate::attach_mode::{AttachMode, ProbeMode};
use crate::{kernel_function, privileges, tracefs::TracefsError};

/// The pair that attached, and why the ones tried before it were refused.
#[derive(Debug)]
pub struct Attached {
    /// The attached pair.
    pub mode: ProbeMode,
    /// Pairs tried first, each with the reason it failed.
    pub refused: Vec<(ProbeMode, String)>,
}

/// What the probes attach to.
pub struct Target<'a> {
    /// The kernel function for kprobe and fentry (`do_signalfd4`).
    pub function: &'a str,
    /// Whether the tracepoints carry their fields where the probes read them, or why not;
    /// `None` when the attach mode never tries them.
    pub tracepoints: Option<Result<(), Arc<TracefsError>>>,
    /// Attach the empty floor programs instead of the capturing ones.
    pub floor: bool,
}

/// Attaches the first pair of `mode`'s candidates that works; pairs that fail are unloaded.
pub fn attach(ebpf: &mut Ebpf, mode: AttachMode, target: &Target<'_>) -> anyhow::Result<Attached> {
    let mut refused = Vec::new();
    for &candidate in mode.candidates() {
        match attach_pair(ebpf, candidate, target) {
            Ok(()) => {
                return Ok(Attached {
                    mode: candidate,
                    refused,
                })
            }
            Err(error) => {
                unload_pair(ebpf, candidate, target.floor);
                refused.push((candidate, format!("{error:#}")));
            }
        }
    }
    let reasons: Vec<String> = refused
        .iter()
        .map(|(mode, why)| format!("{mode}: {why}"))
        .collect();
    anyhow::bail!("no probe could be attached ({})", reasons.join("; "))
}

/// The programs of a pair, as named in `probes/src/`.
struct Programs {
    kprobe: [&'static str; 2],
    fentry: &'static str,
    fexit: &'static str,
    /// Tracepoint programs and the `syscalls:` events each attaches to.
    tracepoints: [(&'static str, &'static [&'static str]); 3],
}

/// The capturing pairs.
const CAPTURE: Programs = Programs {
    kprobe: ["kspan_kprobe_enter", "kspan_kprobe_return"],
    fentry: "kspan_fentry",
    fexit: "kspan_fexit",
    tracepoints: [
        ("kspan_tp_enter_signalfd", &["sys_enter_signalfd"]),
        ("kspan_tp_enter_signalfd4", &["sys_enter_signalfd4"]),
        (
            "kspan_tp_exit",
            &["sys_exit_signalfd", "sys_exit_signalfd4"],
        ),
    ],
};

/// Empty programs on the same hooks, for measuring the overhead floor.
const FLOOR: Programs = Programs {
    kprobe: ["kspan_floor_kprobe", "kspan_floor_kretprobe"],
    fentry: "kspan_floor_fentry",
    fexit: "kspan_floor_fexit",
    tracepoints: [
        (
            "kspan_floor_tp_enter",
            &["sys_enter_signalfd", "sys_enter_signalfd4"],
        ),
        (
            "kspan_floor_tp_exit",
            &["sys_exit_signalfd", "sys_exit_signalfd4"],
        ),
        ("", &[]),
    ],
};

impl Programs {
    fn of(floor: bool) -> &'static Programs {
        if floor {
            &FLOOR
        } else {
            &CAPTURE
        }
    }

    fn names(&self, mode: ProbeMode) -> Vec<&'static str> {
        match mode {
            ProbeMode::Kprobe => self.kprobe.to_vec(),
            ProbeMode::Fentry => vec![self.fentry, self.fexit],
            ProbeMode::Tracepoint => self
                .tracepoints
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| !name.is_empty())
                .collect(),
        }
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} is missing from the embedded probes"))?;
    Ok(program.try_into()?)
}

fn attach_pair(ebpf: &mut Ebpf, mode: ProbeMode, target: &Target<'_>) -> anyhow::Result<()> {
    let function = target.function;
    let programs = Programs::of(target.floor);
    match mode {
        ProbeMode::Kprobe => {
            if !kernel_function::kprobes_available() {
                anyhow::bail!(
                    "this kernel has no kprobes ({} is missing: built without CONFIG_KPROBES)",
                    kernel_function::KPROBE_PMU
                );
            }
            privileges::require(ProbeMode::Kprobe)?;
            for name in programs.kprobe {
                let probe: &mut KProbe = program(ebpf, name)?;
                probe.load().with_context(|| format!("loading {name}"))?;
                probe
                    .attach(function, 0)
                    .with_context(|| format!("attaching {name} to {function}"))
                    .map_err(|error| blame_function(error, function))?;
            }
        }
        ProbeMode::Fentry => {
            let btf =
                Btf::from_sys_fs().context("reading kernel BTF from /sys/kernel/btf/vmlinux")?;
            let entry: &mut FEntry = program(ebpf, programs.fentry)?;
            entry
                .load(function, &btf)
                .with_context(|| format!("loading fentry for {function}"))
                .map_err(|error| blame_function_if_not_in_btf(error, function))?;
            entry
                .attach()
                .with_context(|| format!("attaching fentry to {function}"))
                .map_err(|error| blame_function(error, function))?;
            let exit: &mut FExit = program(ebpf, programs.fexit)?;
            exit.load(function, &btf)
                .with_context(|| format!("loading fexit for {function}"))?;
            exit.attach()
                .with_context(|| format!("attaching fexit to {function}"))?;
        }
        ProbeMode::Tracepoint => {
            privileges::require(ProbeMode::Tracepoint)?;
            match &target.tracepoints {
                Some(checked) => checked.clone()?,
                None => anyhow::bail!("the tracepoints' fields were not checked against tracefs"),
            }
            for (name, events) in programs
                .tracepoints
                .iter()
                .filter(|(name, _)| !name.is_empty())
            {
                let tracepoint: &mut TracePoint = program(ebpf, name)?;
                tracepoint
                    .load()
                    .with_context(|| format!("loading {name}"))?;
                for event in *events {
                    tracepoint
                        .attach("syscalls", event)
                        .with_context(|| format!("attaching {name} to syscalls:{event}"))?;
                }
            }
        }
    }
    Ok(())
}

/// Puts the kernel's own reason first when `function` is missing, inlined or blacklisted: the
/// error from the attach syscall alone (ENOENT, EINVAL) does not say which. Only called on
/// failures that involve the function, as reading /proc/kallsyms takes tens of milliseconds.
fn blame_function(error: anyhow::Error, function: &str) -> anyhow::Error {
    match kernel_function::why_unprobeable(function) {
        Some(why) => error.context(why),
        None => error,
    }
}

/// [`blame_function`] when loading failed because BTF has no such function (other load
/// failures, e.g. no BPF trampolines, are not the function's fault).
fn blame_function_if_not_in_btf(error: anyhow::Error, function: &str) -> anyhow::Error {
    // aya wraps the BTF error transparently: it is the ProgramError itself, not its source.
    let not_in_btf = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ProgramError>(),
            Some(ProgramError::Btf(BtfError::UnknownBtfTypeName { .. }))
        )
    });
    if not_in_btf {
        blame_function(error, function)
    } else {
        error
    }
}

/// Detaches and unloads every program of a pair (those never loaded are skipped).
pub fn unload_pair(ebpf: &mut Ebpf, mode: ProbeMode, floor: bool) {
    for name in Programs::of(floor).names(mode) {
        let Some(program) = ebpf.program_mut(name) else {
            continue;
        };
        // Unloading a program that never loaded fails harmlessly.
        let _ = match program {
            aya::programs::Program::KProbe(p) => p.unload(),
            aya::programs::Program::FEntry(p) => p.unload(),
            aya::programs::Program::FExit(p) => p.unload(),
            aya::programs::Program::TracePoint(p) => p.unload(),
            _ => Ok(()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_has_an_entry_and_an_exit_program() {
        for floor in [false, true] {
            for mode in [ProbeMode::Kprobe, ProbeMode::Fentry, ProbeMode::Tracepoint] {
                assert!(Programs::of(floor).names(mode).len() >= 2, "{mode}");
            }
        }
    }
}
