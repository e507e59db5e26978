//! A whole run: the chosen scenarios in order, one recorder, one summary.

use crate::manifest::{ManifestError, ManifestWriter};
use crate::record::{Recorder, RunSummary};
use crate::scenario::Scenario;
use nix::errno::Errno;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
            midflight: None,
        }
    }
}

/// Why a run could not be carried out (unexpected kernel answers are not errors: they are in
/// the summary).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The manifest could not be written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A resource a scenario needs could not be made.
    #[error("cannot {what}: {source}")]
    Setup {
        /// What was being made.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A scenario thread could not be started.
    #[error("cannot start a thread for scenario {scenario}: {source}")]
    Spawn {
        /// The scenario.
        scenario: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A scenario thread panicked.
    #[error("a thread of scenario {scenario} panicked")]
    Panicked {
        /// The scenario.
        scenario: &'static str,
    },
    /// The ready file did not appear in time.
    #[error("{} did not appear within {:.3} s: is the agent running and writing its ready file there?", path.display(), timeout.as_secs_f64())]
    WaitTimeout {
        /// The awaited path.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// A benchmark call failed.
    #[error("bench: {failed} of {calls} signalfd4 calls failed (first: {first})")]
    BenchFailed {
        /// Failed calls.
        failed: u64,
        /// Calls made.
        calls: u64,
        /// The first failure's errno.
        first: Errno,
    },
}

/// Runs the configured scenarios and sums them up.
pub fn run(config: &RunConfig) -> Result<RunSummary, WorkloadError> {
    run_gated(config, || Ok(()))
}

/// Runs the configured scenarios once `gate` returns (e.g. the agent's ready file exists); held
/// calls, if any, are inside the kernel before the gate is awaited and finish after it opens.
pub fn run_gated(
    config: &RunConfig,
    gate: impl FnOnce() -> Result<(), WorkloadError>,
) -> Result<RunSummary, WorkloadError> {
    let writer = config
        .manifest
        .as_deref()
        .map(ManifestWriter::create)
        .transpose()?;
    let recorder = Recorder::new(writer);
    match &config.midflight {
        Some(held) => crate::midflight::run(&recorder, held.calls, Some(&held.held_file), gate)?,
        None => gate()?,
    }
    let start = Instant::now();
    for scenario in &config.scenarios {
        tracing::debug!(scenario = scenario.name(), "scenario starts");
        scenario.run(&recorder, config)?;
    }
    Ok(recorder.finish(start.elapsed())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::read_manifest;
    use crate::test_support::TempPath;

    #[test]
    fn the_default_run_is_all_as_expected() {
        let path = TempPath::new("default");
        let config = RunConfig {
            manifest: Some(path.as_ref().to_path_buf()),
            ..RunConfig::default()
        };
        let summary = run(&config).expect("run");
        assert!(summary.all_as_expected(), "{:#?}", summary.problems);
        // masks 12 + flags 5 + update 8 + errors 17 + threads 4x50 + random 50
        assert_eq!(summary.calls, 292);
        let records = read_manifest(path.as_ref()).expect("read");
        assert_eq!(records.len(), 292);
        let line = summary.to_string();
        assert!(line.starts_with("calls=292 ok="), "{line}");
        assert!(
            line.contains(&path.as_ref().display().to_string()),
            "{line}"
        );
    }

    #[test]
    fn without_a_manifest_only_counts_are_kept() {
        let config = RunConfig {
            scenarios: vec![Scenario::Random],
            threads: 2,
            calls: 200,
            ..RunConfig::default()
        };
        let summary = run(&config).expect("run");
        assert_eq!((summary.calls, &summary.manifest), (200, &None));
        assert!(summary.to_string().ends_with("manifest=none"));
    }
}
