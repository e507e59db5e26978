//! Checks, before touching the kernel, that kspan holds the capabilities it needs for the
//! chosen `--attach`, and names each missing one with what it is for.
//!
//! Measured (README, "Privileges"): without CAP_BPF map creation fails; without CAP_PERFMON
//! loading a kprobe, fentry or tracepoint program fails; a non-root user cannot open tracefs
//! (mode 0700, owned by root) without CAP_DAC_READ_SEARCH; and where `kernel.perf_event_paranoid`
//! is above 2 (Debian's default 3, a distribution patch), `perf_event_open`, which kprobes and
//! tracepoints are attached through, fails with EACCES without CAP_SYS_ADMIN (fentry needs no
//! perf event). Nothing else is needed: BPF memory has been charged to the memory cgroup, not
//! RLIMIT_MEMLOCK, since 5.11, and `/proc/<pid>/comm`, `/sys/kernel/btf/vmlinux` and the kprobe
//! PMU's sysfs files are world-readable.

use std::collections::HashSet;

use caps::{CapSet, Capability};
use kspan_common::{AttachMode, ProbeKind};

use crate::tracefs;

/// What the host says about kspan's needs, beyond the capabilities it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// tracefs is mounted but its files are closed to kspan's user, capabilities aside (it is
    /// root-only and kspan runs as another user).
    pub tracefs_denied: bool,
    /// The kernel charges BPF memory to RLIMIT_MEMLOCK (before 5.11) and the hard limit is
    /// finite, so kspan must raise it.
    pub memlock_limited: bool,
    /// `kernel.perf_event_paranoid` is above 2: distributions that patch this level in (Debian,
    /// Ubuntu) let only CAP_SYS_ADMIN open perf events.
    pub perf_events_restricted: bool,
    /// `/proc/kallsyms` shows function addresses only to CAP_SYSLOG (`kernel.kptr_restrict` 1,
    /// or 0 with `kernel.perf_event_paranoid` above 1); kprobes are told apart by them.
    pub addresses_need_syslog: bool,
}

impl Host {
    /// This host, as seen by this process.
    fn current() -> Self {
        Host {
            tracefs_denied: tracefs::access() == tracefs::Access::Denied,
            memlock_limited: memlock_limited(),
            perf_events_restricted: perf_event_paranoid().is_some_and(|level| level > 2),
            addresses_need_syslog: match kptr_restrict() {
                Some(0) => perf_event_paranoid().is_some_and(|level| level > 1),
                restrict => restrict == Some(1),
            },
        }
    }
}

/// One capability kspan lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missing {
    /// The capability.
    pub capability: Capability,
    /// What kspan needs it for.
    pub why: &'static str,
}

/// The capabilities kspan lacks to start with `mode` on `host` holding `held` (empty when it
/// can start). `auto` needs only what every probe needs: a probe whose own capability is
/// missing is refused by the fallback chain, which says why ([`require`]).
pub fn missing(mode: AttachMode, host: Host, held: &HashSet<Capability>) -> Vec<Missing> {
    let holds = |capability| held.contains(&capability);
    // CAP_SYS_ADMIN still grants what CAP_BPF and CAP_PERFMON were split from (Linux 5.8).
    let admin = holds(Capability::CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !admin && !holds(Capability::CAP_BPF) {
        missing.push(Missing {
            capability: Capability::CAP_BPF,
            why: "to create its eBPF maps and load its programs",
        });
    }
    if !admin && !holds(Capability::CAP_PERFMON) {
        missing.push(Missing {
            capability: Capability::CAP_PERFMON,
            why: "to load kprobe, fentry and tracepoint programs and attach them",
        });
    }
    // One probe asked for must be usable at start; `auto` leaves it to the fallback chain.
    if let [probe] = mode.candidates() {
        missing.extend(missing_for(*probe, host, held));
    }
    if host.memlock_limited && !holds(Capability::CAP_SYS_RESOURCE) {
        missing.push(Missing {
            capability: Capability::CAP_SYS_RESOURCE,
            why: "to raise RLIMIT_MEMLOCK, which kernels before 5.11 charge BPF maps to",
        });
    }
    missing
}

/// What one probe needs beyond CAP_BPF and CAP_PERFMON, and lacks.
pub fn missing_for(probe: ProbeKind, host: Host, held: &HashSet<Capability>) -> Vec<Missing> {
    let holds = |capability| held.contains(&capability);
    let mut missing = Vec::new();
    let opens_perf_events = matches!(probe, ProbeKind::Kprobe | ProbeKind::Tracepoint);
    if opens_perf_events && host.perf_events_restricted && !holds(Capability::CAP_SYS_ADMIN) {
        missing.push(Missing {
            capability: Capability::CAP_SYS_ADMIN,
            why: "to open perf events for kprobes and tracepoints while \
                  kernel.perf_event_paranoid is above 2; setting it to 2 also works, and \
                  fentry needs neither",
        });
    }
    if probe == ProbeKind::Kprobe && host.addresses_need_syslog && !holds(Capability::CAP_SYSLOG) {
        missing.push(Missing {
            capability: Capability::CAP_SYSLOG,
            why: "to read kernel function addresses in /proc/kallsyms, by which the kprobe \
                  programs tell the functions apart (fentry needs none)",
        });
    }
    // CAP_DAC_OVERRIDE also opens tracefs, but grants writing anywhere too: never asked for.
    if probe == ProbeKind::Tracepoint
        && host.tracefs_denied
        && !holds(Capability::CAP_DAC_READ_SEARCH)
        && !holds(Capability::CAP_DAC_OVERRIDE)
    {
        missing.push(Missing {
            capability: Capability::CAP_DAC_READ_SEARCH,
            why: "to read the tracepoint formats in tracefs, which only root may read",
        });
    }
    missing
}

/// Fails with one line naming each missing capability and why it is needed.
pub fn check(mode: AttachMode) -> anyhow::Result<()> {
    let held = caps::read(None, CapSet::Effective)?;
    let host = Host::current();
    let missing = missing(mode, host, &held);
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{}: run kspan as root, or grant it `setcap {}+ep <path to kspan>`",
        describe(&missing),
        grant(mode, host).join(",")
    )
}

