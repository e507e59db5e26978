//! The embedded eBPF object: loading it with kspan's settings, filters, and kernel counters.

use std::{
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use aya::{
    maps::{Array, CgroupArray, HashMap, MapData, PerCpuArray},
    Ebpf, EbpfLoader,
};
use kspan_common::{
    declared::{
        DeclaredProbe, DECLARED_COUNTERS_MAP, DECLARED_MAP, DECLARED_SYSCALLS_MAP, SYSCALL_SLOTS,
    },
    Counter, ProbeConfig, CGROUP_FILTER_MAP, COMM_FILTER_MAP, COMM_LEN, CONFIG_GLOBAL, CONTROL_MAP,
    CONTROL_STOPPING, EVENTS_MAP, PID_FILTER_MAP,
};

use crate::{
    attach::Programs,
    btf::{Btf, VMLINUX_BTF},
};
use kspan_otel::counters::KernelCounters;

/// The probes, compiled by build.rs.
static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kspan-probes"));
/// The empty programs the bench attaches as the overhead floor, in an object of their own.
static FLOOR: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kspan-floor"));

/// The embedded object that holds `programs`.
pub fn object_bytes(programs: Programs) -> &'static [u8] {
    match programs {
        Programs::Capture => PROBES,
        Programs::Floor => FLOOR,
    }
}

/// Loads the floor object (its programs are loaded at attach time).
pub fn open_floor() -> anyhow::Result<Ebpf> {
    EbpfLoader::new()
        .load(object_bytes(Programs::Floor))
        .context("loading the floor programs' object")
}

/// Filters applied in the kernel; empty lists mean "everything".
#[derive(Debug, Default)]
pub struct Filters {
    /// Process ids (tgid).
    pub pids: Vec<u32>,
    /// Thread names.
    pub comms: Vec<String>,
    /// cgroup directories: their tasks and their descendants' are captured; `None`: no cgroup
    /// filter (`Some` of none captures nothing).
    pub cgroups: Option<Vec<PathBuf>>,
}

/// Parses the embedded object with the given settings (programs are loaded at attach time).
pub fn open(filters: &Filters, ring_buffer_bytes: u32) -> anyhow::Result<Ebpf> {
    let task = Btf::read(Path::new(VMLINUX_BTF))
        .and_then(|btf| btf.task_layout())
        .context(
            "kspan needs the kernel's type information (a kernel built with CONFIG_DEBUG_INFO_BTF)",
        )?;
    let config = ProbeConfig {
        filter_pid: u8::from(!filters.pids.is_empty()),
        filter_comm: u8::from(!filters.comms.is_empty()),
        filter_cgroup: u8::from(filters.cgroups.is_some()),
        // The selection is checked against the capacity, which fits a u8.
        cgroup_slots: filters.cgroups.as_ref().map_or(0, Vec::len) as u8,
        task,
    };
    let mut ebpf = EbpfLoader::new()
        .override_global(CONFIG_GLOBAL, &config, true)
        // aya has no user-space type for task storage (PENDING); only the probes use it.
        .allow_unsupported_maps()
        .map_max_entries(EVENTS_MAP, ring_buffer_bytes)
        .load(object_bytes(Programs::Capture))
        .context(
            "loading the eBPF maps (kspan needs Linux 5.11 or newer, built with CONFIG_BPF_SYSCALL, \
             for the ring buffer and task storage)",
        )?;
    let mut pid_filter: HashMap<_, u32, u8> = HashMap::try_from(
        ebpf.map_mut(PID_FILTER_MAP)
            .context("PID_FILTER map missing")?,
    )?;
    for pid in &filters.pids {
        pid_filter
            .insert(pid, 1, 0)
            .with_context(|| format!("adding pid {pid} to the filter"))?;
    }
    let mut comm_filter: HashMap<_, [u8; COMM_LEN], u8> = HashMap::try_from(
        ebpf.map_mut(COMM_FILTER_MAP)
            .context("COMM_FILTER map missing")?,
    )?;
    for comm in &filters.comms {
        comm_filter
            .insert(comm_key(comm), 1, 0)
            .with_context(|| format!("adding thread name {comm} to the filter"))?;
    }
    let mut cgroup_filter = CgroupArray::try_from(
        ebpf.map_mut(CGROUP_FILTER_MAP)
            .context("CGROUP_FILTER map missing")?,
    )?;
    for (slot, dir) in filters.cgroups.iter().flatten().enumerate() {
        // The map holds the cgroup itself: the directory may close (or go) afterwards.
        let cgroup = std::fs::File::open(dir)
            .with_context(|| format!("opening cgroup {}", dir.display()))?;
        cgroup_filter
            .set(slot as u32, cgroup.as_fd(), 0)
            .with_context(|| format!("adding cgroup {} to the filter", dir.display()))?;
    }
    Ok(ebpf)
}

/// A thread name as the kernel stores it: at most 15 bytes and a NUL.
fn comm_key(comm: &str) -> [u8; COMM_LEN] {
    let mut key = [0; COMM_LEN];
    let len = comm.len().min(COMM_LEN - 1);
    key[..len].copy_from_slice(&comm.as_bytes()[..len]);
    key
}

