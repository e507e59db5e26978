//! `threads`: several threads at once, each running create/update/close cycles with a mask
//! built around its own real-time signal.

use super::{on_threads, Scenario};
use crate::call::{CallSpec, Caller};
use crate::error::WorkloadError;
use crate::manifest::Syscall;
use crate::mask::{bit, first_realtime, last_realtime};
use crate::record::Recorder;
use libc::{SFD_CLOEXEC, SFD_NONBLOCK, SIGALRM, SIGHUP, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use std::os::fd::{AsRawFd, OwnedFd};

/// Flags of successive creates.
const CREATE_FLAGS: [i32; 4] = [0, SFD_CLOEXEC, SFD_NONBLOCK, SFD_NONBLOCK | SFD_CLOEXEC];

/// Standard signals mixed into the masks.
const STANDARD: [i32; 6] = [SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH, SIGALRM, SIGTERM];

/// Runs `threads` threads of `calls_per_thread` calls each.
pub fn run(
    recorder: &Recorder,
    threads: usize,
    calls_per_thread: u64,
) -> Result<(), WorkloadError> {
    on_threads(Scenario::Threads, threads, |index| {
        cycles(
            &Caller::new(recorder, Scenario::Threads),
            index,
            calls_per_thread,
        )
    })
}

/// One thread's calls: create (signalfd4), update (signalfd), update (signalfd4), close; again.
fn cycles(caller: &Caller<'_>, index: usize, calls: u64) -> Result<(), WorkloadError> {
    let realtime_count = (last_realtime() - first_realtime() + 1) as usize;
    let own = bit(first_realtime() + (index % realtime_count) as i32);
    let mut current: Option<(OwnedFd, i32)> = None;
    for k in 0..calls {
        let standard = bit(STANDARD[(k as usize + index) % STANDARD.len()]);
        let spec = match (&current, k % 3) {
            (Some((fd, flags)), 1) => {
                CallSpec::update(Syscall::Signalfd, fd.as_raw_fd(), *flags, own)
            }
            (Some((fd, flags)), 2) => {
                CallSpec::update(Syscall::Signalfd4, fd.as_raw_fd(), *flags, own | standard)
            }
            _ => {
                let flags = CREATE_FLAGS[(k / 3) as usize % CREATE_FLAGS.len()];
                CallSpec::create(Syscall::Signalfd4, own | standard).with_flags(flags)
            }
        };
        let called = caller.call(&spec)?;
        if spec.ufd == -1 {
            current = called.into_owned_fd().map(|fd| (fd, spec.flags));
        }
        if k % 3 == 2 {
            current = None;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::manifest::Syscall;
    use crate::scenario::tests::run_scenario;
    use crate::scenario::Scenario;
    use std::collections::BTreeMap;

    #[test]
    fn each_thread_makes_its_cycles() {
        let (summary, records) = run_scenario(Scenario::Threads, 3, 10, 0);
        assert_eq!((summary.calls, summary.ok), (30, 30));
        let mut by_thread: BTreeMap<u32, Vec<_>> = BTreeMap::new();
        for r in &records {
            by_thread.entry(r.tid).or_default().push(r);
        }
        assert_eq!(by_thread.len(), 3);
        for calls in by_thread.values() {
            assert_eq!(calls.len(), 10);
            let syscalls: Vec<Syscall> = calls.iter().take(3).map(|r| r.syscall).collect();
            assert_eq!(
                syscalls,
                [Syscall::Signalfd4, Syscall::Signalfd, Syscall::Signalfd4]
            );
            assert_eq!(calls[1].ufd, calls[0].fd.expect("created"));
        }
    }
}
