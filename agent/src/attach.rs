//! Attaching the generic programs to each probe's hooks, with the first of its attach mode's
//! pairs that works; and, for the bench, the floor object's empty programs on the built-in
//! probe's hooks.

use std::collections::VecDeque;

use anyhow::Context as _;
use aya::{
    programs::{FEntry, FExit, KProbe, ProgramError, TracePoint},
    Btf, BtfError, Ebpf,
};

use crate::{
    declared_probe::{HookPoint, ResolvedProbe},
    kernel_function, privileges, probes,
    signalfd_probe::BuiltinSignalfd,
};
use kspan_common::{
    declared::{fentry_key, function_key, DeclaredProbe, MAX_FENTRY_PROBES},
    programs::{
        floor, DECLARED_FENTRY, DECLARED_FEXIT, DECLARED_KPROBE, DECLARED_KRETPROBE,
        DECLARED_TP_ENTER, DECLARED_TP_EXIT,
    },
    AttachMode, ProbeKind,
};

/// The pair that attached, and why the ones tried before it were refused.
#[derive(Debug)]
pub struct Attached {
    /// The attached pair.
    pub kind: ProbeKind,
    /// Pairs tried first, each with the reason it failed.
    pub refused: Vec<(ProbeKind, String)>,
}

/// Which embedded object: the capturing programs, or the empty floor programs (the bench's
/// overhead floor, in an object of their own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Programs {
    /// `kspan-probes`: pairing, capture, ring buffer.
    Capture,
    /// `kspan-floor`: programs that return at once.
    Floor,
}

/// The generic programs loaded so far, the fentry pairs in use, and what loading them needed.
#[derive(Default)]
pub struct DeclaredPrograms {
    /// Which `sys_enter_*` programs (by argument count) are loaded.
    syscall_entries: [bool; DECLARED_TP_ENTER.len()],
    /// Whether the `sys_exit_*` program is loaded.
    syscall_exit: bool,
    /// Whether the shared kprobe pair is loaded.
    kprobes: bool,
    /// fentry pairs in use.
    fentry_used: usize,
    /// The kernel's BTF, read for the first fentry pair.
    btf: Option<Btf>,
    /// `/proc/kallsyms`, read for the first kprobe.
    kallsyms: Option<String>,
}

impl DeclaredPrograms {
    /// Attaches a declared probe's hooks; a function with the first of its kinds that works,
    /// saying in the log why any before it was refused (past the last fentry pair, fentry falls
    /// back to kprobe).
    pub fn attach(&mut self, ebpf: &mut Ebpf, probe: &ResolvedProbe) -> anyhow::Result<ProbeKind> {
        let name = probe.info.name.as_str();
        let (function, kinds) = match &probe.hook {
            HookPoint::Syscall { .. } => {
                self.attach_syscall(ebpf, probe)
                    .with_context(|| format!("probe {name}"))?;
                return Ok(ProbeKind::Tracepoint);
            }
            HookPoint::Function { name, kinds } => (name.as_str(), kinds),
        };
        let mut refused = Vec::new();
        let mut kinds: VecDeque<ProbeKind> = kinds.iter().copied().collect();
        while let Some(kind) = kinds.pop_front() {
            if kind == ProbeKind::Fentry && self.fentry_used == MAX_FENTRY_PROBES {
                tracing::warn!(
                    probe = name,
                    function,
                    "all {MAX_FENTRY_PROBES} fentry pairs are in use: probing it with kprobes"
                );
                if !kinds.contains(&ProbeKind::Kprobe) {
                    kinds.push_back(ProbeKind::Kprobe);
                }
                continue;
            }
            match self.attach_function(ebpf, kind, function, probe.spec) {
                Ok(()) => return Ok(kind),
                Err(error) => {
                    let reason = format!("{error:#}");
                    let why = reason.lines().next().unwrap_or_default();
                    // The last refusal is the error itself, not a fallback.
                    if !kinds.is_empty() {
                        tracing::warn!(probe = name, kind = %kind, reason = why, "probe refused, falling back");
                    }
                    refused.push(format!("{kind}: {why}"));
                }
            }
        }
        anyhow::bail!(
            "probe {name}: no probe could be attached to {function} ({})",
            refused.join("; ")
        )
    }

