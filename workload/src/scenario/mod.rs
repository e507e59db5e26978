//! The named scenarios: each a small module that makes its calls through a [`Caller`]; the run
//! picks them by [`Scenario`].
//!
//! [`Caller`]: crate::call::Caller

pub(crate) mod errors;
pub(crate) mod flags;
pub(crate) mod identity;
pub(crate) mod masks;
pub(crate) mod open;
pub mod random;
pub(crate) mod threads;
pub(crate) mod update;

use crate::error::WorkloadError;

/// A named group of calls (the CLI's `--scenario` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Scenario {
    /// Creates with varied masks: empty, one, many, all standard, real-time, SIGKILL/SIGSTOP.
    Masks,
    /// Creates with each valid flag combination.
    Flags,
    /// Creates, then updates the same fd through both syscalls.
    Update,
    /// Calls the kernel rejects: EBADF, EINVAL (not a signalfd, bad flags, bad sizemask), EFAULT.
    Errors,
    /// `--threads` threads, each `--calls` create/update/close cycles with its own masks.
    Threads,
    /// A seeded random mix of all of the above, `--calls` in total over `--threads` threads.
    Random,
    /// A create and an update from a thread whose effective uid is `nobody`'s while its real
    /// uid stays root's (as root; other users make them with their own ids).
    Identity,
    /// `--threads` threads released together, each making `--calls` openat calls (not
    /// signalfd: recorded in the declared manifest) that open, create and fail in every way
    /// `kspan --probe syscall:openat` must show. Not in the default set.
    Open,
    /// `--threads` calls held inside the kernel on a faulting mask page, then let go, each
    /// followed by an update on its thread. Not listed: `--midflight` runs it before the others,
    /// holding the calls across the agent's start.
    #[value(skip)]
    MidFlight,
}

impl Scenario {
    /// The scenarios a run makes when none are named, in this order.
    pub const DEFAULT: [Scenario; 7] = [
        Scenario::Masks,
        Scenario::Flags,
        Scenario::Update,
        Scenario::Errors,
        Scenario::Threads,
        Scenario::Random,
        Scenario::Identity,
    ];

    /// The scenario's name, as on the CLI and in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Masks => "masks",
            Scenario::Flags => "flags",
            Scenario::Update => "update",
            Scenario::Errors => "errors",
            Scenario::Threads => "threads",
            Scenario::Random => "random",
            Scenario::Identity => "identity",
            Scenario::Open => "open",
            Scenario::MidFlight => "midflight",
        }
    }
}

/// Runs `work(index)` on `count` threads and waits for all; returns the first error.
fn on_threads<F>(scenario: Scenario, count: usize, work: F) -> Result<(), WorkloadError>
where
    F: Fn(usize) -> Result<(), WorkloadError> + Sync,
{
    std::thread::scope(|scope| {
        let work = &work;
        let mut handles = Vec::with_capacity(count);
        for index in 0..count {
            let handle = std::thread::Builder::new()
                .name(format!("{}-{index}", scenario.name()))
                .spawn_scoped(scope, move || work(index))
                .map_err(|source| WorkloadError::Spawn {
                    scenario: scenario.name(),
                    source,
                })?;
            handles.push(handle);
        }
        let mut first_error = None;
        for handle in handles {
            let outcome = handle.join().unwrap_or_else(|_| {
                Err(WorkloadError::Panicked {
                    scenario: scenario.name(),
                })
            });
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::manifest::{read_manifest, CallRecord};
    use crate::record::RunSummary;
    use crate::test_support::TempPath;

    /// Runs one scenario in-process with a manifest; returns the summary and the records in
    /// call order, after checking what holds for every run.
    pub(crate) fn run_scenario(
        scenario: Scenario,
        threads: usize,
        calls: u64,
        seed: u64,
    ) -> (RunSummary, Vec<CallRecord>) {
        let path = TempPath::new(scenario.name());
        let config = RunConfig {
            scenarios: vec![scenario],
            threads,
            calls,
            seed,
            rate: None,
            manifest: Some(path.as_ref().to_path_buf()),
            declared_manifest: None,
            ..RunConfig::default()
        };
        let summary = crate::run(&config).expect("run");
        let mut records = read_manifest(path.as_ref()).expect("read manifest");
        records.sort_by_key(|r| r.seq);
        assert!(
            summary.all_as_expected(),
            "unexpected answers: {:#?}",
            summary.problems
        );
        assert_eq!(summary.calls as usize, records.len());
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..records.len() as u64).collect::<Vec<_>>());
        for r in &records {
            assert_eq!(r.scenario, scenario.name());
            assert_eq!(r.pid, std::process::id());
            assert!(r.wall_before_ns <= r.wall_after_ns, "{r:?}");
            assert!(r.fd.is_some() != r.errno.is_some(), "{r:?}");
            assert_eq!(r.errno.is_some(), r.errno_name.is_some(), "{r:?}");
        }
        (summary, records)
    }

    /// The errno name of a record, or "ok".
    pub(crate) fn outcome(r: &CallRecord) -> &str {
        r.errno_name.as_deref().unwrap_or("ok")
    }
}
