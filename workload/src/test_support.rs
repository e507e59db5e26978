//! Helpers for the unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A unique path in the temp dir, removed when dropped.
pub struct TempPath(PathBuf);

impl TempPath {
    /// A fresh path whose file name contains `name`.
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(std::env::temp_dir().join(format!(
            "signalfd-workload-test-{}-{n}-{name}.jsonl",
            std::process::id()
        )))
    }
}

impl AsRef<Path> for TempPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        // The file may never have been created.
        let _ = std::fs::remove_file(&self.0);
    }
}
