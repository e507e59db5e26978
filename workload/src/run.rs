//! A whole run: the chosen scenarios in order, one recorder, one summary.

use crate::call::Caller;
use crate::config::RunConfig;
use crate::error::WorkloadError;
use crate::manifest::ManifestWriter;
use crate::midflight;
use crate::record::{Recorder, RunSummary};
use crate::scenario::{errors, flags, identity, masks, open, random, threads, update, Scenario};
use std::time::Instant;

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
    let create =
        |path: &Option<std::path::PathBuf>| path.as_deref().map(ManifestWriter::create).transpose();
    let recorder =
        Recorder::new(create(&config.manifest)?).with_declared(create(&config.declared_manifest)?);
    match &config.midflight {
        Some(held) => midflight::run(&recorder, held.calls, Some(&held.held_file), gate)?,
        None => gate()?,
    }
    let start = Instant::now();
    for scenario in &config.scenarios {
        tracing::debug!(scenario = scenario.name(), "scenario starts");
        run_scenario(*scenario, &recorder, config)?;
    }
    Ok(recorder.finish(start.elapsed())?)
}

/// Makes one scenario's calls.
fn run_scenario(
    scenario: Scenario,
    recorder: &Recorder,
    config: &RunConfig,
) -> Result<(), WorkloadError> {
    match scenario {
        Scenario::Masks => masks::run(&Caller::new(recorder, scenario))?,
        Scenario::Flags => flags::run(&Caller::new(recorder, scenario))?,
        Scenario::Update => update::run(&Caller::new(recorder, scenario))?,
        Scenario::Errors => errors::run(&Caller::new(recorder, scenario))?,
        Scenario::Threads => threads::run(recorder, config.threads, config.calls)?,
        Scenario::Random => random::run(recorder, config)?,
        Scenario::Identity => identity::run(recorder)?,
        Scenario::Open => open::run(
            recorder,
            config.threads,
            config.calls,
            open::Extras {
                inner: config.openat_inner.as_deref(),
                openat2: config.openat2,
            },
        )?,
        Scenario::MidFlight => midflight::run(recorder, config.threads, None, || Ok(()))?,
    }
    Ok(())
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
        // masks 12 + flags 5 + update 8 + errors 17 + threads 4x50 + random 50 + identity 2
        assert_eq!(summary.calls, 294);
        let records = read_manifest(path.as_ref()).expect("read");
        assert_eq!(records.len(), 294);
        let line = summary.to_string();
        assert!(line.starts_with("calls=294 ok="), "{line}");
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
