//! In-kernel run time of a tracer's BPF programs, per program and per traced call, with the
//! kernel's run-time statistics on (`BPF_ENABLE_STATS`): what kspan's probes cost inside the
//! kernel beside the empty floor's and bpftrace's, so the kernel and agent shares are visible.

use std::{collections::BTreeMap, os::fd::OwnedFd};

use anyhow::Context as _;
use aya::{
    programs::loaded_programs,
    sys::{enable_stats, Stats},
};

/// The kernel's run-time statistics, on while this lives (they cost every program run two
/// clock reads, so the timed rounds run without them).
pub struct RunTimeStats {
    _enabled: OwnedFd,
}

impl RunTimeStats {
    /// Turns them on.
    pub fn enable() -> anyhow::Result<Self> {
        let enabled = enable_stats(Stats::RunTime)
            .context("turning on BPF run-time statistics (BPF_ENABLE_STATS, Linux 5.8)")?;
        Ok(Self { _enabled: enabled })
    }
}

/// One program's runs over one run of the bench loop.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProgramTime {
    /// The program's name as the kernel keeps it (at most 15 bytes: programs whose names share
    /// their first 15 bytes are summed under one).
    pub program: String,
    /// Times it ran.
    pub runs: u64,
    /// Its total run time.
    pub run_time_ns: u64,
}

/// The run counts and times of the programs process `pid` holds (ids from its fds' fdinfo,
/// names and figures from the kernel's program info), programs that never ran left out.
pub fn program_times(pid: u32) -> anyhow::Result<Vec<ProgramTime>> {
    let held = crate::run::bpf_program_ids(pid)?;
    let mut by_name: BTreeMap<String, ProgramTime> = BTreeMap::new();
    for info in loaded_programs() {
        let info = info.context("reading the loaded BPF programs")?;
        if !held.contains(&info.id()) || info.run_count() == 0 {
            continue;
        }
        let name = info.name_as_str().unwrap_or("?").to_string();
        let entry = by_name.entry(name.clone()).or_insert(ProgramTime {
            program: name,
            runs: 0,
            run_time_ns: 0,
        });
        entry.runs += info.run_count();
        entry.run_time_ns += info.run_time().as_nanos() as u64;
    }
    Ok(by_name.into_values().collect())
}
