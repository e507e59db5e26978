//! Exports kspan's health metrics every interval, and once more at exit with the final figures.

use std::time::{Duration, SystemTime};

use kspan_otel::{env_var, export::MetricsExporter, ExportError, Health};
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
    exporter: std::sync::Arc<MetricsExporter>,
    latest: watch::Sender<Health>,
    started: SystemTime,
    task: JoinHandle<()>,
}

impl HealthReporter {
    /// Starts exporting every `interval` on the current tokio runtime.
    pub fn start(exporter: MetricsExporter, interval: Duration) -> Self {
        let exporter = std::sync::Arc::new(exporter);
        let (latest, mut readings) = watch::channel(Health::default());
        let started = SystemTime::now();
        let task = tokio::spawn({
            let exporter = exporter.clone();
            async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let health = readings.borrow_and_update().clone();
                    send(&exporter, &health, started).await;
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
    pub fn update(&self, health: Health) {
        self.latest.send_replace(health);
    }

    /// Stops the periodic exports and sends the final figures.
    pub async fn finish(self, health: Health) {
        self.task.abort();
        send(&self.exporter, &health, self.started).await;
    }
}

async fn send(exporter: &MetricsExporter, health: &Health, started: SystemTime) {
    let metrics = health.to_metrics(started, SystemTime::now());
    match exporter.export(metrics).await {
        Ok(0) => {}
        Ok(rejected) => {
            tracing::warn!(rejected, "the collector rejected some health metric points")
        }
        Err(error) => tracing::warn!(%error, "health metrics export failed"),
    }
}