    /// Attaches the built-in signalfd probe with the first of its mode's kinds that works.
    pub fn attach_builtin(
        &mut self,
        ebpf: &mut Ebpf,
        builtin: &BuiltinSignalfd,
        probes: &[ResolvedProbe],
    ) -> anyhow::Result<Attached> {
        let mut refused = Vec::new();
        for &kind in builtin.mode.candidates() {
            let attached = match kind {
                ProbeKind::Kprobe | ProbeKind::Fentry => self.can_attach(kind).and_then(|()| {
                    let function = builtin
                        .function
                        .as_ref()
                        .map_err(|why| anyhow::anyhow!("{why}"))?;
                    let probe = &probes[*function];
                    let HookPoint::Function { name, .. } = &probe.hook else {
                        anyhow::bail!("the built-in function probe hooks no function");
                    };
                    self.attach_function(ebpf, kind, name, probe.spec)
                }),
                ProbeKind::Tracepoint => privileges::require(ProbeKind::Tracepoint)
                    .and_then(|()| {
                        let syscalls = builtin.syscalls.as_ref();
                        syscalls.map_err(|why| anyhow::anyhow!("{why}"))
                    })
                    .and_then(|syscalls| {
                        syscalls
                            .iter()
                            .try_for_each(|&index| self.attach_syscall(ebpf, &probes[index]))
                    }),
            };
            match attached {
                Ok(()) => return Ok(Attached { kind, refused }),
                Err(error) => refused.push((kind, format!("{error:#}"))),
            }
        }
        Err(no_pair(&refused))
    }

    /// Whether kind's programs can be used at all: the kernel has them, kspan may load them.
    fn can_attach(&self, kind: ProbeKind) -> anyhow::Result<()> {
        if kind == ProbeKind::Kprobe {
            if !kernel_function::kprobes_available() {
                anyhow::bail!(
                    "this kernel has no kprobes ({} is missing: built without CONFIG_KPROBES)",
                    kernel_function::KPROBE_PMU
                );
            }
            privileges::require(ProbeKind::Kprobe)?;
        }
        Ok(())
    }

    /// Declares `spec` for a syscall's tracepoints and attaches the entry program for its
    /// number of arguments and the exit program.
    fn attach_syscall(&mut self, ebpf: &mut Ebpf, probe: &ResolvedProbe) -> anyhow::Result<()> {
        let HookPoint::Syscall {
            tracepoints,
            number,
            arguments,
        } = &probe.hook
        else {
            anyhow::bail!("probe {} hooks no syscall", probe.info.name);
        };
        privileges::require(ProbeKind::Tracepoint)?;
        probes::declare_syscall(ebpf, *number, probe.spec)?;
        let entry = DECLARED_TP_ENTER
            .get(*arguments)
            .with_context(|| format!("{} takes {arguments} arguments", tracepoints[0]))?;
        let programs = [
            (
                *entry,
                &mut self.syscall_entries[*arguments],
                &tracepoints[0],
            ),
            (DECLARED_TP_EXIT, &mut self.syscall_exit, &tracepoints[1]),
        ];
        for (name, loaded, event) in programs {
            let tracepoint: &mut TracePoint = program(ebpf, name)?;
            if !*loaded {
                tracepoint
                    .load()
                    .with_context(|| format!("loading {name}"))?;
                *loaded = true;
            }
            tracepoint
                .attach("syscalls", event)
                .with_context(|| format!("attaching {name} to syscalls:{event}"))?;
        }
        Ok(())
    }

    /// Declares `spec` for `function` and attaches a pair of `kind` to it; undoes both on
    /// failure, so another kind can be tried.
    fn attach_function(
        &mut self,
        ebpf: &mut Ebpf,
        kind: ProbeKind,
        function: &str,
        spec: DeclaredProbe,
    ) -> anyhow::Result<()> {
        match kind {
            ProbeKind::Kprobe => self.attach_kprobes(ebpf, function, spec),
            ProbeKind::Fentry => self.attach_fentry(ebpf, function, spec),
            ProbeKind::Tracepoint => anyhow::bail!("`{function}` is a function, not a syscall"),
        }
    }

