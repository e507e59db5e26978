//! `random`: a seeded random mix of creates, updates of live fds and failing calls, spread over
//! threads, optionally paced to a rate (the volume mode for throughput benchmarks).

mod plan;

pub use plan::{PlannedCall, Planner, Target};

use super::errors::UNOPENED_FD;
use super::{on_threads, Scenario};
use crate::call::{CallSpec, Caller, Expect};
use crate::config::RunConfig;
use crate::error::WorkloadError;
use crate::pace::Pacer;
use crate::record::Recorder;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

/// Splits `config.calls` over `config.threads` threads and runs each thread's plan.
pub fn run(recorder: &Recorder, config: &RunConfig) -> Result<(), WorkloadError> {
    let threads = config.threads.max(1);
    let base = config.calls / threads as u64;
    let extra = config.calls % threads as u64;
    let busy = if base == 0 { extra as usize } else { threads };
    let start = Instant::now();
    on_threads(Scenario::Random, busy, |index| {
        let calls = base + u64::from((index as u64) < extra);
        let pacer = config
            .rate
            .map(|rate| Pacer::new(start, rate / threads as f64));
        let caller = Caller::new(recorder, Scenario::Random);
        run_plan(&caller, Planner::new(config.seed, index, calls), pacer)
    })
}

/// The fd a planned call passes, and what a success must look like.
fn to_spec(call: &PlannedCall, live: &[(OwnedFd, i32)], not_signalfd: RawFd) -> CallSpec {
    let (ufd, success) = match call.target {
        Target::Create => (-1, Expect::Created),
        Target::Live(slot) => {
            // The planner only names slots it knows to be live, and the run stops at the first
            // answer that differs from the plan, so `live` mirrors the planner's count.
            let (fd, fd_flags) = &live[slot];
            (
                fd.as_raw_fd(),
                Expect::Updated {
                    fd_flags: *fd_flags,
                },
            )
        }
        Target::Unopened => (UNOPENED_FD, Expect::Created),
        Target::NotSignalfd => (not_signalfd, Expect::Created),
    };
    CallSpec {
        syscall: call.syscall,
        ufd,
        flags: call.flags,
        mask: call.mask,
        sizemask: call.sizemask,
        expect: call.expected_errno().map_or(success, Expect::Failed),
    }
}

/// Makes one thread's planned calls, keeping its live fds.
fn run_plan(caller: &Caller<'_>, plan: Planner, pacer: Option<Pacer>) -> Result<(), WorkloadError> {
    let (not_signalfd, _pipe_write) = std::io::pipe().map_err(|source| WorkloadError::Setup {
        what: "create a pipe (an fd that is not a signalfd)",
        source,
    })?;
    let mut live: Vec<(OwnedFd, i32)> = Vec::new();
    for (k, call) in plan.enumerate() {
        if let Some(pacer) = &pacer {
            pacer.wait_turn(k as u64);
        }
        let spec = to_spec(&call, &live, not_signalfd.as_raw_fd());
        let called = caller.call(&spec)?;
        let as_expected = called.as_expected;
        match call.target {
            Target::Create => {
                if let Some(fd) = called.into_owned_fd() {
                    if !call.close_after && as_expected {
                        live.push((fd, spec.flags));
                    }
                }
            }
            Target::Live(slot) if call.close_after && as_expected => drop(live.remove(slot)),
            _ => {}
        }
        if !as_expected {
            // The fds no longer match the plan; the problem is recorded, stop this thread.
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::manifest::CallRecord;
    use crate::scenario::tests::{outcome, run_scenario};
    use crate::scenario::Scenario;
    use std::collections::BTreeMap;

    /// A call without its run-specific values (fd numbers, tids, times).
    type Made<'a> = (&'a str, bool, i32, u64, u64, &'a str);

    /// Each thread's calls in order, threads sorted.
    fn per_thread(records: &[CallRecord]) -> Vec<Vec<Made<'_>>> {
        let mut threads: BTreeMap<u32, Vec<_>> = BTreeMap::new();
        for r in records {
            threads.entry(r.tid).or_default().push((
                r.syscall.name(),
                r.ufd == -1,
                r.flags,
                r.mask,
                r.sizemask,
                outcome(r),
            ));
        }
        let mut calls: Vec<_> = threads.into_values().collect();
        calls.sort();
        calls
    }

    #[test]
    fn a_seeded_run_is_repeatable_and_as_planned() {
        let (summary, first) = run_scenario(Scenario::Random, 2, 101, 7);
        assert_eq!(summary.calls, 101);
        assert!(summary.ok > 0 && summary.errors > 0, "{summary}");
        let (_, second) = run_scenario(Scenario::Random, 2, 101, 7);
        assert_eq!(per_thread(&first), per_thread(&second));
        let (_, other) = run_scenario(Scenario::Random, 2, 101, 8);
        assert_ne!(per_thread(&first), per_thread(&other));
    }

    #[test]
    fn fewer_calls_than_threads_use_fewer_threads() {
        let (summary, records) = run_scenario(Scenario::Random, 4, 3, 1);
        assert_eq!(summary.calls, 3);
        let tids: std::collections::BTreeSet<u32> = records.iter().map(|r| r.tid).collect();
        assert_eq!(tids.len(), 3);
    }
}
