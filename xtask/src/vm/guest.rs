//! What the guest runs and how the host judges it: the one place to change when the guest side
//! changes.

use std::path::Path;

use anyhow::Result;
use kspan_common::{declared::MAX_FENTRY_PROBES, ProbeKind};
pub use kspan_e2e::Verdict;
use kspan_e2e::MISSING_KERNEL_FUNCTION;

use crate::probe_run::ProbeRun;

/// Cargo packages built for the guest.
pub const CARGO_PACKAGES: &[&str] = &["kspan", "signalfd-workload", "kspan-e2e"];

/// Binaries of the chosen profile copied into the guest's `/bin` (`kspan-e2e` runs the OTLP
/// receiver in-process).
pub const GUEST_BINARIES: &[&str] = &["kspan", "signalfd-workload", "kspan-e2e"];

/// The kernel function the declared check probes inside each openat (the workload's
/// `--openat-inner` names it too).
const DECLARED_FUNCTION: &str = "do_sys_openat2";

/// Where the declared check's probe file is written in the guest.
const DECLARED_PROBES_FILE: &str = "/tmp/declared.toml";

/// Kernel functions the guest never calls, declared after the checked one in the fentry check
/// so that every fentry pair is taken and the last one must fall back to kprobe.
const UNCALLED_FUNCTIONS: [&str; MAX_FENTRY_PROBES] = [
    "vfs_mknod",
    "vfs_symlink",
    "vfs_link",
    "vfs_copy_file_range",
    "vfs_clone_file_range",
    "vfs_dedupe_file_range",
    "vfs_fadvise",
    "vfs_fallocate",
];

/// Lines of the declared checks' probe file: openat2 with `how->flags` from the caller's
/// memory; the function with two arguments and a member path through a kernel pointer
/// (`how->flags`, which `build_open_how` fills), attached as `kind`; with fentry, then the
/// functions that use up the fentry pairs.
fn declared_probe_file(kind: ProbeKind) -> Vec<String> {
    // Both read the same three arguments, by the same names.
    let arguments = ["dfd", "filename", "how->flags"].map(|name| {
        [
            "[[probe.argument]]".to_string(),
            format!("name = \"{name}\""),
        ]
    });
    let mut lines: Vec<String> = vec!["[[probe]]".into(), "syscall = \"openat2\"".into()];
    lines.extend(arguments.iter().flatten().cloned());
    lines.extend([
        "[[probe]]".into(),
        format!("function = \"{DECLARED_FUNCTION}\""),
        format!("attach = \"{kind}\""),
    ]);
    lines.extend(arguments.iter().flatten().cloned());
    if kind == ProbeKind::Fentry {
        for function in UNCALLED_FUNCTIONS {
            lines.push("[[probe]]".into());
            lines.push(format!("function = \"{function}\""));
            lines.push("attach = \"fentry\"".into());
        }
    }
    lines
}

/// The kind each declared function must attach as in a declared check: the checked one as the
/// mode says; in the fentry check, the functions after it with fentry until the pairs run out,
/// the last with kprobe.
fn expected_kinds(kind: ProbeKind) -> Vec<(&'static str, ProbeKind)> {
    let mut kinds = vec![(DECLARED_FUNCTION, kind)];
    if kind == ProbeKind::Fentry {
        let (last, taking_pairs) = UNCALLED_FUNCTIONS.split_last().expect("not empty");
        kinds.extend(taking_pairs.iter().map(|&f| (f, ProbeKind::Fentry)));
        kinds.push((last, ProbeKind::Kprobe));
    }
    kinds
}

/// The kind of pair a declared check's function must attach as.
fn declared_function_kind(mode: ProbeRun) -> Option<ProbeKind> {
    match mode {
        ProbeRun::Declared => Some(ProbeKind::Kprobe),
        ProbeRun::DeclaredFentry => Some(ProbeKind::Fentry),
        _ => None,
    }
}

/// Shell run before `mode`'s run in the guest.
fn prelude(mode: ProbeRun) -> String {
    match declared_function_kind(mode) {
        Some(kind) => {
            let lines: Vec<String> = declared_probe_file(kind)
                .iter()
                .map(|line| format!("'{line}'"))
                .collect();
            format!(
                "printf '%s\\n' {} > {DECLARED_PROBES_FILE}; ",
                lines.join(" ")
            )
        }
        None => String::new(),
    }
}

