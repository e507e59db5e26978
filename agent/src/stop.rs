//! SIGINT and SIGTERM, from kspan's first instruction: a stop signal that comes while kspan
//! starts is held until the handlers are in place, then stops it cleanly, instead of killing
//! it (exit 143, no summary) as the default action would.

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use tokio::signal::unix::{signal, SignalKind};

/// SIGINT and SIGTERM blocked in the calling thread, and in every thread started from it
/// afterwards (the runtime's workers): a signal that comes now stays pending.
pub struct Held(SigSet);

/// Blocks the stop signals. Call first thing in `main`, before any thread is started.
pub fn hold() -> Held {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    // Fails only for an invalid `how`: nothing a user can cause.
    if let Err(error) = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        eprintln!("kspan: warning: cannot hold stop signals during the start: {error}");
    }
    Held(set)
}

/// The stop signals, handled.
pub struct StopSignals {
    sigint: tokio::signal::unix::Signal,
    sigterm: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers, then lets the held signals through to this thread (the runtime's
    /// workers keep them blocked, so the kernel delivers them here); one already pending is
    /// delivered at once. Must run inside the runtime.
    pub fn install(held: Held) -> std::io::Result<Self> {
        let signals = Self {
            sigint: signal(SignalKind::interrupt())?,
            sigterm: signal(SignalKind::terminate())?,
        };
        pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&held.0), None)?;
        Ok(signals)
    }

    /// Waits for the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.sigint.recv() => {}
            _ = self.sigterm.recv() => {}
        }
    }
}
