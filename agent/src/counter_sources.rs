//! Where the agent reads each stage's counters, for the summary and the health metrics; what
//! every counter means is defined once, in [`kspan_otel::counters`].

use std::sync::{atomic::Ordering, Arc};

use kspan_otel::{counters::Snapshot, ExportStats};

use crate::{probes::CounterMaps, reader::ReaderCounts};

/// The reader's, the kernel's and the export pipeline's counters.
pub struct CounterSources {
    /// The ring-buffer reader's counts.
    pub reader: Arc<ReaderCounts>,
    /// The probes' per-CPU counters map (it outlives the programs).
    pub kernel: CounterMaps,
    /// The export pipeline's counters.
    pub export: Arc<ExportStats>,
}

impl CounterSources {
    /// Reads every stage now.
    pub fn read(&self) -> anyhow::Result<Snapshot> {
        Ok(Snapshot::new(
            self.reader.calls.load(Ordering::Relaxed),
            self.reader.malformed.load(Ordering::Relaxed),
            self.kernel.read()?,
            self.export.snapshot(),
        ))
    }
}