/// `kspan-e2e run` arguments that make `mode`'s run.
fn run_args(mode: ProbeRun) -> Vec<String> {
    match mode {
        ProbeRun::Kprobe | ProbeRun::Fentry | ProbeRun::Tracepoint => {
            vec!["--attach".into(), mode.as_str().into()]
        }
        ProbeRun::Fallback => vec![
            "--attach".into(),
            "auto".into(),
            "--kspan-arg=--kernel-function".into(),
            format!("--kspan-arg={MISSING_KERNEL_FUNCTION}"),
        ],
        ProbeRun::Containers => ["--attach", "auto", "--containers", "all"]
            .map(String::from)
            .to_vec(),
        ProbeRun::ContainerFilter => ["--attach", "auto", "--containers", "filtered"]
            .map(String::from)
            .to_vec(),
        ProbeRun::Declared | ProbeRun::DeclaredFentry => [
            "--attach",
            "auto",
            "--kspan-arg=--probe",
            "--kspan-arg=syscall:openat",
            "--kspan-arg=--probes",
            &format!("--kspan-arg={DECLARED_PROBES_FILE}"),
        ]
        .map(String::from)
        .to_vec(),
    }
}

/// Workload arguments of `mode`'s run: the container checks run one workload per cgroup, so
/// each makes a few calls on three threads rather than the full set (emulated guests are slow).
fn workload_args(mode: ProbeRun) -> String {
    match mode {
        ProbeRun::Containers | ProbeRun::ContainerFilter => {
            " -- --scenario masks --scenario errors --scenario threads --threads 2 --calls 5".into()
        }
        ProbeRun::Declared | ProbeRun::DeclaredFentry => {
            format!(
                " -- --scenario open --threads 2 --calls 16 --openat2 --openat-inner {DECLARED_FUNCTION}"
            )
        }
        _ => String::new(),
    }
}

/// Shell command `/init` runs once per mode, with `$mode` set; it leaves its files in
/// `/results/$mode` (which exists). Its exit status does not matter: the host judges the files.
pub fn guest_command() -> String {
    let mut command = String::from("case \"$mode\" in\n");
    for mode in ProbeRun::ALL {
        command.push_str(&format!(
            "        {mode}) {}kspan-e2e run {} --bin-dir /bin --out-dir \"/results/$mode\"{} ;;\n",
            prelude(mode),
            run_args(mode).join(" "),
            workload_args(mode)
        ));
    }
    command.push_str("    esac");
    command
}

/// Judges the files one mode's guest run left in `dir` (unpacked on the host).
pub fn judge(mode: ProbeRun, dir: &Path) -> Result<Verdict> {
    let mut verdict = kspan_e2e::judge_dir(dir)?;
    if let Some(kind) = declared_function_kind(mode) {
        if verdict.declared.expected == 0 {
            // An empty declared manifest would judge as exact.
            verdict
                .mismatches
                .push("the declared check made no declared call".to_string());
        }
        let attached = kspan_e2e::declared_kinds(dir)?;
        for (function, kind) in expected_kinds(kind) {
            if attached.get(function) != Some(&kind) {
                verdict.mismatches.push(format!(
                    "{function} should have attached as {kind}; the ready file says {attached:?}"
                ));
            }
        }
        if mode == ProbeRun::DeclaredFentry {
            let log = std::fs::read_to_string(dir.join(kspan_e2e::artifacts::KSPAN_LOG))?;
            let said = format!("all {MAX_FENTRY_PROBES} fentry pairs are in use");
            if !log.contains(&said) {
                verdict
                    .mismatches
                    .push(format!("kspan's log should say `{said}`: {log}"));
            }
        }
    }
    if mode == ProbeRun::Fallback {
        // Guest kernels have kprobes: kprobe must be refused for the missing function itself.
        verdict
            .mismatches
            .extend(kspan_e2e::fallback_mismatches(dir, true)?);
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_has_its_own_run() {
        let command = guest_command();
        for mode in ProbeRun::ALL {
            assert!(
                command.contains(&format!("{mode}) {}kspan-e2e run ", prelude(mode))),
                "{command}"
            );
        }
        assert!(
            command.contains(
                "fallback) kspan-e2e run --attach auto --kspan-arg=--kernel-function \
                 --kspan-arg=kspan_no_such_function --bin-dir /bin"
            ),
            "{command}"
        );
        assert!(command.contains("kprobe) kspan-e2e run --attach kprobe --bin-dir /bin"));
        for (mode, kind) in [("declared", "kprobe"), ("declared-fentry", "fentry")] {
            assert!(command.contains(&format!(
                "{mode}) printf '%s\\n' '[[probe]]' 'syscall = \"openat2\"' "
            )));
            assert!(command.contains(&format!(
                "'[[probe]]' 'function = \"do_sys_openat2\"' 'attach = \"{kind}\"' "
            )));
        }
        assert!(command.contains(
            "container-filter) kspan-e2e run --attach auto --containers filtered --bin-dir /bin"
        ));
    }
}