/// The counters map, read after the programs are gone.
pub struct CounterMaps {
    /// Every probe's counters, and the probes' names by number.
    per_probe: PerCpuArray<MapData, u64>,
    probe_names: Vec<String>,
}

impl CounterMaps {
    /// Takes the counters map out of the object, so it outlives its programs.
    pub fn take(ebpf: &mut Ebpf, probe_names: Vec<String>) -> anyhow::Result<Self> {
        let map = ebpf
            .take_map(DECLARED_COUNTERS_MAP)
            .with_context(|| format!("{DECLARED_COUNTERS_MAP} map missing"))?;
        Ok(Self {
            per_probe: PerCpuArray::try_from(map)?,
            probe_names,
        })
    }

    /// Every probe's counters added up ([`KernelCounters::in_flight`] follows from a whole
    /// snapshot).
    pub fn read(&self) -> anyhow::Result<KernelCounters> {
        let mut total = KernelCounters::default();
        for (_, counters) in self.per_probe()? {
            add(&mut total, counters);
        }
        Ok(total)
    }

    /// Each probe's counters, by name (the built-in probe's hooks are several probes of one
    /// name: their counts add up).
    pub fn per_probe(&self) -> anyhow::Result<Vec<(&str, KernelCounters)>> {
        let mut per_probe: Vec<(&str, KernelCounters)> = Vec::new();
        for (probe, name) in self.probe_names.iter().enumerate() {
            let counters = counters_at(&self.per_probe, probe as u32 * Counter::SLOTS)?;
            match per_probe.iter_mut().find(|(named, _)| *named == name) {
                Some((_, total)) => add(total, counters),
                None => per_probe.push((name, counters)),
            }
        }
        Ok(per_probe)
    }
}

/// Adds `more` into `total`.
fn add(total: &mut KernelCounters, more: KernelCounters) {
    total.entries += more.entries;
    total.ring_buffer_full += more.ring_buffer_full;
    total.stale_entries += more.stale_entries;
    total.returns_without_entry += more.returns_without_entry;
    total.entries_not_stored += more.entries_not_stored;
}

/// The counters in `map`'s slots from `base`, summed over CPUs.
fn counters_at(map: &PerCpuArray<MapData, u64>, base: u32) -> anyhow::Result<KernelCounters> {
    {
        let total = |counter: Counter| -> anyhow::Result<u64> {
            let values = map.get(&(base + counter as u32), 0)?;
            Ok(values.iter().sum())
        };
        Ok(KernelCounters {
            entries: total(Counter::Entries)?,
            ring_buffer_full: total(Counter::RingBufferFull)?,
            stale_entries: total(Counter::StaleEntry)?,
            returns_without_entry: total(Counter::ReturnWithoutEntry)?,
            entries_not_stored: total(Counter::EntryNotStored)?,
            in_flight: 0,
        })
    }
}

/// Tells the probes to record no new entry, for every syscall at once, before they are
/// detached one by one.
pub fn stop_new_entries(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let mut control: Array<_, u32> =
        Array::try_from(ebpf.map_mut(CONTROL_MAP).context("CONTROL map missing")?)?;
    control
        .set(CONTROL_STOPPING, 1, 0)
        .context("setting the stop flag")?;
    Ok(())
}

/// Tells the tracepoint programs what to capture for syscall `number`.
pub fn declare_syscall(ebpf: &mut Ebpf, number: u32, spec: DeclaredProbe) -> anyhow::Result<()> {
    let mut syscalls: Array<_, DeclaredProbe> = Array::try_from(
        ebpf.map_mut(DECLARED_SYSCALLS_MAP)
            .context("DECLARED_SYSCALLS map missing")?,
    )?;
    if number >= SYSCALL_SLOTS {
        anyhow::bail!("syscall number {number} is past kspan's {SYSCALL_SLOTS} slots");
    }
    Ok(syscalls.set(number, spec.summarized(), 0)?)
}

/// Tells the kernel-function programs what to capture for the function found by `key`
/// ([`kspan_common::declared::function_key`] or `fentry_key`); `None` takes it back.
pub fn declare_function(
    ebpf: &mut Ebpf,
    key: u64,
    spec: Option<DeclaredProbe>,
) -> anyhow::Result<()> {
    let mut functions: HashMap<_, u64, DeclaredProbe> =
        HashMap::try_from(ebpf.map_mut(DECLARED_MAP).context("DECLARED map missing")?)?;
    match spec {
        Some(spec) => functions.insert(key, spec.summarized(), 0)?,
        None => functions.remove(&key)?,
    }
    Ok(())
}

/// Takes the ring buffer of complete calls.
pub fn take_events(ebpf: &mut Ebpf) -> anyhow::Result<aya::maps::RingBuf<MapData>> {
    let map = ebpf.take_map(EVENTS_MAP).context("EVENTS map missing")?;
    Ok(aya::maps::RingBuf::try_from(map)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_keys_are_nul_padded_and_truncated() {
        assert_eq!(&comm_key("ab")[..3], b"ab\0");
        let long = comm_key("0123456789abcdefXYZ");
        assert_eq!(&long[..15], b"0123456789abcde");
        assert_eq!(long[15], 0);
    }
}
