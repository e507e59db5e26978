//! Loading the embedded probes and attaching one probe pair, falling back in a fixed order.

use std::{collections::VecDeque, sync::Arc};

use anyhow::Context as _;
use aya::{
    programs::{FEntry, FExit, KProbe, ProgramError, TracePoint},
    Btf, BtfError, Ebpf,
};

use crate::{
    declared_probe::{HookPoint, ResolvedProbe},
    kernel_function, privileges,
    tracefs::TracefsError,
};
use kspan_common::{AttachMode, ProbeKind};

/// The pair that attached, and why the ones tried before it were refused.
#[derive(Debug)]
pub struct Attached {
    /// The attached pair.
    pub kind: ProbeKind,
    /// Pairs tried first, each with the reason it failed.
    pub refused: Vec<(ProbeKind, String)>,
}

/// What the probes attach to.
pub struct Target<'a> {
    /// The kernel function for kprobe and fentry (`do_signalfd4`).
    pub function: &'a str,
    /// Whether the tracepoints carry their fields where the probes read them, or why not;
    /// `None` when the attach mode never tries them.
    pub tracepoints: Option<Result<(), Arc<TracefsError>>>,
}

/// Which object's programs attach: the capturing ones, or the empty floor programs on the same
/// hooks (the bench's overhead floor, in an object of their own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Programs {
    /// `kspan-probes`: pairing, capture, ring buffer.
    Capture,
    /// `kspan-floor`: programs that return at once.
    Floor,
}

/// Where one program attaches.
enum Hook {
    /// A kprobe or kretprobe (the program's section says which) on the target function.
    Kprobe,
    /// fentry on the target function.
    Fentry,
    /// fexit on the target function.
    Fexit,
    /// These `syscalls:` tracepoints.
    Syscalls(&'static [&'static str]),
}

/// One program and its hook: attaching a pair is walking its steps in order.
struct Step {
    program: &'static str,
    hook: Hook,
}

const fn step(program: &'static str, hook: Hook) -> Step {
    Step { program, hook }
}

const ENTER_SIGNALFD: &[&str] = &["sys_enter_signalfd"];
const ENTER_SIGNALFD4: &[&str] = &["sys_enter_signalfd4"];
const ENTER_BOTH: &[&str] = &["sys_enter_signalfd", "sys_enter_signalfd4"];
const EXIT_BOTH: &[&str] = &["sys_exit_signalfd", "sys_exit_signalfd4"];

use kspan_common::programs::{self as capture, floor};

/// Each pair's steps, entry first, for the capturing programs and for the floor's.
const CAPTURE: [(ProbeKind, &[Step]); 3] = [
    (
        ProbeKind::Kprobe,
        &[
            step(capture::KPROBE_ENTRY, Hook::Kprobe),
            step(capture::KPROBE_RETURN, Hook::Kprobe),
        ],
    ),
    (
        ProbeKind::Fentry,
        &[
            step(capture::FENTRY, Hook::Fentry),
            step(capture::FEXIT, Hook::Fexit),
        ],
    ),
    (
        ProbeKind::Tracepoint,
        &[
            step(capture::TP_ENTER_SIGNALFD, Hook::Syscalls(ENTER_SIGNALFD)),
            step(capture::TP_ENTER_SIGNALFD4, Hook::Syscalls(ENTER_SIGNALFD4)),
            step(capture::TP_EXIT, Hook::Syscalls(EXIT_BOTH)),
        ],
    ),
];
const FLOOR: [(ProbeKind, &[Step]); 3] = [
    (
        ProbeKind::Kprobe,
        &[
            step(floor::KPROBE, Hook::Kprobe),
            step(floor::KRETPROBE, Hook::Kprobe),
        ],
    ),
    (
        ProbeKind::Fentry,
        &[
            step(floor::FENTRY, Hook::Fentry),
            step(floor::FEXIT, Hook::Fexit),
        ],
    ),
    (
        ProbeKind::Tracepoint,
        &[
            step(floor::TP_ENTER, Hook::Syscalls(ENTER_BOTH)),
            step(floor::TP_EXIT, Hook::Syscalls(EXIT_BOTH)),
        ],
    ),
];

impl Programs {
    /// The steps of a pair, entry first.
    fn steps(self, kind: ProbeKind) -> &'static [Step] {
        let table = match self {
            Programs::Capture => &CAPTURE,
            Programs::Floor => &FLOOR,
        };
        table
            .iter()
            .find(|(of, _)| *of == kind)
            .map_or(&[], |(_, steps)| steps)
    }
}

