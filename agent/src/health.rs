//! Exports kspan's health metrics every interval, and once more at exit with the final figures.

use std::time::{Duration, SystemTime};

use kspan_otel::{counters::Snapshot, env_var, export::MetricsExporter, ExportError};
use tokio::{sync::watch, task::JoinHandle};

/// `OTEL_METRIC_EXPORT_INTERVAL` unset: shorter than the SDK's 60 s, so trouble shows quickly.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Whether and how often to export, from `OTEL_METRICS_EXPORTER` and
/// `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds). `None`: metrics are off.
pub fn interval_from_env() -> Result<Option<Duration>, ExportError> {
    match env_var("OTEL_METRICS_EXPORTER")?.as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(_) => {
            return Err(ExportError::InvalidEnv {
                variable: "OTEL_METRICS_EXPORTER".into(),
                expected: "`otlp` or `none`",
            })
        }
    }
    match env_var("OTEL_METRIC_EXPORT_INTERVAL")? {
        None => Ok(Some(DEFAULT_INTERVAL)),
        Some(millis) => match millis.trim().parse::<u64>() {
            Ok(millis) if millis > 0 => Ok(Some(Duration::from_millis(millis))),
            _ => Err(ExportError::InvalidEnv {
                variable: "OTEL_METRIC_EXPORT_INTERVAL".into(),
                expected: "a positive whole number of milliseconds",
            }),
        },
    }
}

/// The periodic export task and the latest figures it sends.
pub struct HealthReporter {
    exporter: std::sync::Arc<MetricsExporter>,
    latest: watch::Sender<Snapshot>,
    started: SystemTime,
    task: JoinHandle<()>,
}

impl HealthReporter {
    /// Starts exporting every `interval` on the current tokio runtime.
    pub fn start(exporter: MetricsExporter, interval: Duration) -> Self {
        let exporter = std::sync::Arc::new(exporter);
        let (latest, mut readings) = watch::channel(Snapshot::default());
        let started = SystemTime::now();
        let task = tokio::spawn({
            let exporter = exporter.clone();
            async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let counters = *readings.borrow_and_update();
                    send(&exporter, &counters, started).await;
                }
            }
        });
        Self {
            exporter,
            latest,
            started,
            task,
        }
    }

    /// Replaces the figures the next export sends.
    pub fn update(&self, counters: Snapshot) {
        self.latest.send_replace(counters);
    }

    /// Stops the periodic exports and sends the final figures.
    pub async fn finish(self, counters: Snapshot) {
        self.task.abort();
        send(&self.exporter, &counters, self.started).await;
    }
}

async fn send(exporter: &MetricsExporter, counters: &Snapshot, started: SystemTime) {
    let metrics = counters.to_metrics(started, SystemTime::now());
    match exporter.export(metrics).await {
        Ok(0) => {}
        Ok(rejected) => {
            tracing::warn!(rejected, "the collector rejected some health metric points")
        }
        Err(error) => tracing::warn!(%error, "health metrics export failed"),
    }
}
