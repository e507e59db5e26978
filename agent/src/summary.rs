//! What one run captured, exported and lost: logged at exit and optionally written as JSON.

use std::sync::atomic::Ordering;

use kspan_otel::{ExportSnapshot, Health, LossStage};

use crate::{probes::KernelCounters, reader::ReaderCounts};

/// Counters of every stage, from the kernel to the collector.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Summary {
    /// Complete calls read from the ring buffer.
    pub calls_read: u64,
    /// Records that could not be decoded.
    pub malformed: u64,
    /// Kernel-side counters.
    pub kernel: KernelCounters,
    /// Export-side counters.
    pub export: ExportSnapshot,
    /// Calls lost at any stage: ring buffer, in-flight map, decoding, export queue, export,
    /// stop deadline.
    pub lost: u64,
    /// Calls whose spans were sent but never acknowledged (the collector did not answer in
    /// time): delivered or possibly delivered, not lost.
    pub possibly_delivered: u64,
    /// Which signal decides a call's export.
    #[serde(skip)]
    judged_by: JudgedBy,
}

/// The signal whose fate is a call's: its span, or its log record when spans are not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JudgedBy {
    /// Spans (or stdout lines).
    Spans,
    /// Log records.
    Logs,
}

/// The export counters of the signal that decides a call's fate.
struct CallExport {
    failed: u64,
    lost_at_stop: u64,
    possibly_delivered: u64,
}

impl CallExport {
    fn of(export: &ExportSnapshot, judged_by: JudgedBy) -> Self {
        match judged_by {
            JudgedBy::Spans => Self {
                failed: export.spans_failed,
                lost_at_stop: export.spans_lost_at_stop,
                possibly_delivered: export.spans_possibly_delivered,
            },
            JudgedBy::Logs => Self {
                failed: export.logs_failed,
                lost_at_stop: export.logs_lost_at_stop,
                possibly_delivered: export.logs_possibly_delivered,
            },
        }
    }
}

impl Summary {
    /// Gathers every stage's counters. A call's export is judged by its span, or by its log
    /// record when spans are not sent (`OTEL_TRACES_EXPORTER=none`).
    pub fn new(
        reader: &ReaderCounts,
        kernel: KernelCounters,
        export: ExportSnapshot,
        judged_by: JudgedBy,
    ) -> Self {
        let calls_read = reader.calls.load(Ordering::Relaxed);
        let malformed = reader.malformed.load(Ordering::Relaxed);
        let kernel = kernel.with_records_read(calls_read + malformed);
        let calls = CallExport::of(&export, judged_by);
        let lost = kernel.ring_buffer_full
            + kernel.stale_entries
            + kernel.entries_not_stored
            + malformed
            + export.dropped_queue_full
            + calls.failed
            + calls.lost_at_stop;
        Self {
            calls_read,
            malformed,
            kernel,
            export,
            lost,
            possibly_delivered: calls.possibly_delivered,
            judged_by,
        }
    }

    /// The same figures as health metrics.
    pub fn health(&self) -> Health {
        let (k, e) = (&self.kernel, &self.export);
        let calls = CallExport::of(e, self.judged_by);
        Health {
            calls_captured: self.calls_read,
            lost: vec![
                (LossStage::RingBuffer, k.ring_buffer_full),
                (LossStage::EntryNotStored, k.entries_not_stored),
                (LossStage::StaleEntry, k.stale_entries),
                (LossStage::Decode, self.malformed),
                (LossStage::ExportQueue, e.dropped_queue_full),
                (LossStage::Export, calls.failed),
                (LossStage::StopDeadline, calls.lost_at_stop),
            ],
            returns_without_entry: k.returns_without_entry,
            spans_exported: e.spans_exported,
            logs_exported: e.logs_exported,
            spans_possibly_delivered: e.spans_possibly_delivered,
            logs_possibly_delivered: e.logs_possibly_delivered,
            export_errors: e.export_errors,
            export_queue_depth: e.queued,
            export_backlog_depth: e.backlog,
        }
    }

    /// Logs the summary: a warning when anything was lost, or when the collector's answer to
    /// some calls never came (delivered or possibly delivered).
    pub fn log(&self) {
        let (k, e) = (&self.kernel, &self.export);
        macro_rules! emit {
            ($level:ident, $message:literal) => {
                tracing::$level!(
                    calls = self.calls_read,
                    spans_exported = e.spans_exported,
                    logs_exported = e.logs_exported,
                    lost = self.lost,
                    possibly_delivered = self.possibly_delivered,
                    ring_buffer_full = k.ring_buffer_full,
                    stale_entries = k.stale_entries,
                    entries_not_stored = k.entries_not_stored,
                    returns_without_entry = k.returns_without_entry,
                    in_flight_at_exit = k.in_flight,
                    malformed = self.malformed,
                    export_queue_full = e.dropped_queue_full,
                    spans_failed = e.spans_failed,
                    logs_failed = e.logs_failed,
                    spans_lost_at_stop = e.spans_lost_at_stop,
                    logs_lost_at_stop = e.logs_lost_at_stop,
                    logs_possibly_delivered = e.logs_possibly_delivered,
                    $message
                )
            };
        }
        if self.lost > 0 || e.logs_failed > 0 || e.logs_lost_at_stop > 0 {
            emit!(warn, "summary: calls were lost");
        } else if self.possibly_delivered > 0 || e.logs_possibly_delivered > 0 {
            emit!(
                warn,
                "summary: every call delivered or possibly delivered (the collector did not answer some requests in time; it may hold those calls twice)"
            );
        } else {
            emit!(info, "summary");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_adds_every_stage() {
        let reader = ReaderCounts::default();
        reader.calls.store(10, Ordering::Relaxed);
        reader.malformed.store(1, Ordering::Relaxed);
        let kernel = KernelCounters {
            entries: 23,
            ring_buffer_full: 2,
            stale_entries: 3,
            returns_without_entry: 100,
            entries_not_stored: 4,
            in_flight: 0,
        };
        let export = ExportSnapshot {
            dropped_queue_full: 5,
            spans_failed: 6,
            spans_lost_at_stop: 7,
            spans_possibly_delivered: 8,
            ..Default::default()
        };
        let summary = Summary::new(&reader, kernel, export, JudgedBy::Spans);
        // Possibly delivered is not lost.
        assert_eq!(summary.lost, 1 + 2 + 3 + 4 + 5 + 6 + 7);
        assert_eq!(summary.possibly_delivered, 8);
        let health = summary.health();
        assert_eq!(
            health.lost.iter().map(|(_, n)| n).sum::<u64>(),
            summary.lost
        );
        assert_eq!(health.calls_captured, 10);
        // 23 entries: 11 records read, 3 stale, 2 dropped by the ring buffer; 7 still inside.
        assert_eq!(summary.kernel.in_flight, 7);
    }
}
