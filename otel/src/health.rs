//! kspan's own health as OTLP metrics, so the pipeline that carries the calls also shows when
//! the agent is struggling: calls captured, lost per stage, export errors, queue depths.

use std::time::SystemTime;

use opentelemetry_proto::tonic::{
    common::v1::{any_value, KeyValue},
    metrics::v1::{
        metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum,
    },
};

use crate::wire::{key_value, unix_nanos};

/// Where along the way calls were lost, as the `kspan.stage` attribute names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossStage {
    /// The kernel ring buffer was full.
    RingBuffer,
    /// The kernel could not store an entry (no memory for the thread's storage, or refused).
    EntryNotStored,
    /// An entry whose return never came (or came too late to pair).
    StaleEntry,
    /// A ring-buffer record the agent could not decode.
    Decode,
    /// The export queue was full.
    ExportQueue,
    /// The collector never took the span (refused, rejected, or evicted from the backlog).
    Export,
    /// The final flush could not deliver the span before the stop deadline.
    StopDeadline,
}

impl LossStage {
    fn name(self) -> &'static str {
        match self {
            LossStage::RingBuffer => "ring_buffer",
            LossStage::EntryNotStored => "entry_not_stored",
            LossStage::StaleEntry => "stale_entry",
            LossStage::Decode => "decode",
            LossStage::ExportQueue => "export_queue",
            LossStage::Export => "export",
            LossStage::StopDeadline => "stop_deadline",
        }
    }
}

/// One reading of every health figure; counters are totals since the agent started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// Complete calls read from the ring buffer.
    pub calls_captured: u64,
    /// Calls lost, per stage.
    pub lost: Vec<(LossStage, u64)>,
    /// Returns whose entry was never seen (calls already running at attach): not calls lost.
    pub returns_without_entry: u64,
    /// Spans the collector acknowledged.
    pub spans_exported: u64,
    /// Log records the collector acknowledged.
    pub logs_exported: u64,
    /// Spans sent without an answer and never acknowledged: the collector may have them.
    pub spans_possibly_delivered: u64,
    /// Log records sent without an answer and never acknowledged.
    pub logs_possibly_delivered: u64,
    /// Export requests that failed.
    pub export_errors: u64,
    /// Calls waiting in the export queue now.
    pub export_queue_depth: u64,
    /// Calls waiting in the retry backlog now.
    pub export_backlog_depth: u64,
}

