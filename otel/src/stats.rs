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
    /// Spans lost to failed exports (refused, rejected, or pushed out of a full backlog).
    pub spans_failed: AtomicU64,
    /// Spans sent without an answer in time and never acknowledged by a later attempt: the
    /// destination may have them. Not a loss.
    pub spans_possibly_delivered: AtomicU64,
    /// Spans the final flush could not deliver before the stop deadline.
    pub spans_lost_at_stop: AtomicU64,
    /// Log records the destination acknowledged.
    pub logs_exported: AtomicU64,
    /// Log records lost to failed exports.
    pub logs_failed: AtomicU64,
    /// Log records possibly delivered (see `spans_possibly_delivered`).
    pub logs_possibly_delivered: AtomicU64,
    /// Log records the final flush could not deliver before the stop deadline.
    pub logs_lost_at_stop: AtomicU64,
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
    /// See [`ExportStats::spans_possibly_delivered`].
    pub spans_possibly_delivered: u64,
    /// See [`ExportStats::spans_lost_at_stop`].
    pub spans_lost_at_stop: u64,
    /// See [`ExportStats::logs_exported`].
    pub logs_exported: u64,
    /// See [`ExportStats::logs_failed`].
    pub logs_failed: u64,
    /// See [`ExportStats::logs_possibly_delivered`].
    pub logs_possibly_delivered: u64,
    /// See [`ExportStats::logs_lost_at_stop`].
    pub logs_lost_at_stop: u64,
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
            spans_possibly_delivered: read(&self.spans_possibly_delivered),
            spans_lost_at_stop: read(&self.spans_lost_at_stop),
            logs_exported: read(&self.logs_exported),
            logs_failed: read(&self.logs_failed),
            logs_possibly_delivered: read(&self.logs_possibly_delivered),
            logs_lost_at_stop: read(&self.logs_lost_at_stop),
            export_errors: read(&self.export_errors),
            backlog: read(&self.backlog),
            queued: read(&self.accepted).saturating_sub(read(&self.dequeued)),
        }
    }
}
