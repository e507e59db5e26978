//! Signal masks (`sigset_t`, 64 bits: bit `n - 1` is signal `n`) to signal names.

use std::fmt;

use nix::sys::signal::Signal;

/// glibc's `SIGRTMIN`: the kernel's real-time range starts at 32, but glibc keeps 32 and 33 for
/// itself, and `kill -l`, `SIGRTMIN()` and users' code all count from 34.
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// A 64-bit signal mask as the kernel stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalMask(pub u64);

impl SignalMask {
    /// The signal numbers in the mask, ascending.
    pub fn signals(self) -> impl Iterator<Item = i32> {
        // Set bits only, lowest first: a mask is walked for every span and log record.
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let bit = bits.trailing_zeros();
            bits &= bits.checked_sub(1)?;
            Some(bit as i32 + 1)
        })
    }

    /// The names of the signals in the mask, ascending.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.signals().map(|signo| NAMES[signo as usize].as_str())
    }
}

/// Every signal's name, by number (index 0 unused): masks are decoded per call, names once.
static NAMES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| (0..=64).map(signal_name).collect());

impl fmt::Display for SignalMask {
    /// `0x` and 16 hex digits, so masks line up and sort.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

/// The name of a signal number as `kill -l` prints it (`SIGUSR1`, `SIGRTMIN+3`, `SIGRTMAX-2`).
pub fn signal_name(signo: i32) -> String {
    match signo {
        SIGRTMIN => "SIGRTMIN".to_string(),
        SIGRTMAX => "SIGRTMAX".to_string(),
        // `kill -l` counts up from SIGRTMIN for the lower half and down from SIGRTMAX above it.
        n if (SIGRTMIN + 1..=SIGRTMIN + 15).contains(&n) => format!("SIGRTMIN+{}", n - SIGRTMIN),
        n if (SIGRTMIN + 16..SIGRTMAX).contains(&n) => format!("SIGRTMAX-{}", SIGRTMAX - n),
        n => match Signal::try_from(n) {
            Ok(signal) => signal.as_str().to_string(),
            Err(_) => format!("SIG{n}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_of(signals: &[i32]) -> SignalMask {
        SignalMask(
            signals
                .iter()
                .fold(0, |mask, signo| mask | 1u64 << (signo - 1)),
        )
    }

    #[test]
    fn empty_mask_has_no_names() {
        assert_eq!(SignalMask(0).names().count(), 0);
        assert_eq!(SignalMask(0).to_string(), "0x0000000000000000");
    }

    #[test]
    fn names_standard_signals() {
        let mask = mask_of(&[libc::SIGINT, libc::SIGUSR1, libc::SIGKILL]);
        assert!(mask.names().eq(["SIGINT", "SIGKILL", "SIGUSR1"]));
        assert_eq!(mask.to_string(), "0x0000000000000302");
    }

    #[test]
    fn names_real_time_signals_like_kill_l() {
        assert_eq!(signal_name(34), "SIGRTMIN");
        assert_eq!(signal_name(37), "SIGRTMIN+3");
        assert_eq!(signal_name(49), "SIGRTMIN+15");
        assert_eq!(signal_name(50), "SIGRTMAX-14");
        assert_eq!(signal_name(63), "SIGRTMAX-1");
        assert_eq!(signal_name(64), "SIGRTMAX");
    }

    #[test]
    fn glibc_reserved_signals_keep_their_numbers() {
        assert_eq!(signal_name(32), "SIG32");
        assert_eq!(signal_name(33), "SIG33");
    }

    #[test]
    fn full_mask_names_every_signal_once() {
        let names: Vec<_> = SignalMask(u64::MAX).names().collect();
        assert_eq!(names.len(), 64);
        assert_eq!(names[0], "SIGHUP");
        assert_eq!(names[63], "SIGRTMAX");
        assert_eq!(SignalMask(u64::MAX).to_string(), "0xffffffffffffffff");
    }
}
