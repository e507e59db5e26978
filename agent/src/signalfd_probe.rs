//! The built-in signalfd probe, declared on the generic programs like any other: a kprobe or
//! fentry pair on `do_signalfd4` (the mask read from the kernel's copy, the syscall that led
//! there recorded), else the `signalfd` and `signalfd4` tracepoints (the mask read from the
//! caller's buffer when `sizemask` says the kernel reads it too). Its calls decode as
//! [`kspan_decode::SignalfdCall`]s, with the attributes and log records signalfd always had.

use std::{path::Path, sync::Arc};

use kspan_common::{
    declared::{ArgRead, ArgSpec},
    AttachMode,
};
use kspan_decode::{ProbeInfo, ResultKind, SignalfdLayout};

use crate::{
    btf::Btf,
    declaration::{Declaration, DeclarationError, Probed, SIGNALFD},
    declared_probe::ResolvedProbe,
    function_probe, syscall_numbers, syscall_probe,
};

/// `sizeof(sigset_t)`: the kernel reads the caller's mask only when `sizemask` is this.
const SIGSET_BYTES: u16 = 8;

/// The syscalls that reach `do_signalfd4`, each with its tracepoints.
const SYSCALLS: [&str; 2] = ["signalfd", "signalfd4"];

/// The built-in probe's hooks: the probe table's entries for each, or why one cannot be used
/// (said when its kinds are refused, as the attach mode's fallback chain moves on).
#[derive(Debug)]
pub struct BuiltinSignalfd {
    /// The kinds to try, in order.
    pub mode: AttachMode,
    /// The kernel function's probe (its index in the probe table).
    pub function: Result<usize, String>,
    /// The two syscalls' probes.
    pub syscalls: Result<[usize; 2], String>,
}

/// The kernel function's probe, as probe number `index`.
pub fn function(
    btf: &Btf,
    function: &str,
    index: u32,
    mode: AttachMode,
) -> Result<ResolvedProbe, String> {
    let declaration = builtin(Probed::Function(function.to_owned()), mode);
    let mut probe =
        function_probe::resolve(btf, &declaration, function, index, mode).map_err(reason)?;
    let prototype = btf.function(function).map_err(|error| error.to_string())?;
    let position = |name: &str| {
        prototype
            .params
            .iter()
            .position(|parameter| parameter.name == name)
            .ok_or_else(|| format!("`{function}` has no parameter `{name}`"))
    };
    let (ufd, mask, flags) = (position("ufd")?, position("mask")?, position("flags")?);
    // The mask is read through its pointer, from the kernel's copy `do_signalfd4` acts on.
    probe.spec.args[mask] = ArgSpec {
        read: ArgRead::Value as u8,
        hops: 1,
        ..ArgSpec::default()
    };
    probe.spec.arg_count = probe.spec.arg_count.max(mask as u16 + 1);
    probe.spec.reads_syscall = 1;
    probe.info = info(ufd, mask, Some(flags))?;
    Ok(probe)
}

/// The `signalfd` and `signalfd4` tracepoint probes, as probes number `index` and `index + 1`.
pub fn syscalls(root: &Path, index: u32, mode: AttachMode) -> Result<[ResolvedProbe; 2], String> {
    let [signalfd, signalfd4] = SYSCALLS;
    Ok([
        syscall(root, signalfd, index, mode)?,
        syscall(root, signalfd4, index + 1, mode)?,
    ])
}

fn syscall(
    root: &Path,
    syscall: &str,
    index: u32,
    mode: AttachMode,
) -> Result<ResolvedProbe, String> {
    let declaration = builtin(Probed::Syscall(syscall.to_owned()), mode);
    let mut probe =
        syscall_probe::resolve(root, None, &declaration, syscall, index, mode).map_err(reason)?;
    let position = |name: &str| {
        let argument = probe
            .info
            .arguments
            .iter()
            .find(|argument| argument.name == name);
        argument.map(|argument| argument.position)
    };
    let needed = |name: &str| {
        position(name).ok_or_else(|| format!("sys_enter_{syscall} has no field `{name}`"))
    };
    let (ufd, mask, sizemask) = (needed("ufd")?, needed("user_mask")?, needed("sizemask")?);
    // Read from the caller's buffer, and only as the kernel reads it: `sizemask` must be
    // `sizeof(sigset_t)`.
    probe.spec.args[mask] = ArgSpec {
        read: ArgRead::Value as u8,
        hops: 1,
        user_memory: 1,
        only_if: sizemask as u8 + 1,
        only_if_value: SIGSET_BYTES,
        ..ArgSpec::default()
    };
    probe.info = info(ufd, mask, position("flags"))?;
    Ok(probe)
}

