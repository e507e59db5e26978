//! Proves that a signalfd delivers: block a signal in this thread, send it to this thread, read
//! it from the fd. Uses pthread_sigmask, tgkill, poll, read and sigtimedwait: no signalfd calls.

use nix::errno::Errno;
use std::os::fd::RawFd;

/// How long to wait for the fd to become readable after the signal was sent.
const READ_TIMEOUT_MS: libc::c_int = 1000;

/// Why an fd failed to deliver the signal it was asked to watch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// pthread_sigmask refused to block the signal.
    #[error("cannot block signal {signal}: {errno}")]
    Block {
        /// The signal.
        signal: i32,
        /// Why.
        errno: Errno,
    },
    /// tgkill to our own thread failed.
    #[error("cannot send signal {signal} to this thread: {errno}")]
    Send {
        /// The signal.
        signal: i32,
        /// Why.
        errno: Errno,
    },
    /// poll on the fd failed.
    #[error("cannot poll fd {fd}: {errno}")]
    Poll {
        /// The signalfd.
        fd: RawFd,
        /// Why.
        errno: Errno,
    },
    /// The fd did not become readable although the signal is pending.
    #[error(
        "fd {fd} did not become readable within {READ_TIMEOUT_MS} ms of sending signal {signal}"
    )]
    NotReadable {
        /// The signalfd.
        fd: RawFd,
        /// The signal.
        signal: i32,
    },
    /// read on the fd failed.
    #[error("cannot read fd {fd}: {errno}")]
    Read {
        /// The signalfd.
        fd: RawFd,
        /// Why.
        errno: Errno,
    },
    /// read returned fewer bytes than one `signalfd_siginfo`.
    #[error("read of fd {fd} returned {got} bytes, not one signalfd_siginfo")]
    ShortRead {
        /// The signalfd.
        fd: RawFd,
        /// Bytes read.
        got: usize,
    },
    /// The fd delivered another signal than the one sent.
    #[error("fd {fd} delivered signal {got}, expected {expected}")]
    WrongSignal {
        /// The signalfd.
        fd: RawFd,
        /// The signal sent.
        expected: i32,
        /// The `ssi_signo` read.
        got: u32,
    },
}

/// A signal set holding only `signal`.
fn single_signal_set(signal: i32) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it fully before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signal number was checked by `mask::is_provable`
    // callers, and an invalid one only makes sigaddset return EINVAL, caught by pthread_sigmask.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
    }
    set
}

/// Sends `signal` to the calling thread (blocked, so it stays pending) and reads it from `fd`.
pub fn prove_delivery(fd: RawFd, signal: i32) -> Result<(), ProofError> {
    let set = single_signal_set(signal);
    // SAFETY: sigset_t is plain data, filled in by pthread_sigmask below.
    let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to valid sigset_t values owned by this frame.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous) };
    if rc != 0 {
        return Err(ProofError::Block {
            signal,
            errno: Errno::from_raw(rc),
        });
    }
    let outcome = send_and_read(fd, signal);
    if outcome.is_err() {
        // The signal may still be pending; take it off the queue so unblocking it cannot run its
        // default action (most would end the process).
        let no_wait = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `set` and `no_wait` are valid; a null siginfo pointer is allowed.
        unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &no_wait) };
    }
    // SAFETY: `previous` holds the mask pthread_sigmask returned; the old-set pointer may be null.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    outcome
}

fn send_and_read(fd: RawFd, signal: i32) -> Result<(), ProofError> {
    let tid = crate::sys::gettid() as libc::pid_t;
    // SAFETY: plain integer arguments; tgkill reports a bad one through errno.
    let sent = unsafe { libc::tgkill(libc::getpid(), tid, signal) };
    if sent != 0 {
        return Err(ProofError::Send {
            signal,
            errno: Errno::last(),
        });
    }
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let ready = unsafe { libc::poll(&mut pollfd, 1, READ_TIMEOUT_MS) };
    match ready {
        r if r < 0 => {
            return Err(ProofError::Poll {
                fd,
                errno: Errno::last(),
            })
        }
        0 => return Err(ProofError::NotReadable { fd, signal }),
        _ => {}
    }
    // SAFETY: signalfd_siginfo is plain data, overwritten by read below.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is a writable buffer of exactly `size` bytes.
    let got = unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
    if got < 0 {
        return Err(ProofError::Read {
            fd,
            errno: Errno::last(),
        });
    }
    if got as usize != size {
        return Err(ProofError::ShortRead {
            fd,
            got: got as usize,
        });
    }
    if info.ssi_signo != signal as u32 {
        return Err(ProofError::WrongSignal {
            fd,
            expected: signal,
            got: info.ssi_signo,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::bit;
    use crate::sys::raw_signalfd4;

    #[test]
    fn delivers_a_signal_in_the_mask() {
        let mask = bit(libc::SIGUSR1);
        let fd = raw_signalfd4(-1, Some(&mask), 8, libc::SFD_CLOEXEC) as RawFd;
        assert!(fd >= 0);
        assert_eq!(prove_delivery(fd, libc::SIGUSR1), Ok(()));
        let rt = crate::mask::first_realtime() + 3;
        let rt_mask = bit(rt);
        raw_signalfd4(fd, Some(&rt_mask), 8, 0);
        assert_eq!(prove_delivery(fd, rt), Ok(()));
        // SAFETY: fd was created above and is closed once.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn reports_a_signal_outside_the_mask_and_survives_it() {
        let mask = bit(libc::SIGUSR2);
        let fd = raw_signalfd4(-1, Some(&mask), 8, libc::SFD_CLOEXEC) as RawFd;
        assert!(fd >= 0);
        // SIGWINCH is not in the mask: the fd never becomes readable, and the pending signal
        // is drained before it is unblocked.
        assert_eq!(
            prove_delivery(fd, libc::SIGWINCH),
            Err(ProofError::NotReadable {
                fd,
                signal: libc::SIGWINCH
            })
        );
        // SAFETY: fd was created above and is closed once.
        unsafe { libc::close(fd) };
    }
}