/// Fails, naming what is missing, when `probe` needs a capability kspan lacks (the fallback
/// chain then moves on to the next probe).
pub fn require(probe: ProbeKind) -> anyhow::Result<()> {
    let held = caps::read(None, CapSet::Effective)?;
    let missing = missing_for(probe, Host::current(), &held);
    if missing.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", describe(&missing))
    }
}

/// `missing CAP_X (to ...) and CAP_Y (to ...)`.
fn describe(missing: &[Missing]) -> String {
    let lacks: Vec<String> = missing
        .iter()
        .map(|m| format!("{} ({})", m.capability, m.why))
        .collect();
    format!("missing {}", lacks.join(" and "))
}

/// The whole set to grant for `mode` on `host`, so that granting it once is enough.
fn grant(mode: AttachMode, host: Host) -> Vec<&'static str> {
    let perf_events = matches!(mode, AttachMode::Kprobe | AttachMode::Tracepoint);
    // CAP_SYS_ADMIN covers CAP_BPF and CAP_PERFMON.
    let mut grant = if perf_events && host.perf_events_restricted {
        vec!["cap_sys_admin"]
    } else {
        vec!["cap_bpf", "cap_perfmon"]
    };
    if host.tracefs_denied && mode.candidates().contains(&ProbeKind::Tracepoint) {
        grant.push("cap_dac_read_search");
    }
    if host.addresses_need_syslog && mode == AttachMode::Kprobe {
        grant.push("cap_syslog");
    }
    if host.memlock_limited {
        grant.push("cap_sys_resource");
    }
    grant
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; kspan raises the limit to infinity,
/// which needs CAP_SYS_RESOURCE unless the hard limit already is.
fn memlock_limited() -> bool {
    let charged = nix::sys::utsname::uname()
        .ok()
        .and_then(|uname| kernel_version(&uname.release().to_string_lossy()))
        .is_some_and(|version| version < (5, 11));
    let infinite = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
        .is_ok_and(|(_, hard)| hard == nix::sys::resource::RLIM_INFINITY);
    charged && !infinite
}

