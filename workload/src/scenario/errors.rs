//! `errors`: calls the kernel must reject, in the order it checks: sizemask (EINVAL) and mask
//! pointer (EFAULT) in the syscall itself, then flags (EINVAL), fd (EBADF) and fd type (EINVAL)
//! inside do_signalfd4.

use crate::call::{CallSpec, Caller};
use crate::error::WorkloadError;
use crate::manifest::Syscall;
use crate::mask::bit;
use libc::{SFD_NONBLOCK, SIGUSR1, SIGUSR2};
use nix::errno::Errno::{EBADF, EFAULT, EINVAL};
use std::os::fd::{AsRawFd, RawFd};

/// An fd number that is never open: above the kernel's ceiling for fd numbers (fs.nr_open can
/// be raised to at most 2147483584).
pub const UNOPENED_FD: RawFd = i32::MAX;

/// Makes the calls; every one fails except the create of the fd used for failed updates.
pub fn run(caller: &Caller<'_>) -> Result<(), WorkloadError> {
    let (pipe_read, pipe_write) = std::io::pipe().map_err(|source| WorkloadError::Setup {
        what: "create a pipe (an fd that is not a signalfd)",
        source,
    })?;
    let usr1 = bit(SIGUSR1);
    let create4 = CallSpec::create(Syscall::Signalfd4, usr1);
    let create = CallSpec::create(Syscall::Signalfd, usr1);
    for spec in [
        create4.with_ufd(UNOPENED_FD).failing(EBADF),
        create.with_ufd(-2).failing(EBADF),
        create4.with_ufd(pipe_read.as_raw_fd()).failing(EINVAL),
        create.with_ufd(pipe_write.as_raw_fd()).failing(EINVAL),
        create4.with_flags(0x1).failing(EINVAL),
        create4.with_flags(0x4000_0000).failing(EINVAL),
        create4.with_flags(i32::MIN).failing(EINVAL),
        // Flags are checked before the fd.
        create4
            .with_ufd(UNOPENED_FD)
            .with_flags(0x1)
            .failing(EINVAL),
        // Rejected before do_signalfd4 runs.
        create4.with_sizemask(4).failing(EINVAL),
        create.with_sizemask(128).failing(EINVAL),
        create4.with_unreadable_mask().failing(EFAULT),
        create.with_unreadable_mask().failing(EFAULT),
        // The sizemask is checked before the mask is read.
        create4
            .with_sizemask(4)
            .with_unreadable_mask()
            .failing(EINVAL),
    ] {
        caller.call(&spec)?;
    }
    if let Some(fd) = caller.call(&create4)?.into_owned_fd() {
        let update = CallSpec::update(Syscall::Signalfd4, fd.as_raw_fd(), 0, bit(SIGUSR2));
        for spec in [
            update.with_flags(SFD_NONBLOCK | 0x1).failing(EINVAL),
            update.with_sizemask(4).failing(EINVAL),
            update.with_unreadable_mask().failing(EFAULT),
        ] {
            caller.call(&spec)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tests::{outcome, run_scenario};
    use crate::scenario::Scenario;

    #[test]
    fn the_kernel_rejects_each_bad_call_with_its_errno() {
        let (summary, records) = run_scenario(Scenario::Errors, 1, 0, 0);
        assert_eq!((summary.calls, summary.ok), (17, 1));
        let outcomes: Vec<&str> = records.iter().map(outcome).collect();
        assert_eq!(
            outcomes,
            [
                "EBADF", "EBADF", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL",
                "EINVAL", "EINVAL", "EFAULT", "EFAULT", "EINVAL", "ok", "EINVAL", "EINVAL",
                "EFAULT"
            ]
        );
        assert_eq!(records[0].ufd, UNOPENED_FD);
        let reaching: Vec<bool> = records
            .iter()
            .map(|r| r.reaches_kernel_function())
            .collect();
        assert_eq!(
            reaching,
            [
                true, true, true, true, true, true, true, true, false, false, false, false, false,
                true, true, false, false
            ]
        );
        assert!(!records[10].mask_readable && records[10].errno == Some(EFAULT as i32));
    }
}
