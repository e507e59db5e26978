//! The seeded plan of the `random` scenario: an endless-on-demand stream of calls per thread,
//! generated lazily so a long volume run holds no list of calls.

use crate::manifest::{Syscall, KERNEL_SIGSET_SIZE};
use crate::mask::{bit, MAX_SIGNAL};
use libc::{SFD_CLOEXEC, SFD_NONBLOCK};
use nix::errno::Errno;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The valid signalfd4 flags.
const VALID_FLAGS: i32 = SFD_CLOEXEC | SFD_NONBLOCK;

/// Most signalfds a thread keeps open at once.
const MAX_LIVE: usize = 4;

/// Percent of calls that are meant to fail.
const ERROR_PERCENT: u32 = 15;

/// Sizemask values other than the right one.
const BAD_SIZEMASKS: [u64; 4] = [0, 4, 16, 128];

/// Which fd a planned call passes as `ufd`; live fds are named by slot because their numbers
/// are only known at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// -1: create a new signalfd.
    Create,
    /// The thread's n-th live signalfd (in creation order, closed ones removed).
    Live(usize),
    /// An fd number that is never open.
    Unopened,
    /// An open fd that is not a signalfd (a pipe).
    NotSignalfd,
}

/// One call of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedCall {
    /// Which syscall.
    pub syscall: Syscall,
    /// What `ufd` is.
    pub target: Target,
    /// The flags argument (0 for signalfd).
    pub flags: i32,
    /// The mask, or `None` for an unreadable mask pointer.
    pub mask: Option<u64>,
    /// The sizemask argument.
    pub sizemask: u64,
    /// Close the fd after a successful call.
    pub close_after: bool,
}

impl PlannedCall {
    /// The errno the kernel answers with, following its order of checks; `None` for success.
    pub fn expected_errno(&self) -> Option<Errno> {
        if self.sizemask != KERNEL_SIGSET_SIZE {
            Some(Errno::EINVAL)
        } else if self.mask.is_none() {
            Some(Errno::EFAULT)
        } else if self.flags & !VALID_FLAGS != 0 {
            Some(Errno::EINVAL)
        } else {
            match self.target {
                Target::Unopened => Some(Errno::EBADF),
                Target::NotSignalfd => Some(Errno::EINVAL),
                Target::Create | Target::Live(_) => None,
            }
        }
    }
}

/// Generates one thread's calls from the seed; the same seed and thread give the same calls.
pub struct Planner {
    rng: ChaCha8Rng,
    live: usize,
    remaining: u64,
}

impl Planner {
    /// The plan of thread `thread` (each thread draws from its own ChaCha stream) of `calls` calls.
    pub fn new(seed: u64, thread: usize, calls: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(thread as u64);
        Self {
            rng,
            live: 0,
            remaining: calls,
        }
    }

    fn syscall(&mut self) -> Syscall {
        if self.rng.random() {
            Syscall::Signalfd4
        } else {
            Syscall::Signalfd
        }
    }

    fn valid_flags(&mut self, syscall: Syscall) -> i32 {
        match syscall {
            Syscall::Signalfd => 0,
            Syscall::Signalfd4 => {
                [0, SFD_NONBLOCK, SFD_CLOEXEC, VALID_FLAGS][self.rng.random_range(0..4)]
            }
        }
    }

    fn invalid_flag_bit(&mut self) -> i32 {
        loop {
            let flag = (1u32 << self.rng.random_range(0..32)) as i32;
            if flag & VALID_FLAGS == 0 {
                return flag;
            }
        }
    }

    fn signal(&mut self) -> i32 {
        self.rng.random_range(1..=MAX_SIGNAL)
    }

    fn mask(&mut self) -> u64 {
        match self.rng.random_range(0..10) {
            0 => 0,
            1..=3 => bit(self.signal()),
            4..=7 => {
                let count = self.rng.random_range(2..=5);
                (0..count).fold(0, |mask, _| mask | bit(self.signal()))
            }
            8 => self.rng.random(),
            _ => u64::MAX,
        }
    }

    fn live_target(&mut self) -> Target {
        Target::Live(self.rng.random_range(0..self.live))
    }

    fn create_or_live(&mut self) -> Target {
        if self.live > 0 && self.rng.random() {
            self.live_target()
        } else {
            Target::Create
        }
    }

