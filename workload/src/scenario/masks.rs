//! `masks`: creates signalfds for varied masks through both syscalls, proves and closes each.

use crate::call::{CallSpec, Caller};
use crate::manifest::{ManifestError, Syscall};
use crate::mask::{bit, mask_of, ALL_STANDARD};
use libc::{SIGCHLD, SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGSTOP, SIGTERM, SIGUSR1, SIGUSR2};

/// The calls, in order: (syscall, mask). Real-time signals are given by kernel number.
const CASES: [(Syscall, u64); 12] = [
    (Syscall::Signalfd4, 0),
    (Syscall::Signalfd4, bit(SIGUSR1)),
    (
        Syscall::Signalfd4,
        mask_of(&[SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGCHLD, SIGUSR2]),
    ),
    (Syscall::Signalfd4, ALL_STANDARD),
    (Syscall::Signalfd4, mask_of(&[34, 40, 64])),
    // The kernel silently drops SIGKILL and SIGSTOP from the mask.
    (Syscall::Signalfd4, mask_of(&[SIGKILL, SIGSTOP, SIGUSR1])),
    (Syscall::Signalfd4, mask_of(&[SIGKILL, SIGSTOP])),
    (Syscall::Signalfd, u64::MAX),
    (Syscall::Signalfd, bit(SIGUSR2)),
    (Syscall::Signalfd, mask_of(&[35, 50, 63])),
    (Syscall::Signalfd, mask_of(&[SIGKILL, SIGSTOP, SIGTERM])),
    (Syscall::Signalfd, 0),
];

/// Makes the calls; each fd is closed right after its proof.
pub fn run(caller: &Caller<'_>) -> Result<(), ManifestError> {
    for (syscall, mask) in CASES {
        drop(
            caller
                .call(&CallSpec::create(syscall, mask))?
                .into_owned_fd(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tests::run_scenario;
    use crate::scenario::Scenario;

    #[test]
    fn every_mask_gives_a_working_fd() {
        let (summary, records) = run_scenario(Scenario::Masks, 1, 0, 0);
        assert_eq!(summary.ok, CASES.len() as u64);
        let made: Vec<(Syscall, u64)> = records.iter().map(|r| (r.syscall, r.mask)).collect();
        assert_eq!(made, CASES);
        assert!(records
            .iter()
            .all(|r| r.ufd == -1 && r.flags == 0 && r.sizemask == 8));
    }
}
