//! `bench`: a tight loop of signalfd4 calls updating one signalfd's mask, for the cost per
//! call with and without the agent attached. Nothing is recorded.

use crate::error::WorkloadError;
use crate::mask::bit;
use crate::sys::raw_signalfd4;
use libc::{SFD_CLOEXEC, SIGUSR1, SIGUSR2};
use nix::errno::Errno;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// signalfd4 calls made before the timed loop (the create of the updated fd).
pub const SETUP_CALLS: u64 = 1;

/// The outcome of a benchmark loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchResult {
    /// Timed calls made.
    pub calls: u64,
    /// Time the loop took.
    pub elapsed: Duration,
}

impl BenchResult {
    /// Mean nanoseconds per call.
    pub fn ns_per_call(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.elapsed.as_nanos() as f64 / self.calls as f64
        }
    }
}

/// Creates one signalfd, then times `calls` signalfd4 updates alternating its mask.
pub fn bench(calls: u64) -> Result<BenchResult, WorkloadError> {
    let masks = [bit(SIGUSR1), bit(SIGUSR2)];
    let created = raw_signalfd4(-1, Some(&masks[0]), 8, SFD_CLOEXEC);
    if created < 0 {
        return Err(WorkloadError::BenchFailed {
            failed: 1,
            calls: SETUP_CALLS,
            first: Errno::last(),
        });
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    let _owned = unsafe { OwnedFd::from_raw_fd(created as RawFd) };
    let mut failed = 0;
    let mut first = None;
    let start = Instant::now();
    for i in 0..calls {
        let ret = raw_signalfd4(created as RawFd, Some(&masks[(i & 1) as usize]), 8, 0);
        if ret != created {
            failed += 1;
            first.get_or_insert_with(Errno::last);
        }
    }
    let elapsed = start.elapsed();
    match first {
        Some(first) => Err(WorkloadError::BenchFailed {
            failed,
            calls,
            first,
        }),
        None => Ok(BenchResult { calls, elapsed }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_successful_updates() {
        let result = bench(2000).expect("bench");
        assert_eq!(result.calls, 2000);
        assert!(result.ns_per_call() > 0.0);
    }
}
