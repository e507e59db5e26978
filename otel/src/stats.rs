//! What the export stage delivered and lost; nothing is dropped without being counted here.
//! Each counter's meaning for the summary and the health metrics is in [`crate::counters`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Declares the export counters once: the live atomics and their point-in-time copy.
macro_rules! export_counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Counters of the export stage, shared between the pipeline and whoever reports.
        #[derive(Debug, Default)]
        pub struct ExportStats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
            /// Calls moved from the export queue into the backlog.
            pub dequeued: AtomicU64,
        }

        /// A point-in-time copy of [`ExportStats`].
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct ExportSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
            /// Calls waiting in the export queue now.
            pub queued: u64,
        }

        impl ExportStats {
            /// Reads every counter.
            pub fn snapshot(&self) -> ExportSnapshot {
                let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
                ExportSnapshot {
                    $($name: read(&self.$name),)*
                    queued: read(&self.accepted).saturating_sub(read(&self.dequeued)),
                }
            }
        }
    };
}

export_counters! {
    /// Calls accepted into the export queue.
    accepted,
    /// Calls dropped because the export queue was full.
    dropped_queue_full,
    /// Spans (or stdout lines) the destination acknowledged.
    spans_exported,
    /// Spans lost to failed exports: pushed out of a full backlog while they waited for retry.
    spans_failed,
    /// Spans the collector refused for good (a non-retryable status, or rejected in a partial
    /// success): lost at once, never retried.
    spans_rejected,
    /// Spans sent without an answer in time and never acknowledged by a later attempt: the
    /// destination may have them. Not a loss.
    spans_possibly_delivered,
    /// Spans the final flush could not deliver before the stop deadline.
    spans_lost_at_stop,
    /// Log records the destination acknowledged.
    logs_exported,
    /// Log records lost to failed exports.
    logs_failed,
    /// Log records the collector refused for good (see `spans_rejected`).
    logs_rejected,
    /// Log records possibly delivered (see `spans_possibly_delivered`).
    logs_possibly_delivered,
    /// Log records the final flush could not deliver before the stop deadline.
    logs_lost_at_stop,
    /// Export requests that failed (each is retried while the backlog has room).
    export_errors,
    /// Calls waiting in the retry backlog now (a gauge).
    backlog,
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
}