    fn attach_kprobes(
        &mut self,
        ebpf: &mut Ebpf,
        function: &str,
        spec: DeclaredProbe,
    ) -> anyhow::Result<()> {
        self.can_attach(ProbeKind::Kprobe)?;
        let kallsyms = match &mut self.kallsyms {
            Some(kallsyms) => kallsyms,
            None => self
                .kallsyms
                .insert(kernel_function::kallsyms().context("reading /proc/kallsyms")?),
        };
        let address = match kernel_function::address(kallsyms, function) {
            Some(0) => anyhow::bail!(
                "the kernel hides function addresses from kspan (/proc/kallsyms reads 0), which \
                 kprobes are told apart by: grant CAP_SYSLOG"
            ),
            Some(address) => address,
            None => {
                return Err(blame_function(
                    anyhow::anyhow!("no address for `{function}` in /proc/kallsyms"),
                    function,
                ))
            }
        };
        if !self.kprobes {
            for name in [DECLARED_KPROBE, DECLARED_KRETPROBE] {
                let kprobe: &mut KProbe = program(ebpf, name)?;
                kprobe.load().with_context(|| format!("loading {name}"))?;
            }
            self.kprobes = true;
        }
        let key = function_key(address);
        probes::declare_function(ebpf, key, Some(spec))?;
        let entry: &mut KProbe = program(ebpf, DECLARED_KPROBE)?;
        let entry_link = entry
            .attach(function, 0)
            .with_context(|| format!("attaching {DECLARED_KPROBE} to {function}"))
            .map_err(|error| blame_function(error, function));
        let attached = entry_link.and_then(|entry_link| {
            let exit: &mut KProbe = program(ebpf, DECLARED_KRETPROBE)?;
            match exit.attach(function, 0) {
                Ok(_) => Ok(()),
                Err(error) => {
                    let entry: &mut KProbe = program(ebpf, DECLARED_KPROBE)?;
                    let _ = entry.detach(entry_link);
                    Err(anyhow::Error::new(error)
                        .context(format!("attaching {DECLARED_KRETPROBE} to {function}")))
                }
            }
        });
        if attached.is_err() {
            probes::declare_function(ebpf, key, None)?;
        }
        attached
    }

    /// Loads the next fentry pair for `function` and attaches it; unloads it again on failure,
    /// so the next function can take it.
    fn attach_fentry(
        &mut self,
        ebpf: &mut Ebpf,
        function: &str,
        spec: DeclaredProbe,
    ) -> anyhow::Result<()> {
        let slot = self.fentry_used;
        if slot == MAX_FENTRY_PROBES {
            anyhow::bail!("all {MAX_FENTRY_PROBES} fentry pairs are in use");
        }
        let btf = match &mut self.btf {
            Some(btf) => btf,
            None => self.btf.insert(
                Btf::from_sys_fs().context("reading kernel BTF from /sys/kernel/btf/vmlinux")?,
            ),
        };
        probes::declare_function(ebpf, fentry_key(slot), Some(spec))?;
        let steps = [
            step(DECLARED_FENTRY[slot], Hook::Fentry),
            step(DECLARED_FEXIT[slot], Hook::Fexit),
        ];
        for step in &steps {
            if let Err(error) = attach_step(ebpf, step, function, Some(btf)) {
                unload(ebpf, &steps);
                probes::declare_function(ebpf, fentry_key(slot), None)?;
                return Err(error);
            }
        }
        self.fentry_used += 1;
        Ok(())
    }
}

/// The error when no kind of pair attached: each one's reason.
fn no_pair(refused: &[(ProbeKind, String)]) -> anyhow::Error {
    let reasons: Vec<String> = refused
        .iter()
        .map(|(kind, why)| format!("{kind}: {why}"))
        .collect();
    anyhow::anyhow!("no probe could be attached ({})", reasons.join("; "))
}

