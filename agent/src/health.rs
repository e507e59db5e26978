//! Exports kspan's health metrics every interval, and once more at exit with the final figures.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use kspan_otel::{
    counters::Snapshot,
    env_var,
    export::{FailureKind, MetricsExporter},
    ExportError,
};
use tokio::{sync::watch, task::JoinHandle};

/// `OTEL_METRIC_EXPORT_INTERVAL` unset: shorter than the SDK's 60 s, so trouble shows quickly.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// How often to export, from `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds). Whether to export
/// at all is the signal selection's (`OTEL_METRICS_EXPORTER`, `OTEL_SDK_DISABLED`).
pub fn interval_from_env() -> Result<Duration, ExportError> {
    match env_var("OTEL_METRIC_EXPORT_INTERVAL")? {
        None => Ok(DEFAULT_INTERVAL),
        Some(millis) => match millis.trim().parse::<u64>() {
            Ok(millis) if millis > 0 => Ok(Duration::from_millis(millis)),
            _ => Err(ExportError::InvalidEnv {
                variable: "OTEL_METRIC_EXPORT_INTERVAL".into(),
                expected: "a positive whole number of milliseconds",
            }),
        },
    }
}

/// The periodic export task and the latest figures it sends.
pub struct HealthReporter {
    exporter: Arc<MetricsExporter>,
    /// Set once the collector refused the metrics for good: nothing more is sent.
    refused: Arc<AtomicBool>,
    latest: watch::Sender<Snapshot>,
    started: SystemTime,
    task: JoinHandle<()>,
}

impl HealthReporter {
    /// Starts exporting every `interval` on the current tokio runtime.
    pub fn start(exporter: MetricsExporter, interval: Duration) -> Self {
        let exporter = Arc::new(exporter);
        let refused = Arc::new(AtomicBool::new(false));
        let (latest, mut readings) = watch::channel(Snapshot::default());
        let started = SystemTime::now();
        let task = tokio::spawn({
            let exporter = exporter.clone();
            let refused = refused.clone();
            async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let counters = *readings.borrow_and_update();
                    send(&exporter, &counters, started, &refused).await;
                    if refused.load(Ordering::Relaxed) {
                        return;
                    }
                }
            }
        });
        Self {
            exporter,
            refused,
            latest,
            started,
            task,
        }
    }

    /// Replaces the figures the next export sends.
    pub fn update(&self, counters: Snapshot) {
        self.latest.send_replace(counters);
    }

    /// Stops the periodic exports and sends the final figures, unless the collector refused
    /// health metrics before.
    pub async fn finish(self, counters: Snapshot) {
        self.task.abort();
        if !self.refused.load(Ordering::Relaxed) {
            send(&self.exporter, &counters, self.started, &self.refused).await;
        }
    }
}

/// Sends one export. A refusal for good (a collector without a metrics pipeline answers gRPC
/// UNIMPLEMENTED or HTTP 404, every time) is said once and sets `refused`: warning every
/// interval would bury kspan's log under one message while spans and logs flow fine.
async fn send(
    exporter: &MetricsExporter,
    counters: &Snapshot,
    started: SystemTime,
    refused: &AtomicBool,
) {
    let metrics = counters.to_metrics(started, SystemTime::now());
    match exporter.export(metrics).await {
        Ok(0) => {}
        Ok(rejected) => {
            tracing::warn!(rejected, "the collector rejected some health metric points")
        }
        Err(failure) if failure.kind == FailureKind::Refused => {
            refused.store(true, Ordering::Relaxed);
            tracing::warn!(
                answer = %failure,
                "health metrics export refused: they are off for this run (a collector without a metrics pipeline answers gRPC UNIMPLEMENTED or HTTP 404); spans and log records are sent as before"
            );
        }
        Err(error) => tracing::warn!(%error, "health metrics export failed"),
    }
}