/// How the built-in probe's calls read.
fn info(ufd: usize, mask: usize, flags: Option<usize>) -> Result<Arc<ProbeInfo>, String> {
    let number = |name: &str| {
        syscall_numbers::number(name).ok_or_else(|| format!("no number known for `{name}`"))
    };
    let [signalfd, signalfd4] = SYSCALLS;
    Ok(Arc::new(ProbeInfo {
        signalfd: Some(SignalfdLayout {
            ufd,
            mask,
            flags,
            signalfd_number: number(signalfd)?,
            signalfd4_number: number(signalfd4)?,
        }),
        ..ProbeInfo::new(SIGNALFD, ResultKind::Fd)
    }))
}

/// The declaration the built-in makes of `probed`: every argument, read as `fd`.
fn builtin(probed: Probed, mode: AttachMode) -> Declaration {
    Declaration {
        probed,
        name: SIGNALFD.to_owned(),
        span_name: None,
        attach: Some(mode),
        arguments: None,
        result: Some(ResultKind::Fd),
        origin: "built in".to_owned(),
    }
}

/// What is wrong with a hook, without the probe's name the refusal already carries.
fn reason(error: DeclarationError) -> String {
    match error {
        DeclarationError::Invalid { why, .. } => why,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use kspan_common::{declared::MAX_HOPS, ProbeKind};

    use super::*;
    use crate::declared_probe::HookPoint;

    #[test]
    fn the_tracepoint_probes_read_the_caller_s_mask_only_when_the_kernel_does() {
        let root = crate::tracefs::ensure_mounted().expect("tracefs");
        let [signalfd, signalfd4] = syscalls(&root, 3, AttachMode::Auto).unwrap();
        for (probe, flags) in [(&signalfd, None), (&signalfd4, Some(3))] {
            let layout = probe.info.signalfd.expect("read as signalfd calls");
            assert_eq!((layout.ufd, layout.mask, layout.flags), (0, 1, flags));
            assert_eq!(
                probe.spec.args[1],
                ArgSpec {
                    read: ArgRead::Value as u8,
                    hops: 1,
                    user_memory: 1,
                    only_if: 3,
                    only_if_value: 8,
                    offsets: [0; MAX_HOPS],
                    ..ArgSpec::default()
                }
            );
        }
        assert_eq!((signalfd.spec.probe, signalfd4.spec.probe), (3, 4));
        assert!(matches!(
            &signalfd4.hook,
            HookPoint::Syscall {
                number: 289,
                arguments: 4,
                ..
            }
        ));
    }

    #[test]
    fn the_function_probe_reads_the_kernel_s_mask_and_the_syscall() {
        let btf = Btf::read(Path::new(crate::btf::VMLINUX_BTF)).expect("this kernel has BTF");
        let probe = function(&btf, "do_signalfd4", 0, AttachMode::Auto).unwrap();
        let layout = probe.info.signalfd.expect("read as signalfd calls");
        assert_eq!((layout.ufd, layout.mask, layout.flags), (0, 1, Some(2)));
        assert_eq!(
            (probe.spec.args[1].hops, probe.spec.args[1].user_memory),
            (1, 0)
        );
        assert_eq!(probe.spec.reads_syscall, 1);
        assert!(matches!(
            &probe.hook,
            HookPoint::Function { kinds, .. } if kinds == &[ProbeKind::Kprobe, ProbeKind::Fentry]
        ));
        let missing = function(&btf, "kspan_no_such_function", 0, AttachMode::Auto).unwrap_err();
        assert!(
            missing.starts_with("`kspan_no_such_function` is not a function"),
            "{missing}"
        );
    }
}
