//! Checks, before touching the kernel, that kspan holds the capabilities it needs for the
//! chosen `--attach`, and names each missing one with what it is for.
//!
//! Measured on Linux 6.18 (README, "Privileges"): without CAP_BPF map creation fails, without
//! CAP_PERFMON loading a tracing program fails, and a non-root user cannot open tracefs (mode
//! 0700, owned by root) without CAP_DAC_READ_SEARCH. Nothing else is needed: BPF memory has
//! been charged to the memory cgroup, not RLIMIT_MEMLOCK, since 5.11, and `/proc/<pid>/comm`,
//! `/sys/kernel/btf/vmlinux` and the kprobe PMU's sysfs files are world-readable.

use std::collections::HashSet;

use caps::{CapSet, Capability};

use crate::{
    attach::{AttachMode, ProbeMode},
    tracefs,
};

/// What the host says about kspan's needs, beyond the capabilities it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// tracefs is mounted but its files are closed to kspan's user, capabilities aside (it is
    /// root-only and kspan runs as another user).
    pub tracefs_denied: bool,
    /// The kernel charges BPF memory to RLIMIT_MEMLOCK (before 5.11) and the hard limit is
    /// finite, so kspan must raise it.
    pub memlock_limited: bool,
}

/// One capability kspan lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missing {
    /// The capability.
    pub capability: Capability,
    /// What kspan needs it for.
    pub why: &'static str,
}

/// The capabilities kspan lacks to run `mode` on `host` holding `held` (empty when it can run).
/// `auto` needs what each of its fallbacks needs, so that it can fall back.
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
            why: "to load tracing programs and attach them to kprobes, fentry and tracepoints",
        });
    }
    let wants_tracefs = mode.candidates().contains(&ProbeMode::Tracepoint);
    // CAP_DAC_OVERRIDE also opens tracefs, but grants writing anywhere too: never asked for.
    if wants_tracefs
        && host.tracefs_denied
        && !holds(Capability::CAP_DAC_READ_SEARCH)
        && !holds(Capability::CAP_DAC_OVERRIDE)
    {
        missing.push(Missing {
            capability: Capability::CAP_DAC_READ_SEARCH,
            why: "to read the tracepoint formats in tracefs, which only root may read",
        });
    }
    if host.memlock_limited && !holds(Capability::CAP_SYS_RESOURCE) {
        missing.push(Missing {
            capability: Capability::CAP_SYS_RESOURCE,
            why: "to raise RLIMIT_MEMLOCK, which kernels before 5.11 charge BPF maps to",
        });
    }
    missing
}

/// Fails with one line naming each missing capability and why it is needed.
pub fn check(mode: AttachMode) -> anyhow::Result<()> {
    let held = caps::read(None, CapSet::Effective)?;
    let host = Host {
        tracefs_denied: tracefs::access() == tracefs::Access::Denied,
        memlock_limited: memlock_limited(),
    };
    let missing = missing(mode, host, &held);
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!("{}", explain(&missing, host))
}

/// `missing CAP_X (to ...) and CAP_Y (to ...): run kspan as root, or grant it ...`.
fn explain(missing: &[Missing], host: Host) -> String {
    let lacks: Vec<String> = missing
        .iter()
        .map(|m| format!("{} ({})", m.capability, m.why))
        .collect();
    // The whole set for this host, so that granting it once is enough.
    let mut grant = vec!["cap_bpf", "cap_perfmon"];
    if host.tracefs_denied {
        grant.push("cap_dac_read_search");
    }
    if host.memlock_limited {
        grant.push("cap_sys_resource");
    }
    format!(
        "missing {}: run kspan as root, or grant it `setcap {}+ep <path to kspan>`",
        lacks.join(" and "),
        grant.join(",")
    )
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
    };
    const USER_HOST: Host = Host {
        tracefs_denied: true,
        memlock_limited: false,
    };

    fn lacks(mode: AttachMode, host: Host, held: &[Capability]) -> Vec<Capability> {
        let held = held.iter().copied().collect();
        missing(mode, host, &held)
            .into_iter()
            .map(|m| m.capability)
            .collect()
    }

    #[test]
    fn root_needs_bpf_and_perfmon() {
        assert_eq!(
            lacks(AttachMode::Auto, ROOT_HOST, &[]),
            [CAP_BPF, CAP_PERFMON]
        );
        assert_eq!(
            lacks(AttachMode::Auto, ROOT_HOST, &[CAP_BPF]),
            [CAP_PERFMON]
        );
        assert!(lacks(AttachMode::Tracepoint, ROOT_HOST, &[CAP_BPF, CAP_PERFMON]).is_empty());
        assert!(lacks(AttachMode::Auto, ROOT_HOST, &[CAP_SYS_ADMIN]).is_empty());
    }

    #[test]
    fn a_user_needs_tracefs_access_only_where_tracepoints_may_be_used() {
        assert_eq!(
            lacks(AttachMode::Auto, USER_HOST, &[CAP_BPF, CAP_PERFMON]),
            [CAP_DAC_READ_SEARCH]
        );
        assert_eq!(
            lacks(AttachMode::Tracepoint, USER_HOST, &[CAP_BPF, CAP_PERFMON]),
            [CAP_DAC_READ_SEARCH]
        );
        for mode in [AttachMode::Kprobe, AttachMode::Fentry] {
            assert!(lacks(mode, USER_HOST, &[CAP_BPF, CAP_PERFMON]).is_empty());
        }
        assert!(lacks(
            AttachMode::Auto,
            USER_HOST,
            &[CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH]
        )
        .is_empty());
        assert!(lacks(
            AttachMode::Auto,
            USER_HOST,
            &[CAP_BPF, CAP_PERFMON, CAP_DAC_OVERRIDE]
        )
        .is_empty());
    }

    #[test]
    fn old_kernels_need_to_raise_the_memlock_limit() {
        let old = Host {
            memlock_limited: true,
            ..ROOT_HOST
        };
        assert_eq!(
            lacks(AttachMode::Kprobe, old, &[CAP_BPF, CAP_PERFMON]),
            [CAP_SYS_RESOURCE]
        );
    }

    #[test]
    fn the_message_names_each_missing_capability_and_the_whole_set_to_grant() {
        let held = [CAP_BPF].into_iter().collect();
        let text = explain(&missing(AttachMode::Auto, USER_HOST, &held), USER_HOST);
        assert_eq!(
            text,
            "missing CAP_PERFMON (to load tracing programs and attach them to kprobes, \
             fentry and tracepoints) and CAP_DAC_READ_SEARCH (to read the tracepoint formats \
             in tracefs, which only root may read): run kspan as root, or grant it \
             `setcap cap_bpf,cap_perfmon,cap_dac_read_search+ep <path to kspan>`"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn kernel_versions_are_read_from_releases() {
        assert_eq!(kernel_version("6.1.0-28-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.10.226"), Some((5, 10)));
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("garbage"), None);
    }
}
