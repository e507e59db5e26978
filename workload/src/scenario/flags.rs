//! `flags`: creates signalfds with each valid flag combination (and through plain signalfd),
//! checking O_NONBLOCK/FD_CLOEXEC on each fd.

use crate::call::{CallSpec, Caller};
use crate::manifest::{ManifestError, Syscall};
use crate::mask::{bit, mask_of};
use libc::{SFD_CLOEXEC, SFD_NONBLOCK, SIGALRM, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH};

/// The calls, in order: (syscall, flags, mask).
const CASES: [(Syscall, i32, u64); 5] = [
    (Syscall::Signalfd4, 0, bit(SIGUSR1)),
    (Syscall::Signalfd4, SFD_NONBLOCK, bit(SIGUSR2)),
    (Syscall::Signalfd4, SFD_CLOEXEC, bit(SIGWINCH)),
    (
        Syscall::Signalfd4,
        SFD_NONBLOCK | SFD_CLOEXEC,
        mask_of(&[SIGHUP, 36]),
    ),
    (Syscall::Signalfd, 0, bit(SIGALRM)),
];

/// Makes the calls; each fd is closed right after its checks.
pub fn run(caller: &Caller<'_>) -> Result<(), ManifestError> {
    for (syscall, flags, mask) in CASES {
        let spec = CallSpec::create(syscall, mask).with_flags(flags);
        drop(caller.call(&spec)?.into_owned_fd());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tests::run_scenario;
    use crate::scenario::Scenario;

    #[test]
    fn each_flag_combination_is_made_and_honoured() {
        let (summary, records) = run_scenario(Scenario::Flags, 1, 0, 0);
        assert_eq!(summary.ok, CASES.len() as u64);
        let made: Vec<(Syscall, i32, u64)> = records
            .iter()
            .map(|r| (r.syscall, r.flags, r.mask))
            .collect();
        assert_eq!(made, CASES);
    }
}
