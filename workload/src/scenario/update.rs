//! `update`: creates an fd, then changes its mask through both syscalls; the kernel must return
//! the same fd each time and keep its flags (valid flags on an update are ignored).

use crate::call::{CallSpec, Caller};
use crate::manifest::{ManifestError, Syscall};
use crate::mask::{bit, mask_of, ALL_STANDARD};
use libc::{SFD_CLOEXEC, SFD_NONBLOCK, SIGHUP, SIGTERM, SIGUSR1, SIGUSR2};
use std::os::fd::AsRawFd;

/// Makes the calls: two fds, one created by each syscall, each updated several times.
pub fn run(caller: &Caller<'_>) -> Result<(), ManifestError> {
    let created = CallSpec::create(Syscall::Signalfd4, bit(SIGUSR1)).with_flags(SFD_CLOEXEC);
    if let Some(fd) = caller.call(&created)?.into_owned_fd() {
        let (fd, flags) = (fd.as_raw_fd(), SFD_CLOEXEC);
        for spec in [
            CallSpec::update(Syscall::Signalfd4, fd, flags, bit(SIGUSR2)),
            CallSpec::update(Syscall::Signalfd, fd, flags, bit(40)),
            CallSpec::update(Syscall::Signalfd4, fd, flags, mask_of(&[SIGHUP, SIGTERM]))
                .with_flags(SFD_NONBLOCK),
            CallSpec::update(Syscall::Signalfd4, fd, flags, 0),
        ] {
            caller.call(&spec)?;
        }
    }
    if let Some(fd) = caller
        .call(&CallSpec::create(Syscall::Signalfd, bit(SIGHUP)))?
        .into_owned_fd()
    {
        let fd = fd.as_raw_fd();
        for spec in [
            CallSpec::update(Syscall::Signalfd4, fd, 0, mask_of(&[SIGUSR1, SIGUSR2])),
            CallSpec::update(Syscall::Signalfd, fd, 0, ALL_STANDARD | bit(64)),
        ] {
            caller.call(&spec)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::scenario::tests::run_scenario;
    use crate::scenario::Scenario;

    #[test]
    fn updates_return_the_updated_fd() {
        let (summary, records) = run_scenario(Scenario::Update, 1, 0, 0);
        assert_eq!(summary.calls, 8);
        assert_eq!(summary.ok, 8);
        let first = records[0].fd.expect("created");
        assert!(records[1..5]
            .iter()
            .all(|r| r.ufd == first && r.fd == Some(first)));
        let second = records[5].fd.expect("created");
        assert!(records[6..]
            .iter()
            .all(|r| r.ufd == second && r.fd == Some(second)));
    }
}
