//! `identity`: calls from a thread whose effective uid is not its real one, so a capture must
//! tell the two apart. Only root can switch (to `nobody`, on its own thread only); any other
//! user makes the same calls with its own ids.

use super::{on_threads, Scenario};
use crate::call::{CallSpec, Caller};
use crate::error::WorkloadError;
use crate::manifest::Syscall;
use crate::mask::bit;
use crate::record::Recorder;
use crate::sys;
use libc::{SIGUSR1, SIGUSR2};
use std::os::fd::AsRawFd;

/// The effective uid the calling thread takes: `nobody`'s.
const NOBODY: u32 = 65534;

/// Makes a create and an update on a thread of its own with the effective uid switched.
pub fn run(recorder: &Recorder) -> Result<(), WorkloadError> {
    on_threads(Scenario::Identity, 1, |_| {
        let real = nix::unistd::getuid().as_raw();
        let switched = real == 0 && sys::set_thread_euid(NOBODY).is_ok();
        // Created after the switch: the caller records the thread's ids as they now are.
        let caller = Caller::new(recorder, Scenario::Identity);
        let created = caller.call(&CallSpec::create(Syscall::Signalfd4, bit(SIGUSR1)))?;
        if let Some(fd) = created.into_owned_fd() {
            let update = CallSpec::update(Syscall::Signalfd, fd.as_raw_fd(), 0, bit(SIGUSR2));
            caller.call(&update)?;
        }
        if switched {
            sys::set_thread_euid(real).map_err(|errno| WorkloadError::Setup {
                what: "switch the identity thread's effective uid back",
                source: errno.into(),
            })?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use crate::scenario::tests::run_scenario;
    use crate::scenario::Scenario;

    #[test]
    fn root_calls_with_another_effective_uid_on_one_thread() {
        let (summary, records) = run_scenario(Scenario::Identity, 1, 0, 0);
        assert_eq!((summary.calls, summary.ok), (2, 2));
        let real = nix::unistd::getuid().as_raw();
        let expected_euid = if real == 0 { super::NOBODY } else { real };
        for r in &records {
            assert_eq!((r.uid, r.euid), (real, expected_euid), "{r:?}");
        }
        // The switch was the thread's own: the process keeps its effective uid.
        assert_eq!(nix::unistd::geteuid().as_raw(), real);
        assert_ne!(records[0].tid, crate::sys::gettid());
    }
}
