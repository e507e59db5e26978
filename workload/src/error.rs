//! Why a run could not be carried out.

use crate::manifest::ManifestError;
use nix::errno::Errno;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a run could not be carried out (unexpected kernel answers are not errors: they are in
/// the summary).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The manifest could not be written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A resource a scenario needs could not be made.
    #[error("cannot {what}: {source}")]
    Setup {
        /// What was being made.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A scenario thread could not be started.
    #[error("cannot start a thread for scenario {scenario}: {source}")]
    Spawn {
        /// The scenario.
        scenario: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A scenario thread panicked.
    #[error("a thread of scenario {scenario} panicked")]
    Panicked {
        /// The scenario.
        scenario: &'static str,
    },
    /// The ready file did not appear in time.
    #[error("{} did not appear within {:.3} s: is the agent running and writing its ready file there?", path.display(), timeout.as_secs_f64())]
    WaitTimeout {
        /// The awaited path.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// A benchmark call failed.
    #[error("bench: {failed} of {calls} signalfd4 calls failed (first: {first})")]
    BenchFailed {
        /// Failed calls.
        failed: u64,
        /// Calls made.
        calls: u64,
        /// The first failure's errno.
        first: Errno,
    },
}