    fn base(&mut self, target: Target) -> PlannedCall {
        let syscall = self.syscall();
        PlannedCall {
            syscall,
            target,
            flags: self.valid_flags(syscall),
            mask: Some(self.mask()),
            sizemask: KERNEL_SIGSET_SIZE,
            close_after: false,
        }
    }

    fn failing_call(&mut self) -> PlannedCall {
        match self.rng.random_range(0..5) {
            0 => {
                let target = self.create_or_live();
                let mut call = self.base(target);
                call.syscall = Syscall::Signalfd4;
                call.flags = self.valid_flags(Syscall::Signalfd4) | self.invalid_flag_bit();
                call
            }
            1 => self.base(Target::Unopened),
            2 => self.base(Target::NotSignalfd),
            3 => {
                let target = self.create_or_live();
                let mut call = self.base(target);
                call.sizemask = BAD_SIZEMASKS[self.rng.random_range(0..BAD_SIZEMASKS.len())];
                call
            }
            _ => {
                let target = self.create_or_live();
                PlannedCall {
                    mask: None,
                    ..self.base(target)
                }
            }
        }
    }

    fn next_call(&mut self) -> PlannedCall {
        let roll = self.rng.random_range(0..100);
        let mut call = if roll < ERROR_PERCENT {
            self.failing_call()
        } else if self.live == 0 || (roll < 55 && self.live < MAX_LIVE) {
            self.base(Target::Create)
        } else {
            let target = self.live_target();
            self.base(target)
        };
        if call.expected_errno().is_none() {
            call.close_after = self.rng.random_range(0..10) < 3;
            match call.target {
                Target::Create if !call.close_after => self.live += 1,
                Target::Live(_) if call.close_after => self.live -= 1,
                _ => {}
            }
        }
        call
    }
}

impl Iterator for Planner {
    type Item = PlannedCall;

    fn next(&mut self) -> Option<PlannedCall> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.next_call())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64, thread: usize) -> Vec<PlannedCall> {
        Planner::new(seed, thread, 500).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        assert_eq!(plan(1, 0), plan(1, 0));
        assert_eq!(plan(1, 3), plan(1, 3));
        assert_ne!(plan(1, 0), plan(2, 0));
        assert_ne!(plan(1, 0), plan(1, 1));
    }

    #[test]
    fn the_plan_only_touches_live_fds_and_covers_every_case() {
        let mut live = 0usize;
        let mut errnos = std::collections::BTreeSet::new();
        let (mut creates, mut updates) = (0, 0);
        for call in plan(42, 0) {
            if let Target::Live(slot) = call.target {
                assert!(slot < live, "{call:?} with {live} live fds");
            }
            assert!(
                call.syscall == Syscall::Signalfd4 || call.flags == 0,
                "{call:?}"
            );
            match call.expected_errno() {
                Some(e) => {
                    errnos.insert(e as i32);
                    assert!(!call.close_after);
                }
                None => match call.target {
                    Target::Create => {
                        creates += 1;
                        live += usize::from(!call.close_after);
                    }
                    _ => {
                        updates += 1;
                        live -= usize::from(call.close_after);
                    }
                },
            }
            assert!(live <= MAX_LIVE);
        }
        assert!(
            creates > 50 && updates > 50,
            "{creates} creates, {updates} updates"
        );
        let want = [Errno::EBADF, Errno::EFAULT, Errno::EINVAL].map(|e| e as i32);
        assert_eq!(errnos.into_iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn expected_errno_follows_the_kernel_order_of_checks() {
        let ok = PlannedCall {
            syscall: Syscall::Signalfd4,
            target: Target::Unopened,
            flags: 0,
            mask: Some(1),
            sizemask: 8,
            close_after: false,
        };
        assert_eq!(ok.expected_errno(), Some(Errno::EBADF));
        let bad_flags = PlannedCall { flags: 0x1, ..ok };
        assert_eq!(bad_flags.expected_errno(), Some(Errno::EINVAL));
        let no_mask = PlannedCall {
            mask: None,
            ..bad_flags
        };
        assert_eq!(no_mask.expected_errno(), Some(Errno::EFAULT));
        let bad_size = PlannedCall {
            sizemask: 4,
            ..no_mask
        };
        assert_eq!(bad_size.expected_errno(), Some(Errno::EINVAL));
        let create = PlannedCall {
            target: Target::Create,
            ..ok
        };
        assert_eq!(create.expected_errno(), None);
    }
}
