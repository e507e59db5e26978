//! What the export stage delivered and lost; nothing is dropped without being counted here.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the export stage, shared between the pipeline and whoever reports.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Calls accepted into the export queue.
    pub accepted: AtomicU64,
    /// Calls dropped because the export queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Spans (or stdout lines) the destination acknowledged.
    pub spans_exported: AtomicU64,
    /// Spans lost to failed exports.
    pub spans_failed: AtomicU64,
    /// Log records the destination acknowledged.
    pub logs_exported: AtomicU64,
    /// Log records lost to failed exports.
    pub logs_failed: AtomicU64,
    /// Export requests that failed (each is retried while the backlog has room).
    pub export_errors: AtomicU64,
    /// Calls waiting in the retry backlog now (a gauge).
    pub backlog: AtomicU64,
    /// Calls moved from the export queue into the backlog.
    pub dequeued: AtomicU64,
}

/// A point-in-time copy of [`ExportStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportSnapshot {
    /// See [`ExportStats::accepted`].
    pub accepted: u64,
    /// See [`ExportStats::dropped_queue_full`].
    pub dropped_queue_full: u64,
    /// See [`ExportStats::spans_exported`].
    pub spans_exported: u64,
    /// See [`ExportStats::spans_failed`].
    pub spans_failed: u64,
    /// See [`ExportStats::logs_exported`].
    pub logs_exported: u64,
    /// See [`ExportStats::logs_failed`].
    pub logs_failed: u64,
    /// See [`ExportStats::export_errors`].
    pub export_errors: u64,
    /// See [`ExportStats::backlog`].
    pub backlog: u64,
    /// Calls waiting in the export queue now.
    pub queued: u64,
}

impl ExportStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> ExportSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ExportSnapshot {
            accepted: read(&self.accepted),
            dropped_queue_full: read(&self.dropped_queue_full),
            spans_exported: read(&self.spans_exported),
            spans_failed: read(&self.spans_failed),
            logs_exported: read(&self.logs_exported),
            logs_failed: read(&self.logs_failed),
            export_errors: read(&self.export_errors),
            backlog: read(&self.backlog),
            queued: read(&self.accepted).saturating_sub(read(&self.dequeued)),
        }
    }
}
