//! Checks, before touching the kernel, that kspan holds the capabilities BPF tracing needs.

use caps::{CapSet, Capability};

/// Loading programs and maps needs CAP_BPF; kprobes, fentry and tracepoints also need
/// CAP_PERFMON. CAP_SYS_ADMIN grants both (and is the only way on kernels before 5.8).
const NEEDED: [Capability; 2] = [Capability::CAP_BPF, Capability::CAP_PERFMON];

/// The capabilities kspan lacks, empty when it can run.
pub fn missing_capabilities() -> Result<Vec<Capability>, caps::errors::CapsError> {
    let effective = caps::read(None, CapSet::Effective)?;
    if effective.contains(&Capability::CAP_SYS_ADMIN) {
        return Ok(Vec::new());
    }
    Ok(NEEDED
        .into_iter()
        .filter(|cap| !effective.contains(cap))
        .collect())
}

/// Fails with a one-line explanation when capabilities are missing.
pub fn check() -> anyhow::Result<()> {
    let missing = missing_capabilities()?;
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
    anyhow::bail!(
        "kspan needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) and lacks {}: run it as root, or grant them with `setcap cap_bpf,cap_perfmon,cap_dac_read_search+ep <path to kspan>`",
        names.join(" and ")
    )
}
