//! Signal masks as the kernel reads them: 64 bits where bit n-1 stands for signal n.

/// Highest signal number the kernel knows on x86_64 (`_NSIG`).
pub const MAX_SIGNAL: i32 = 64;

/// The bit of one signal (1..=64); 0 for a number outside that range.
pub const fn bit(signal: i32) -> u64 {
    if signal >= 1 && signal <= MAX_SIGNAL {
        1 << (signal - 1)
    } else {
        0
    }
}

/// The mask holding exactly `signals`.
pub const fn mask_of(signals: &[i32]) -> u64 {
    let mut mask = 0;
    let mut i = 0;
    while i < signals.len() {
        mask |= bit(signals[i]);
        i += 1;
    }
    mask
}

/// Every standard signal, 1..=31.
pub const ALL_STANDARD: u64 = (1 << 31) - 1;

/// Whether `mask` holds `signal`.
pub const fn contains(mask: u64, signal: i32) -> bool {
    mask & bit(signal) != 0
}

/// The lowest real-time signal that user code may use (glibc keeps 32 and 33 for itself).
pub fn first_realtime() -> i32 {
    libc::SIGRTMIN()
}

/// The highest real-time signal.
pub fn last_realtime() -> i32 {
    libc::SIGRTMAX()
}

/// Job-control signals: sending one discards the others pending in every thread of the process
/// (SIGCONT drops pending stop signals and a stop signal drops a pending SIGCONT), so a proof
/// with one of them can erase another thread's proof.
const JOB_CONTROL: [i32; 4] = [libc::SIGCONT, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// Whether a signal can be blocked and sent to ourselves to prove a signalfd works: not SIGKILL
/// or SIGSTOP (never blockable, and signalfd drops them), not glibc's reserved 32/33 (it
/// refuses to block them and owns their handlers), and not a job-control signal.
pub fn is_provable(signal: i32) -> bool {
    (1..=MAX_SIGNAL).contains(&signal)
        && signal != libc::SIGKILL
        && signal != libc::SIGSTOP
        && !JOB_CONTROL.contains(&signal)
        && (signal < 32 || signal >= first_realtime())
}

/// The signal used to prove an fd with this mask delivers: the lowest provable one, if any.
pub fn proof_signal(mask: u64) -> Option<i32> {
    (1..=MAX_SIGNAL).find(|&s| contains(mask, s) && is_provable(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_follow_the_kernel_layout() {
        assert_eq!(bit(1), 1);
        assert_eq!(bit(64), 1 << 63);
        assert_eq!(bit(0), 0);
        assert_eq!(bit(65), 0);
        assert_eq!(
            mask_of(&[libc::SIGINT, libc::SIGTERM]),
            (1 << 1) | (1 << 14)
        );
        assert_eq!(ALL_STANDARD, mask_of(&(1..=31).collect::<Vec<_>>()));
        assert!(contains(ALL_STANDARD, 31) && !contains(ALL_STANDARD, 32));
    }

    #[test]
    fn proof_skips_unblockable_reserved_and_job_control_signals() {
        assert_eq!(proof_signal(0), None);
        assert_eq!(proof_signal(mask_of(&[libc::SIGKILL, libc::SIGSTOP])), None);
        assert_eq!(
            proof_signal(mask_of(&[libc::SIGKILL, libc::SIGUSR2])),
            Some(libc::SIGUSR2)
        );
        assert_eq!(proof_signal(mask_of(&[32, 33])), None);
        assert_eq!(proof_signal(mask_of(&[libc::SIGCONT, libc::SIGTSTP])), None);
        assert_eq!(
            proof_signal(mask_of(&[libc::SIGCONT, libc::SIGURG])),
            Some(libc::SIGURG)
        );
        assert_eq!(proof_signal(mask_of(&[32, 64])), Some(64));
        assert_eq!(proof_signal(u64::MAX), Some(libc::SIGHUP));
    }
}