/// Where one floor program attaches.
enum Hook {
    /// A kprobe or kretprobe (the program's section says which) on the function.
    Kprobe,
    /// fentry on the function.
    Fentry,
    /// fexit on the function.
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

const ENTER_BOTH: &[&str] = &["sys_enter_signalfd", "sys_enter_signalfd4"];
const EXIT_BOTH: &[&str] = &["sys_exit_signalfd", "sys_exit_signalfd4"];

/// The floor's pairs, entry first, on the built-in probe's hooks.
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

/// The steps of a floor pair, entry first.
fn floor_steps(kind: ProbeKind) -> &'static [Step] {
    FLOOR
        .iter()
        .find(|(of, _)| *of == kind)
        .map_or(&[], |(_, steps)| steps)
}

/// Attaches the first floor pair of `mode`'s candidates that works to `function` (kprobe,
/// fentry) or the signalfd tracepoints; pairs that fail are unloaded.
pub fn attach_floor(ebpf: &mut Ebpf, mode: AttachMode, function: &str) -> anyhow::Result<Attached> {
    let mut refused = Vec::new();
    for &kind in mode.candidates() {
        let attached = floor_preconditions(kind).and_then(|btf| {
            floor_steps(kind)
                .iter()
                .try_for_each(|step| attach_step(ebpf, step, function, btf.as_ref()))
        });
        match attached {
            Ok(()) => return Ok(Attached { kind, refused }),
            Err(error) => {
                unload_floor(ebpf, kind);
                refused.push((kind, format!("{error:#}")));
            }
        }
    }
    Err(no_pair(&refused))
}

/// What a kind of floor pair needs before any of its programs loads.
fn floor_preconditions(kind: ProbeKind) -> anyhow::Result<Option<Btf>> {
    match kind {
        ProbeKind::Kprobe => {
            DeclaredPrograms::default().can_attach(kind)?;
            Ok(None)
        }
        ProbeKind::Fentry => Btf::from_sys_fs()
            .context("reading kernel BTF from /sys/kernel/btf/vmlinux")
            .map(Some),
        ProbeKind::Tracepoint => {
            privileges::require(ProbeKind::Tracepoint)?;
            Ok(None)
        }
    }
}

/// Detaches and unloads every program of a floor pair (those never loaded are skipped).
pub fn unload_floor(ebpf: &mut Ebpf, kind: ProbeKind) {
    unload(ebpf, floor_steps(kind));
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

    /// Every floor step's program is in the floor object, with the type its hook needs: the
    /// names in `kspan_common::programs::floor` and the functions in `probes/src/` agree.
    #[test]
    fn every_floor_step_names_a_program_of_its_object_with_the_right_type() {
        use aya_obj::ProgramSection as Section;
        let object = aya_obj::Object::parse(crate::probes::object_bytes(Programs::Floor))
            .expect("the embedded object parses");
        for kind in ProbeKind::ALL {
            let steps = floor_steps(kind);
            assert!(steps.len() >= 2, "{kind}: an entry and an exit");
            for step in steps {
                let program = object
                    .programs
                    .get(step.program)
                    .unwrap_or_else(|| panic!("{kind}: no program {}", step.program));
                let fits = matches!(
                    (&step.hook, &program.section),
                    (Hook::Kprobe, Section::KProbe | Section::KRetProbe)
                        | (Hook::Fentry, Section::FEntry { .. })
                        | (Hook::Fexit, Section::FExit { .. })
                        | (Hook::Syscalls(_), Section::TracePoint)
                );
                assert!(fits, "{kind}: {} is a {:?}", step.program, program.section);
            }
        }
    }

    /// The generic programs are in the product's object, each of the type it is loaded as.
    #[test]
    fn the_generic_programs_are_in_the_object_with_the_right_type() {
        use aya_obj::ProgramSection as Section;
        let object = aya_obj::Object::parse(crate::probes::object_bytes(Programs::Capture))
            .expect("the embedded object parses");
        let section = |name: &str| {
            let program = object.programs.get(name);
            program.map(|program| program.section.clone())
        };
        for entry in DECLARED_TP_ENTER {
            assert!(
                matches!(section(entry), Some(Section::TracePoint)),
                "{entry}"
            );
        }
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