/// `kernel.perf_event_paranoid`, if readable.
fn perf_event_paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `kernel.kptr_restrict`, if readable.
fn kptr_restrict() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/kptr_restrict")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `(major, minor)` of a kernel release such as `6.1.0-28-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Capability::*;

    const ROOT_HOST: Host = Host {
        tracefs_denied: false,
        memlock_limited: false,
        perf_events_restricted: false,
        addresses_need_syslog: false,
    };
    const USER_HOST: Host = Host {
        tracefs_denied: true,
        ..ROOT_HOST
    };
    const DEBIAN_HOST: Host = Host {
        perf_events_restricted: true,
        ..ROOT_HOST
    };

    fn held(caps: &[Capability]) -> HashSet<Capability> {
        caps.iter().copied().collect()
    }

    fn lacks(mode: AttachMode, host: Host, caps: &[Capability]) -> Vec<Capability> {
        missing(mode, host, &held(caps))
            .into_iter()
            .map(|m| m.capability)
            .collect()
    }

    fn probe_lacks(probe: ProbeKind, host: Host, caps: &[Capability]) -> Vec<Capability> {
        missing_for(probe, host, &held(caps))
            .into_iter()
            .map(|m| m.capability)
            .collect()
    }

    #[test]
    fn every_mode_needs_bpf_and_perfmon() {
        for mode in [
            AttachMode::Auto,
            AttachMode::Kprobe,
            AttachMode::Fentry,
            AttachMode::Tracepoint,
        ] {
            assert_eq!(lacks(mode, ROOT_HOST, &[]), [CAP_BPF, CAP_PERFMON]);
            assert_eq!(lacks(mode, ROOT_HOST, &[CAP_BPF]), [CAP_PERFMON]);
            assert!(lacks(mode, ROOT_HOST, &[CAP_BPF, CAP_PERFMON]).is_empty());
            assert!(lacks(mode, DEBIAN_HOST, &[CAP_SYS_ADMIN]).is_empty());
        }
    }

    #[test]
    fn restricted_perf_events_need_sys_admin_for_kprobes_and_tracepoints() {
        let bpf_perfmon = [CAP_BPF, CAP_PERFMON];
        for mode in [AttachMode::Kprobe, AttachMode::Tracepoint] {
            assert_eq!(lacks(mode, DEBIAN_HOST, &bpf_perfmon), [CAP_SYS_ADMIN]);
        }
        assert!(lacks(AttachMode::Fentry, DEBIAN_HOST, &bpf_perfmon).is_empty());
        // auto starts without it and leaves kprobes and tracepoints to the fallback chain.
        assert!(lacks(AttachMode::Auto, DEBIAN_HOST, &bpf_perfmon).is_empty());
        for probe in [ProbeKind::Kprobe, ProbeKind::Tracepoint] {
            assert_eq!(
                probe_lacks(probe, DEBIAN_HOST, &bpf_perfmon),
                [CAP_SYS_ADMIN]
            );
            assert!(probe_lacks(probe, ROOT_HOST, &bpf_perfmon).is_empty());
        }
        assert!(probe_lacks(ProbeKind::Fentry, DEBIAN_HOST, &bpf_perfmon).is_empty());
    }

    #[test]
    fn hidden_function_addresses_need_syslog_for_kprobes_alone() {
        let hidden = Host {
            addresses_need_syslog: true,
            ..ROOT_HOST
        };
        let bpf_perfmon = [CAP_BPF, CAP_PERFMON];
        assert_eq!(
            lacks(AttachMode::Kprobe, hidden, &bpf_perfmon),
            [CAP_SYSLOG]
        );
        for mode in [AttachMode::Fentry, AttachMode::Tracepoint, AttachMode::Auto] {
            assert!(lacks(mode, hidden, &bpf_perfmon).is_empty(), "{mode:?}");
        }
        assert_eq!(
            probe_lacks(ProbeKind::Kprobe, hidden, &bpf_perfmon),
            [CAP_SYSLOG]
        );
        let with_syslog = [CAP_BPF, CAP_PERFMON, CAP_SYSLOG];
        assert!(lacks(AttachMode::Kprobe, hidden, &with_syslog).is_empty());
        assert!(grant(AttachMode::Kprobe, hidden).contains(&"cap_syslog"));
    }

    #[test]
    fn a_user_needs_tracefs_access_for_tracepoints() {
        assert_eq!(
            lacks(AttachMode::Tracepoint, USER_HOST, &[CAP_BPF, CAP_PERFMON]),
            [CAP_DAC_READ_SEARCH]
        );
        assert!(lacks(AttachMode::Fentry, USER_HOST, &[CAP_BPF, CAP_PERFMON]).is_empty());
        assert!(lacks(AttachMode::Auto, USER_HOST, &[CAP_BPF, CAP_PERFMON]).is_empty());
        assert_eq!(
            probe_lacks(ProbeKind::Tracepoint, USER_HOST, &[CAP_BPF, CAP_PERFMON]),
            [CAP_DAC_READ_SEARCH]
        );
        for dac in [CAP_DAC_READ_SEARCH, CAP_DAC_OVERRIDE] {
            assert!(probe_lacks(ProbeKind::Tracepoint, USER_HOST, &[dac]).is_empty());
        }
        assert!(probe_lacks(ProbeKind::Tracepoint, ROOT_HOST, &[]).is_empty());
    }

    #[test]
    fn old_kernels_need_to_raise_the_memlock_limit() {
        let old = Host {
            memlock_limited: true,
            ..ROOT_HOST
        };
        assert_eq!(
            lacks(AttachMode::Fentry, old, &[CAP_BPF, CAP_PERFMON]),
            [CAP_SYS_RESOURCE]
        );
    }

    #[test]
    fn the_message_names_each_missing_capability_and_the_whole_set_to_grant() {
        let missing = missing(AttachMode::Tracepoint, USER_HOST, &held(&[CAP_BPF]));
        let text = describe(&missing);
        assert_eq!(
            text,
            "missing CAP_PERFMON (to load kprobe, fentry and tracepoint programs and attach \
             them) and CAP_DAC_READ_SEARCH (to read the tracepoint formats in tracefs, which \
             only root may read)"
        );
        assert_eq!(
            grant(AttachMode::Auto, USER_HOST),
            ["cap_bpf", "cap_perfmon", "cap_dac_read_search"]
        );
        assert_eq!(
            grant(AttachMode::Fentry, USER_HOST),
            ["cap_bpf", "cap_perfmon"]
        );
        assert_eq!(
            grant(AttachMode::Kprobe, ROOT_HOST),
            ["cap_bpf", "cap_perfmon"]
        );
        assert_eq!(grant(AttachMode::Kprobe, DEBIAN_HOST), ["cap_sys_admin"]);
        assert_eq!(
            grant(AttachMode::Auto, DEBIAN_HOST),
            ["cap_bpf", "cap_perfmon"]
        );
    }

    #[test]
    fn kernel_versions_are_read_from_releases() {
        assert_eq!(kernel_version("6.1.0-28-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.10.226"), Some((5, 10)));
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("garbage"), None);
    }
}
