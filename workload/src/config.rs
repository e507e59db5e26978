//! What a run makes: the scenarios, their sizes and where the manifest goes.

use crate::scenario::Scenario;
use std::path::PathBuf;

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// Scenarios, run one after the other in this order.
    pub scenarios: Vec<Scenario>,
    /// Threads of the `threads` and `random` scenarios.
    pub threads: usize,
    /// Calls per thread for `threads`; calls in total for `random`.
    pub calls: u64,
    /// Seed of the `random` scenario.
    pub seed: u64,
    /// Calls per second (all threads together) for `random`; `None` runs flat out.
    pub rate: Option<f64>,
    /// Where to write the manifest; `None` writes none (only counters are kept).
    pub manifest: Option<PathBuf>,
    /// Where to write the manifest of calls of declared syscalls (the `open` scenario's);
    /// `None` writes none.
    pub declared_manifest: Option<PathBuf>,
    /// The kernel function every openat call of the open scenario runs inside it, recorded as
    /// the call's child (see [`crate::scenario::open`]).
    pub openat_inner: Option<String>,
    /// Each open of the open scenario made again through openat2 and recorded as an openat2
    /// call (see [`crate::scenario::open`]).
    pub openat2: bool,
    /// Calls to hold inside the kernel across the run's gate, before the scenarios.
    pub midflight: Option<HeldCalls>,
}

/// Calls held inside the kernel while the run waits for its gate (see [`crate::midflight`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HeldCalls {
    /// How many, one thread each.
    pub calls: usize,
    /// Created once every one of them is inside the kernel.
    pub held_file: PathBuf,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            scenarios: Scenario::DEFAULT.to_vec(),
            threads: 4,
            calls: 50,
            seed: 1,
            rate: None,
            manifest: None,
            declared_manifest: None,
            openat_inner: None,
            openat2: false,
            midflight: None,
        }
    }
}
