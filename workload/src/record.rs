//! The run-wide [`Recorder`]: hands out sequence numbers, streams records to the manifest and
//! keeps only counters and the first few problems, so memory stays flat however many calls run.

use crate::manifest::declared::DeclaredCall;
use crate::manifest::{CallRecord, ManifestError, ManifestWriter};
use crate::scenario::Scenario;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How many problems are kept for the report; the rest are only counted.
const KEPT_PROBLEMS: usize = 20;

/// A call whose answer was not the expected one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The call's sequence number.
    pub seq: u64,
    /// The scenario that made it.
    pub scenario: Scenario,
    /// The call and what went wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "call {} ({}): {}",
            self.seq,
            self.scenario.name(),
            self.message
        )
    }
}

#[derive(Default)]
struct Problems {
    count: u64,
    kept: Vec<Problem>,
}

/// Shared by all threads of a run.
pub struct Recorder {
    next_seq: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    manifest: Option<ManifestWriter>,
    declared: Option<ManifestWriter>,
    problems: Mutex<Problems>,
}

impl Recorder {
    /// A recorder writing to `manifest`, if given.
    pub fn new(manifest: Option<ManifestWriter>) -> Self {
        Self {
            next_seq: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            manifest,
            declared: None,
            problems: Mutex::new(Problems::default()),
        }
    }

    /// The same recorder, writing calls of declared syscalls to `declared`, if given.
    pub fn with_declared(self, declared: Option<ManifestWriter>) -> Self {
        Self { declared, ..self }
    }

    /// The next sequence number (take it just before making the call).
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts and writes one record; `problem` says what was unexpected about it, if anything.
    pub fn record(
        &self,
        record: &CallRecord,
        scenario: Scenario,
        problem: Option<String>,
    ) -> Result<(), ManifestError> {
        self.count(record.seq, record.fd.is_some(), scenario, problem);
        match &self.manifest {
            Some(writer) => writer.append(record),
            None => Ok(()),
        }
    }

    /// Counts and writes one call of a declared syscall to the declared manifest, as
    /// [`Recorder::record`] does.
    pub fn record_declared(
        &self,
        record: &DeclaredCall,
        scenario: Scenario,
        problem: Option<String>,
    ) -> Result<(), ManifestError> {
        self.count(record.seq, !record.failed(), scenario, problem);
        match &self.declared {
            Some(writer) => writer.append(record),
            None => Ok(()),
        }
    }

    /// Records a call the kernel made inside a recorded call (a kernel function a syscall
    /// runs): written to the declared manifest, not counted, as the workload did not make it.
    pub fn record_inner(&self, record: &DeclaredCall) -> Result<(), ManifestError> {
        match &self.declared {
            Some(writer) => writer.append(record),
            None => Ok(()),
        }
    }

    fn count(&self, seq: u64, ok: bool, scenario: Scenario, problem: Option<String>) {
        let counter = if ok { &self.ok } else { &self.errors };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(message) = problem {
            tracing::warn!(seq, scenario = scenario.name(), %message, "unexpected answer");
            let mut problems = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
            problems.count += 1;
            if problems.kept.len() < KEPT_PROBLEMS {
                problems.kept.push(Problem {
                    seq,
                    scenario,
                    message,
                });
            }
        }
    }

    /// Flushes the manifest and sums the run up.
    pub fn finish(self, elapsed: Duration) -> Result<RunSummary, ManifestError> {
        for writer in [&self.manifest, &self.declared].into_iter().flatten() {
            writer.flush()?;
        }
        let ok = self.ok.into_inner();
        let errors = self.errors.into_inner();
        let problems = self
            .problems
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let mut kept = problems.kept;
        kept.sort_by_key(|p| p.seq);
        Ok(RunSummary {
            calls: ok + errors,
            ok,
            errors,
            unexpected: problems.count,
            problems: kept,
            elapsed,
            manifest: self.manifest.map(|w| w.path().to_path_buf()),
        })
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Calls made.
    pub calls: u64,
    /// Calls that succeeded (a signalfd call returned an fd).
    pub ok: u64,
    /// Calls that returned an errno (expected or not).
    pub errors: u64,
    /// Calls whose answer was not the expected one.
    pub unexpected: u64,
    /// The first unexpected calls, in call order.
    pub problems: Vec<Problem>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Where the manifest was written, if anywhere.
    pub manifest: Option<PathBuf>,
}

impl RunSummary {
    /// Whether every call was answered as expected.
    pub fn all_as_expected(&self) -> bool {
        self.unexpected == 0
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.calls as f64 / secs
        } else {
            0.0
        };
        write!(
            f,
            "calls={} ok={} errors={} unexpected={} elapsed={secs:.3}s rate={rate:.0}/s manifest={}",
            self.calls,
            self.ok,
            self.errors,
            self.unexpected,
            self.manifest
                .as_ref()
                .map_or_else(|| "none".to_string(), |p| p.display().to_string()),
        )
    }
}
