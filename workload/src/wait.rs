//! Waits for the agent's ready file before the first call.

use crate::error::WorkloadError;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the path is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Returns once `path` exists (with how long that took), or fails after `timeout`.
pub fn wait_for_path(path: &Path, timeout: Duration) -> Result<Duration, WorkloadError> {
    let start = Instant::now();
    loop {
        if path.exists() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(WorkloadError::WaitTimeout {
                path: path.to_path_buf(),
                timeout,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempPath;

    #[test]
    fn returns_when_the_path_appears() {
        let path = TempPath::new("ready");
        let target = path.as_ref().to_path_buf();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            std::fs::write(target, b"ready").expect("write ready file");
        });
        let waited = wait_for_path(path.as_ref(), Duration::from_secs(5)).expect("appears");
        assert!(waited >= Duration::from_millis(15), "{waited:?}");
        writer.join().expect("writer thread");
    }

    #[test]
    fn times_out_naming_the_path() {
        let path = TempPath::new("never");
        let err = wait_for_path(path.as_ref(), Duration::from_millis(10)).expect_err("absent");
        let message = err.to_string();
        assert!(
            message.contains(&path.as_ref().display().to_string()),
            "{message}"
        );
        assert!(message.contains("0.010 s"), "{message}");
    }
}
