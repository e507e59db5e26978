//! The runs the VM test and the bench make: one per kind of probe pair (`--attach` that kind),
//! the fallback check and the container checks. The kinds and their names are kspan's own (`kspan_common::ProbeKind`).

use std::fmt;

use kspan_common::ProbeKind;
use serde::Deserialize;

/// One run of kspan in a guest: a kind of probe pair, the fallback check, or a container check.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ProbeRun {
    /// kprobe + kretprobe on `do_signalfd4`.
    Kprobe,
    /// fentry + fexit on `do_signalfd4`.
    Fentry,
    /// The `syscalls:sys_{enter,exit}_signalfd{,4}` tracepoints.
    Tracepoint,
    /// `auto` told to probe a kernel function that does not exist: it must fall back to the
    /// tracepoints, capture every call and say why kprobe and fentry were refused.
    Fallback,
    /// A workload in each of a set of cgroups named as containerd, cri-o and docker name them
    /// (both cgroup drivers), every one captured: each span's container, runtime, pod and
    /// cgroup path must be exact.
    Containers,
    /// The same cgroups, with `--container` (one of them) and `--cgroup` (docker's cgroupfs
    /// tree): only their calls may arrive, and none counts as lost.
    #[serde(rename = "container-filter")]
    #[value(name = "container-filter")]
    ContainerFilter,
    /// Declared probes: `syscall:openat` (its tracepoints) and the kernel function
    /// `do_sys_openat2` (a kprobe pair) that every openat runs: each openat call exact, with its
    /// `do_sys_openat2` call as its child span.
    Declared,
    /// The same declared probes with `do_sys_openat2` declared `attach = "fentry"`: its calls
    /// exact through a declared fentry/fexit pair, the ready file saying it attached as fentry.
    #[serde(rename = "declared-fentry")]
    #[value(name = "declared-fentry")]
    DeclaredFentry,
}

impl ProbeRun {
    /// Every mode, in the order a guest runs them.
    pub const ALL: [ProbeRun; 8] = [
        ProbeRun::Kprobe,
        ProbeRun::Fentry,
        ProbeRun::Tracepoint,
        ProbeRun::Fallback,
        ProbeRun::Containers,
        ProbeRun::ContainerFilter,
        ProbeRun::Declared,
        ProbeRun::DeclaredFentry,
    ];

    /// The kind of pair the run attaches with `--attach`; `None` for the fallback and
    /// container checks, which run `--attach auto`.
    pub fn probe(self) -> Option<ProbeKind> {
        match self {
            ProbeRun::Kprobe => Some(ProbeKind::Kprobe),
            ProbeRun::Fentry => Some(ProbeKind::Fentry),
            ProbeRun::Tracepoint => Some(ProbeKind::Tracepoint),
            ProbeRun::Fallback
            | ProbeRun::Containers
            | ProbeRun::ContainerFilter
            | ProbeRun::Declared
            | ProbeRun::DeclaredFentry => None,
        }
    }

    /// The run's name in the guest's result directories: the probe kind's, or the check's.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeRun::Fallback => "fallback",
            ProbeRun::Containers => "containers",
            ProbeRun::ContainerFilter => "container-filter",
            ProbeRun::Declared => "declared",
            ProbeRun::DeclaredFentry => "declared-fentry",
            probe => probe.probe().map_or("", ProbeKind::name),
        }
    }

    /// The mode named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        ProbeRun::ALL.into_iter().find(|mode| mode.as_str() == name)
    }
}

impl fmt::Display for ProbeRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for mode in ProbeRun::ALL {
            assert_eq!(ProbeRun::from_name(mode.as_str()), Some(mode));
        }
        assert_eq!(ProbeRun::from_name("uprobe"), None);
    }
}