/// Attaches the first pair of `mode`'s candidates that works; pairs that fail are unloaded.
pub fn attach(
    ebpf: &mut Ebpf,
    programs: Programs,
    mode: AttachMode,
    target: &Target<'_>,
) -> anyhow::Result<Attached> {
    let mut refused = Vec::new();
    for &kind in mode.candidates() {
        match attach_pair(ebpf, programs, kind, target) {
            Ok(()) => return Ok(Attached { kind, refused }),
            Err(error) => {
                unload_pair(ebpf, programs, kind);
                refused.push((kind, format!("{error:#}")));
            }
        }
    }
    let reasons: Vec<String> = refused
        .iter()
        .map(|(kind, why)| format!("{kind}: {why}"))
        .collect();
    anyhow::bail!("no probe could be attached ({})", reasons.join("; "))
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

/// What a kind of pair needs before any of its programs loads.
fn preconditions(kind: ProbeKind, target: &Target<'_>) -> anyhow::Result<Option<Btf>> {
    match kind {
        ProbeKind::Kprobe => {
            if !kernel_function::kprobes_available() {
                anyhow::bail!(
                    "this kernel has no kprobes ({} is missing: built without CONFIG_KPROBES)",
                    kernel_function::KPROBE_PMU
                );
            }
            privileges::require(ProbeKind::Kprobe)?;
            Ok(None)
        }
        ProbeKind::Fentry => Btf::from_sys_fs()
            .context("reading kernel BTF from /sys/kernel/btf/vmlinux")
            .map(Some),
        ProbeKind::Tracepoint => {
            privileges::require(ProbeKind::Tracepoint)?;
            match &target.tracepoints {
                Some(checked) => checked.clone()?,
                None => anyhow::bail!("the tracepoints' fields were not checked against tracefs"),
            }
            Ok(None)
        }
    }
}

fn attach_pair(
    ebpf: &mut Ebpf,
    programs: Programs,
    kind: ProbeKind,
    target: &Target<'_>,
) -> anyhow::Result<()> {
    let btf = preconditions(kind, target)?;
    for step in programs.steps(kind) {
        attach_step(ebpf, step, target.function, btf.as_ref())?;
    }
    Ok(())
}

fn attach_step(
    ebpf: &mut Ebpf,
    step: &Step,
    function: &str,
    btf: Option<&Btf>,
) -> anyhow::Result<()> {
    let name = step.program;
    let btf = || btf.context("fentry and fexit need the kernel's BTF");
    match step.hook {
        Hook::Kprobe => {
            let probe: &mut KProbe = program(ebpf, name)?;
            probe.load().with_context(|| format!("loading {name}"))?;
            probe
                .attach(function, 0)
                .with_context(|| format!("attaching {name} to {function}"))
                .map_err(|error| blame_function(error, function))?;
        }
        Hook::Fentry => {
            let entry: &mut FEntry = program(ebpf, name)?;
            entry
                .load(function, btf()?)
                .with_context(|| format!("loading fentry for {function}"))
                .map_err(|error| blame_function_if_not_in_btf(error, function))?;
            entry
                .attach()
                .with_context(|| format!("attaching fentry to {function}"))
                .map_err(|error| blame_function(error, function))?;
        }
        Hook::Fexit => {
            let exit: &mut FExit = program(ebpf, name)?;
            exit.load(function, btf()?)
                .with_context(|| format!("loading fexit for {function}"))?;
            exit.attach()
                .with_context(|| format!("attaching fexit to {function}"))?;
        }
        Hook::Syscalls(events) => {
            let tracepoint: &mut TracePoint = program(ebpf, name)?;
            tracepoint
                .load()
                .with_context(|| format!("loading {name}"))?;
            for event in events {
                tracepoint
                    .attach("syscalls", event)
                    .with_context(|| format!("attaching {name} to syscalls:{event}"))?;
            }
        }
    }
    Ok(())
}

/// Attaches the generic programs to every declared probe's hook: the tracepoint programs to
/// each syscall's pair, and each function with the first of its pairs that attaches. Returns the
/// kind each probe attached as, in order.
pub fn attach_declared(
    ebpf: &mut Ebpf,
    probes: &[ResolvedProbe],
) -> anyhow::Result<Vec<ProbeKind>> {
    use kspan_common::programs::{DECLARED_TP_ENTER, DECLARED_TP_EXIT};
    let syscalls: Vec<(&ResolvedProbe, &[String; 2])> = probes
        .iter()
        .filter_map(|probe| match &probe.hook {
            HookPoint::Syscall { tracepoints, .. } => Some((probe, tracepoints)),
            HookPoint::Function { .. } => None,
        })
        .collect();
    if !syscalls.is_empty() {
        privileges::require(ProbeKind::Tracepoint)?;
    }
    for (end, name) in [DECLARED_TP_ENTER, DECLARED_TP_EXIT]
        .into_iter()
        .enumerate()
    {
        if syscalls.is_empty() {
            break;
        }
        let tracepoint: &mut TracePoint = program(ebpf, name)?;
        tracepoint
            .load()
            .with_context(|| format!("loading {name}"))?;
        for (probe, events) in &syscalls {
            let event = &events[end];
            tracepoint.attach("syscalls", event).with_context(|| {
                format!("attaching probe {} to syscalls:{event}", probe.info.name)
            })?;
        }
    }
    let mut functions = FunctionPairs::default();
    probes
        .iter()
        .map(|probe| match &probe.hook {
            HookPoint::Syscall { .. } => Ok(ProbeKind::Tracepoint),
            HookPoint::Function { name, kinds, .. } => {
                functions.attach(ebpf, &probe.info.name, name, kinds)
            }
        })
        .collect()
}

/// The declared functions' pairs: the one kprobe pair that every function shares, and the
/// fentry pairs, one per function, taken in order.
#[derive(Default)]
struct FunctionPairs {
    /// Whether the shared kprobe pair is loaded.
    kprobes_loaded: bool,
    /// fentry pairs in use.
    fentry_used: usize,
    /// The kernel's BTF, read for the first fentry pair.
    btf: Option<Btf>,
}

impl FunctionPairs {
    /// Attaches `function` with the first of `kinds` that works, saying in the log why any
    /// before it was refused. Past the last fentry pair, fentry falls back to kprobe.
    fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        probe: &str,
        function: &str,
        kinds: &[ProbeKind],
    ) -> anyhow::Result<ProbeKind> {
        use kspan_common::{declared::MAX_FENTRY_PROBES, programs::DECLARED_FENTRY};
        let mut refused = Vec::new();
        let mut kinds: VecDeque<ProbeKind> = kinds.iter().copied().collect();
        while let Some(kind) = kinds.pop_front() {
            if kind == ProbeKind::Fentry && self.fentry_used == DECLARED_FENTRY.len() {
                tracing::warn!(
                    probe,
                    function,
                    "all {MAX_FENTRY_PROBES} fentry pairs are in use: probing it with kprobes"
                );
                if !kinds.contains(&ProbeKind::Kprobe) {
                    kinds.push_back(ProbeKind::Kprobe);
                }
                continue;
            }
            let attached = match kind {
                ProbeKind::Kprobe => self.attach_kprobes(ebpf, function),
                ProbeKind::Fentry => self.attach_fentry(ebpf, function),
                ProbeKind::Tracepoint => continue,
            };
            match attached {
                Ok(()) => return Ok(kind),
                Err(error) => {
                    let reason = format!("{error:#}");
                    let why = reason.lines().next().unwrap_or_default();
                    // The last refusal is the error itself, not a fallback.
                    if !kinds.is_empty() {
                        tracing::warn!(probe, kind = %kind, reason = why, "probe refused, falling back");
                    }
                    refused.push(format!("{kind}: {why}"));
                }
            }
        }
        anyhow::bail!(
            "probe {probe}: no probe could be attached to {function} ({})",
            refused.join("; ")
        )
    }

    fn attach_kprobes(&mut self, ebpf: &mut Ebpf, function: &str) -> anyhow::Result<()> {
        use kspan_common::programs::{DECLARED_KPROBE, DECLARED_KRETPROBE};
        if !self.kprobes_loaded {
            if !kernel_function::kprobes_available() {
                anyhow::bail!(
                    "this kernel has no kprobes ({} is missing: built without CONFIG_KPROBES)",
                    kernel_function::KPROBE_PMU
                );
            }
            privileges::require(ProbeKind::Kprobe)?;
            for name in [DECLARED_KPROBE, DECLARED_KRETPROBE] {
                let kprobe: &mut KProbe = program(ebpf, name)?;
                kprobe.load().with_context(|| format!("loading {name}"))?;
            }
            self.kprobes_loaded = true;
        }
        for name in [DECLARED_KPROBE, DECLARED_KRETPROBE] {
            let kprobe: &mut KProbe = program(ebpf, name)?;
            kprobe
                .attach(function, 0)
                .with_context(|| format!("attaching {name} to {function}"))
                .map_err(|error| blame_function(error, function))?;
        }
        Ok(())
    }

    /// Loads the next fentry pair for `function` and attaches it; unloads it again on failure,
    /// so the next function can take it.
    fn attach_fentry(&mut self, ebpf: &mut Ebpf, function: &str) -> anyhow::Result<()> {
        use kspan_common::programs::{DECLARED_FENTRY, DECLARED_FEXIT};
        let btf = match &mut self.btf {
            Some(btf) => btf,
            None => self.btf.insert(
                Btf::from_sys_fs().context("reading kernel BTF from /sys/kernel/btf/vmlinux")?,
            ),
        };
        let steps = [
            step(DECLARED_FENTRY[self.fentry_used], Hook::Fentry),
            step(DECLARED_FEXIT[self.fentry_used], Hook::Fexit),
        ];
        for step in &steps {
            if let Err(error) = attach_step(ebpf, step, function, Some(btf)) {
                unload(ebpf, &steps);
                return Err(error);
            }
        }
        self.fentry_used += 1;
        Ok(())
    }
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
pub fn unload_pair(ebpf: &mut Ebpf, programs: Programs, kind: ProbeKind) {
    unload(ebpf, programs.steps(kind));
}

/// Detaches and unloads the programs of `steps`.
fn unload(ebpf: &mut Ebpf, steps: &[Step]) {
    for step in steps {
        let Some(program) = ebpf.program_mut(step.program) else {
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

    /// Every step's program is in its object, with the type its hook needs: the names in
    /// `kspan_common::programs` and the functions in `probes/src/` agree.
    #[test]
    fn every_step_names_a_program_of_its_object_with_the_right_type() {
        use aya_obj::ProgramSection as Section;
        for programs in [Programs::Capture, Programs::Floor] {
            let object = aya_obj::Object::parse(crate::probes::object_bytes(programs))
                .expect("the embedded object parses");
            for kind in ProbeKind::ALL {
                let steps = programs.steps(kind);
                assert!(
                    steps.len() >= 2,
                    "{programs:?} {kind}: an entry and an exit"
                );
                for step in steps {
                    let program = object.programs.get(step.program).unwrap_or_else(|| {
                        panic!("{programs:?} {kind}: no program {}", step.program)
                    });
                    let fits = matches!(
                        (&step.hook, &program.section),
                        (Hook::Kprobe, Section::KProbe | Section::KRetProbe)
                            | (Hook::Fentry, Section::FEntry { .. })
                            | (Hook::Fexit, Section::FExit { .. })
                            | (Hook::Syscalls(_), Section::TracePoint)
                    );
                    assert!(
                        fits,
                        "{programs:?} {kind}: {} is a {:?}",
                        step.program, program.section
                    );
                }
            }
        }
    }

    /// The declared probes' generic programs are in the product's object, each of the type
    /// `attach_declared` loads it as.
    #[test]
    fn the_declared_probes_programs_are_in_the_object_with_the_right_type() {
        use aya_obj::ProgramSection as Section;
        use kspan_common::programs::{
            DECLARED_FENTRY, DECLARED_FEXIT, DECLARED_KPROBE, DECLARED_KRETPROBE,
            DECLARED_TP_ENTER, DECLARED_TP_EXIT,
        };
        let object = aya_obj::Object::parse(crate::probes::object_bytes(Programs::Capture))
            .expect("the embedded object parses");
        let section = |name: &str| {
            let program = object.programs.get(name);
            program.map(|program| program.section.clone())
        };
        assert!(matches!(
            section(DECLARED_TP_ENTER),
            Some(Section::TracePoint)
        ));
        assert!(matches!(
            section(DECLARED_TP_EXIT),
            Some(Section::TracePoint)
        ));
        assert!(matches!(section(DECLARED_KPROBE), Some(Section::KProbe)));
        assert!(matches!(
            section(DECLARED_KRETPROBE),
            Some(Section::KRetProbe)
        ));
        for (entry, exit) in DECLARED_FENTRY.into_iter().zip(DECLARED_FEXIT) {
            assert!(
                matches!(section(entry), Some(Section::FEntry { sleepable: false })),
                "{entry}"
            );
            assert!(
                matches!(section(exit), Some(Section::FExit { sleepable: false })),
                "{exit}"
            );
        }
    }
}