impl Health {
    /// The figures as OTLP metrics: cumulative sums since `start`, gauges at `now`.
    pub fn to_metrics(&self, start: SystemTime, now: SystemTime) -> Vec<Metric> {
        let point = |value: u64, attributes: Vec<KeyValue>| NumberDataPoint {
            attributes,
            start_time_unix_nano: unix_nanos(start),
            time_unix_nano: unix_nanos(now),
            value: Some(number_data_point::Value::AsInt(value as i64)),
            ..NumberDataPoint::default()
        };
        let metric = |name: &str, unit: &str, description: &str, data| Metric {
            name: name.to_string(),
            description: description.to_string(),
            unit: unit.to_string(),
            data: Some(data),
            ..Metric::default()
        };
        let counter = |name: &str, unit: &str, description: &str, points| {
            let sum = Sum {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative.into(),
                is_monotonic: true,
            };
            metric(name, unit, description, metric::Data::Sum(sum))
        };
        let gauge = |name: &str, unit: &str, description: &str, points| {
            let gauge = Gauge {
                data_points: points,
            };
            metric(name, unit, description, metric::Data::Gauge(gauge))
        };
        let labelled = |key: &str, value: &str| {
            vec![key_value(
                key,
                any_value::Value::StringValue(value.to_string()),
            )]
        };
        vec![
            counter(
                "kspan.calls.captured",
                "{call}",
                "Complete calls read from the kernel",
                vec![point(self.calls_captured, vec![])],
            ),
            counter(
                "kspan.calls.lost",
                "{call}",
                "Calls lost, by the stage that lost them",
                self.lost
                    .iter()
                    .map(|(stage, lost)| point(*lost, labelled("kspan.stage", stage.name())))
                    .collect(),
            ),
            counter(
                "kspan.returns_without_entry",
                "{call}",
                "Returns whose entry was not seen (calls already running when the probes attached)",
                vec![point(self.returns_without_entry, vec![])],
            ),
            counter(
                "kspan.exported",
                "{record}",
                "Spans and log records the collector acknowledged",
                vec![
                    point(self.spans_exported, labelled("kspan.signal", "spans")),
                    point(self.logs_exported, labelled("kspan.signal", "logs")),
                ],
            ),
            counter(
                "kspan.export.possibly_delivered",
                "{record}",
                "Spans and log records sent without an answer in time and never acknowledged: the collector may have them (not a loss)",
                vec![
                    point(self.spans_possibly_delivered, labelled("kspan.signal", "spans")),
                    point(self.logs_possibly_delivered, labelled("kspan.signal", "logs")),
                ],
            ),
            counter(
                "kspan.export.errors",
                "{request}",
                "Export requests that failed (their calls are retried while the backlog has room)",
                vec![point(self.export_errors, vec![])],
            ),
            gauge(
                "kspan.export.queue.depth",
                "{call}",
                "Calls waiting for export",
                vec![
                    point(self.export_queue_depth, labelled("kspan.queue", "intake")),
                    point(
                        self.export_backlog_depth,
                        labelled("kspan.queue", "retry_backlog"),
                    ),
                ],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn losses_are_one_point_per_stage() {
        let health = Health {
            calls_captured: 90,
            lost: vec![
                (LossStage::RingBuffer, 7),
                (LossStage::Export, 3),
                (LossStage::StopDeadline, 2),
            ],
            export_queue_depth: 5,
            ..Health::default()
        };
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let now = start + Duration::from_secs(10);
        let metrics = health.to_metrics(start, now);
        let lost = metrics
            .iter()
            .find(|metric| metric.name == "kspan.calls.lost")
            .expect("lost metric");
        let Some(metric::Data::Sum(sum)) = &lost.data else {
            panic!("kspan.calls.lost is not a sum: {lost:?}");
        };
        assert!(sum.is_monotonic);
        let points: Vec<(String, i64)> = sum
            .data_points
            .iter()
            .map(|point| {
                let stage = match &point.attributes[0].value.as_ref().unwrap().value {
                    Some(any_value::Value::StringValue(stage)) => stage.clone(),
                    other => panic!("stage attribute: {other:?}"),
                };
                let Some(number_data_point::Value::AsInt(value)) = point.value else {
                    panic!("not an int point");
                };
                assert_eq!(point.start_time_unix_nano, 100_000_000_000);
                assert_eq!(point.time_unix_nano, 110_000_000_000);
                (stage, value)
            })
            .collect();
        assert_eq!(
            points,
            [
                ("ring_buffer".to_string(), 7),
                ("export".to_string(), 3),
                ("stop_deadline".to_string(), 2)
            ]
        );
        assert!(metrics
            .iter()
            .any(|metric| metric.name == "kspan.export.queue.depth"
                && matches!(metric.data, Some(metric::Data::Gauge(_)))));
    }

    #[test]
    fn possibly_delivered_is_its_own_counter_not_a_loss() {
        let health = Health {
            spans_possibly_delivered: 40,
            logs_possibly_delivered: 30,
            ..Health::default()
        };
        let start = SystemTime::UNIX_EPOCH;
        let metrics = health.to_metrics(start, start + Duration::from_secs(1));
        let values = |name: &str| -> Vec<(String, i64)> {
            let metric = metrics.iter().find(|m| m.name == name).expect(name);
            let Some(metric::Data::Sum(sum)) = &metric.data else {
                panic!("{name} is not a sum: {metric:?}");
            };
            sum.data_points
                .iter()
                .map(|point| {
                    let label = match point.attributes.first().and_then(|a| a.value.as_ref()) {
                        Some(value) => format!("{:?}", value.value),
                        None => String::new(),
                    };
                    let Some(number_data_point::Value::AsInt(value)) = point.value else {
                        panic!("not an int point");
                    };
                    (label, value)
                })
                .collect()
        };
        let spans = format!("{:?}", Some(any_value::Value::StringValue("spans".into())));
        let logs = format!("{:?}", Some(any_value::Value::StringValue("logs".into())));
        assert_eq!(
            values("kspan.export.possibly_delivered"),
            [(spans, 40), (logs, 30)]
        );
        assert_eq!(values("kspan.calls.lost"), []);
    }
}
