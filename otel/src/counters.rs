//! Every count kspan keeps, from the kernel to the collector, defined once in [`COUNTERS`]: the
//! exit summary (JSON and log line) and the OTLP health metrics are all derived from that table.
//!
//! Adding a counter is one line in [`COUNTERS`] plus the place that counts it (a field of
//! [`KernelCounters`] read from the kernel, or of [`ExportStats`](crate::ExportStats)).

use std::time::SystemTime;

use opentelemetry_proto::tonic::{
    common::v1::{any_value, KeyValue},
    metrics::v1::{
        metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum,
    },
};
use serde_json::{Map, Value};

use crate::{stats::ExportSnapshot, wire::key_value};

/// Where a counter is kept: also its object in the JSON summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// The run as a whole (the reader, and totals over the other sections): the top level.
    Run,
    /// The probes' per-CPU counters map: `"kernel"`.
    Kernel,
    /// The export pipeline: `"export"`.
    Export,
}

impl Section {
    fn json_key(self) -> Option<&'static str> {
        match self {
            Section::Run => None,
            Section::Kernel => Some("kernel"),
            Section::Export => Some("export"),
        }
    }
}

/// What a counter says about the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// How many went through a point of the way: a cumulative sum.
    Count,
    /// Calls lost at this stage (the `kspan.stage` of `kspan.calls.lost`): each adds to `lost`.
    CallsLost(&'static str),
    /// Log records lost at this stage while their calls' spans were not (`kspan.logs.lost`).
    LogsLost(&'static str),
    /// A level now (queue depths, calls inside the kernel), not a total.
    Gauge,
    /// A sum over other counters, for the reader of the summary: no metric point of its own.
    Total,
}

/// One OTLP health metric; counters with the same metric are its points.
#[derive(Debug, PartialEq, Eq)]
pub struct HealthMetric {
    /// The metric's name.
    pub name: &'static str,
    /// Its unit, in UCUM annotation form.
    pub unit: &'static str,
    /// What it measures.
    pub description: &'static str,
}

/// One counter: its name, where it is kept, what it means and how it reaches the collector.
#[derive(Debug)]
pub struct CounterDef {
    /// The name in the JSON summary and in the exit log line.
    pub key: &'static str,
    /// Where it is kept.
    pub section: Section,
    /// What it says about the calls.
    pub role: Role,
    /// The health metric it is a point of, with the attribute telling its point apart from the
    /// metric's other points. Losses need none: their metric and stage follow from the role.
    pub metric: Option<(&'static HealthMetric, Option<(&'static str, &'static str)>)>,
    /// Its value in a snapshot.
    pub read: fn(&Snapshot) -> u64,
}

const CAPTURED: HealthMetric = HealthMetric {
    name: "kspan.calls.captured",
    unit: "{call}",
    description: "Complete calls read from the kernel",
};
const CALLS_LOST: HealthMetric = HealthMetric {
    name: "kspan.calls.lost",
    unit: "{call}",
    description: "Calls lost, by the stage that lost them",
};
const LOGS_LOST: HealthMetric = HealthMetric {
    name: "kspan.logs.lost",
    unit: "{record}",
    description:
        "Log records lost while their calls' spans were delivered or counted lost, by stage",
};
const ENTRIES: HealthMetric = HealthMetric {
    name: "kspan.kernel.entries",
    unit: "{call}",
    description: "Entries the probes stored (calls that began while kspan was attached)",
};
const RETURNS_WITHOUT_ENTRY: HealthMetric = HealthMetric {
    name: "kspan.returns_without_entry",
    unit: "{call}",
    description:
        "Returns whose entry was not seen (calls already running when the probes attached)",
};
const IN_FLIGHT: HealthMetric = HealthMetric {
    name: "kspan.kernel.in_flight",
    unit: "{call}",
    description:
        "Calls begun but not yet read: still running, or their records still in the ring buffer",
};
const ACCEPTED: HealthMetric = HealthMetric {
    name: "kspan.export.accepted",
    unit: "{call}",
    description: "Calls taken into the export queue",
};
const EXPORTED: HealthMetric = HealthMetric {
    name: "kspan.exported",
    unit: "{record}",
    description: "Spans and log records the collector acknowledged",
};
const POSSIBLY_DELIVERED: HealthMetric = HealthMetric {
    name: "kspan.export.possibly_delivered",
    unit: "{record}",
    description: "Spans and log records sent without an answer in time and never acknowledged: the collector may have them (not a loss)",
};
const EXPORT_ERRORS: HealthMetric = HealthMetric {
    name: "kspan.export.errors",
    unit: "{request}",
    description: "Export requests that failed (their calls are retried while the backlog has room)",
};
const QUEUE_DEPTH: HealthMetric = HealthMetric {
    name: "kspan.export.queue.depth",
    unit: "{call}",
    description: "Calls waiting for export",
};

const SPANS: Option<(&str, &str)> = Some(("kspan.signal", "spans"));
const LOGS: Option<(&str, &str)> = Some(("kspan.signal", "logs"));

/// Every counter, in the order the summary and the log line show them.
// One line a counter, so that adding one is adding a line.
#[rustfmt::skip]
pub const COUNTERS: &[CounterDef] = &[
    CounterDef { key: "calls_read", section: Section::Run, role: Role::Count, metric: Some((&CAPTURED, None)), read: |s| s.calls_read },
    CounterDef { key: "malformed", section: Section::Run, role: Role::CallsLost("decode"), metric: None, read: |s| s.malformed },
    CounterDef { key: "lost", section: Section::Run, role: Role::Total, metric: None, read: Snapshot::lost },
    CounterDef { key: "possibly_delivered", section: Section::Run, role: Role::Total, metric: None, read: |s| s.export.spans_possibly_delivered },
    CounterDef { key: "entries", section: Section::Kernel, role: Role::Count, metric: Some((&ENTRIES, None)), read: |s| s.kernel.entries },
    CounterDef { key: "ring_buffer_full", section: Section::Kernel, role: Role::CallsLost("ring_buffer"), metric: None, read: |s| s.kernel.ring_buffer_full },
    CounterDef { key: "stale_entries", section: Section::Kernel, role: Role::CallsLost("stale_entry"), metric: None, read: |s| s.kernel.stale_entries },
    CounterDef { key: "returns_without_entry", section: Section::Kernel, role: Role::Count, metric: Some((&RETURNS_WITHOUT_ENTRY, None)), read: |s| s.kernel.returns_without_entry },
    CounterDef { key: "entries_not_stored", section: Section::Kernel, role: Role::CallsLost("entry_not_stored"), metric: None, read: |s| s.kernel.entries_not_stored },
    CounterDef { key: "in_flight", section: Section::Kernel, role: Role::Gauge, metric: Some((&IN_FLIGHT, None)), read: |s| s.kernel.in_flight },
    CounterDef { key: "accepted", section: Section::Export, role: Role::Count, metric: Some((&ACCEPTED, None)), read: |s| s.export.accepted },
    CounterDef { key: "dropped_queue_full", section: Section::Export, role: Role::CallsLost("export_queue"), metric: None, read: |s| s.export.dropped_queue_full },
    CounterDef { key: "spans_exported", section: Section::Export, role: Role::Count, metric: Some((&EXPORTED, SPANS)), read: |s| s.export.spans_exported },
    CounterDef { key: "spans_failed", section: Section::Export, role: Role::CallsLost("export"), metric: None, read: |s| s.export.spans_failed },
    CounterDef { key: "spans_rejected", section: Section::Export, role: Role::CallsLost("export_rejected"), metric: None, read: |s| s.export.spans_rejected },
    CounterDef { key: "spans_possibly_delivered", section: Section::Export, role: Role::Count, metric: Some((&POSSIBLY_DELIVERED, SPANS)), read: |s| s.export.spans_possibly_delivered },
    CounterDef { key: "spans_lost_at_stop", section: Section::Export, role: Role::CallsLost("stop_deadline"), metric: None, read: |s| s.export.spans_lost_at_stop },
    CounterDef { key: "logs_exported", section: Section::Export, role: Role::Count, metric: Some((&EXPORTED, LOGS)), read: |s| s.export.logs_exported },
    CounterDef { key: "logs_failed", section: Section::Export, role: Role::LogsLost("export"), metric: None, read: |s| s.export.logs_failed },
    CounterDef { key: "logs_rejected", section: Section::Export, role: Role::LogsLost("export_rejected"), metric: None, read: |s| s.export.logs_rejected },
    CounterDef { key: "logs_possibly_delivered", section: Section::Export, role: Role::Count, metric: Some((&POSSIBLY_DELIVERED, LOGS)), read: |s| s.export.logs_possibly_delivered },
    CounterDef { key: "logs_lost_at_stop", section: Section::Export, role: Role::LogsLost("stop_deadline"), metric: None, read: |s| s.export.logs_lost_at_stop },
    CounterDef { key: "export_errors", section: Section::Export, role: Role::Count, metric: Some((&EXPORT_ERRORS, None)), read: |s| s.export.export_errors },
    CounterDef { key: "backlog", section: Section::Export, role: Role::Gauge, metric: Some((&QUEUE_DEPTH, Some(("kspan.queue", "retry_backlog")))), read: |s| s.export.backlog },
    CounterDef { key: "queued", section: Section::Export, role: Role::Gauge, metric: Some((&QUEUE_DEPTH, Some(("kspan.queue", "intake")))), read: |s| s.export.queued },
];

/// The kernel-side counters and the calls still waiting for their return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    /// Entries stored.
    pub entries: u64,
    /// Complete calls dropped because the ring buffer was full.
    pub ring_buffer_full: u64,
    /// Entries whose return never came (overwritten by the thread's next entry).
    pub stale_entries: u64,
    /// Returns seen without an entry (e.g. the call began before kspan attached).
    pub returns_without_entry: u64,
    /// Entries not stored: the kernel could not allocate or refused the thread's storage.
    pub entries_not_stored: u64,
    /// Entries still waiting for their return (or their record still in the ring buffer) when
    /// read: entries that neither completed nor went stale. Filled in by [`Snapshot::new`].
    pub in_flight: u64,
}

/// Every stage's counters at one moment: what [`COUNTERS`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Complete calls read from the ring buffer and decoded.
    pub calls_read: u64,
    /// Ring-buffer records that could not be decoded.
    pub malformed: u64,
    /// The kernel's counters.
    pub kernel: KernelCounters,
    /// The export pipeline's counters.
    pub export: ExportSnapshot,
}

impl Snapshot {
    /// Gathers the stages' counters; the calls still inside the kernel follow from them.
    pub fn new(
        calls_read: u64,
        malformed: u64,
        kernel: KernelCounters,
        export: ExportSnapshot,
    ) -> Self {
        let mut kernel = kernel;
        let settled = kernel.stale_entries + kernel.ring_buffer_full + calls_read + malformed;
        kernel.in_flight = kernel.entries.saturating_sub(settled);
        Self {
            calls_read,
            malformed,
            kernel,
            export,
        }
    }

    /// Calls lost at any stage.
    pub fn lost(&self) -> u64 {
        self.sum(|role| matches!(role, Role::CallsLost(_)))
    }

    /// Log records lost at any stage while their spans were not.
    pub fn logs_lost(&self) -> u64 {
        self.sum(|role| matches!(role, Role::LogsLost(_)))
    }

    fn sum(&self, counts: impl Fn(Role) -> bool) -> u64 {
        COUNTERS
            .iter()
            .filter(|def| counts(def.role))
            .map(|def| (def.read)(self))
            .sum()
    }

    /// The JSON summary: the run's counters at the top, each other section an object.
    pub fn to_json(&self) -> Value {
        let mut top = Map::new();
        for def in COUNTERS {
            let value = Value::from((def.read)(self));
            let object = match def.section.json_key() {
                None => &mut top,
                Some(key) => match top.entry(key).or_insert_with(|| Value::Object(Map::new())) {
                    Value::Object(object) => object,
                    _ => unreachable!("section keys are not counter keys"),
                },
            };
            object.insert(def.key.to_string(), value);
        }
        Value::Object(top)
    }

    /// Every counter as `key=value`, in table order: the exit log line.
    pub fn to_log_fields(&self) -> String {
        COUNTERS
            .iter()
            .map(|def| format!("{}={}", def.key, (def.read)(self)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Logs the summary: a warning when anything was lost, or when the collector's answer to
    /// some calls never came (delivered or possibly delivered).
    pub fn log(&self) {
        let fields = self.to_log_fields();
        let possibly_delivered =
            self.export.spans_possibly_delivered + self.export.logs_possibly_delivered;
        if self.lost() > 0 || self.logs_lost() > 0 {
            tracing::warn!("summary: calls were lost: {fields}");
        } else if possibly_delivered > 0 {
            tracing::warn!(
                "summary: every call delivered or possibly delivered (the collector did not answer some requests in time; it may hold those calls twice): {fields}"
            );
        } else {
            tracing::info!("summary: {fields}");
        }
    }

    /// The counters as OTLP health metrics: cumulative sums since `start`, gauges at `now`,
    /// one metric per [`HealthMetric`], in table order.
    pub fn to_metrics(&self, start: SystemTime, now: SystemTime) -> Vec<Metric> {
        let mut metrics: Vec<(&HealthMetric, bool, Vec<NumberDataPoint>)> = Vec::new();
        for def in COUNTERS {
            let (metric, label) = match (def.role, def.metric) {
                (Role::CallsLost(stage), _) => (&CALLS_LOST, Some(("kspan.stage", stage))),
                (Role::LogsLost(stage), _) => (&LOGS_LOST, Some(("kspan.stage", stage))),
                (_, Some(metric)) => metric,
                (_, None) => continue,
            };
            let point = NumberDataPoint {
                attributes: label.map(attribute).into_iter().collect(),
                start_time_unix_nano: crate::wire::unix_nanos(start),
                time_unix_nano: crate::wire::unix_nanos(now),
                value: Some(number_data_point::Value::AsInt((def.read)(self) as i64)),
                ..NumberDataPoint::default()
            };
            match metrics.iter_mut().find(|(known, ..)| *known == metric) {
                Some((.., points)) => points.push(point),
                None => metrics.push((metric, def.role == Role::Gauge, vec![point])),
            }
        }
        metrics
            .into_iter()
            .map(|(metric, gauge, data_points)| Metric {
                name: metric.name.to_string(),
                description: metric.description.to_string(),
                unit: metric.unit.to_string(),
                data: Some(if gauge {
                    metric::Data::Gauge(Gauge { data_points })
                } else {
                    metric::Data::Sum(Sum {
                        data_points,
                        aggregation_temporality: AggregationTemporality::Cumulative.into(),
                        is_monotonic: true,
                    })
                }),
                ..Metric::default()
            })
            .collect()
    }
}

fn attribute((key, value): (&str, &str)) -> KeyValue {
    key_value(key, any_value::Value::StringValue(value.to_string()))
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use super::*;

    /// A snapshot in which every counter has a value of its own, so a counter read from the
    /// wrong place shows.
    fn distinct() -> Snapshot {
        let mut next = 100;
        let mut value = || {
            next += 1;
            next
        };
        let kernel = KernelCounters {
            entries: 10_000,
            ring_buffer_full: value(),
            stale_entries: value(),
            returns_without_entry: value(),
            entries_not_stored: value(),
            in_flight: 0,
        };
        let export = ExportSnapshot {
            accepted: value(),
            dropped_queue_full: value(),
            spans_exported: value(),
            spans_failed: value(),
            spans_rejected: value(),
            spans_possibly_delivered: value(),
            spans_lost_at_stop: value(),
            logs_exported: value(),
            logs_failed: value(),
            logs_rejected: value(),
            logs_possibly_delivered: value(),
            logs_lost_at_stop: value(),
            export_errors: value(),
            backlog: value(),
            queued: value(),
        };
        Snapshot::new(value(), value(), kernel, export)
    }

    /// Leaf values of a JSON object, keyed by their own name (sections flattened).
    fn leaves(json: &Value) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (key, value) in json.as_object().expect("an object") {
            match value {
                Value::Object(_) => out.extend(leaves(value)),
                value => {
                    let previous = out.insert(key.clone(), value.as_u64().expect("a count"));
                    assert_eq!(previous, None, "{key} appears twice");
                }
            }
        }
        out
    }

    fn log_values(line: &str) -> BTreeMap<String, u64> {
        line.split(' ')
            .map(|field| {
                let (key, value) = field.split_once('=').expect("key=value");
                (key.to_string(), value.parse().expect("a count"))
            })
            .collect()
    }

    /// `(metric name, attribute value or "") → value`, and whether each metric is a gauge.
    fn metric_points(metrics: &[Metric]) -> BTreeMap<(String, String), (u64, bool)> {
        let mut out = BTreeMap::new();
        for metric in metrics {
            let (points, gauge) = match &metric.data {
                Some(metric::Data::Sum(sum)) => {
                    assert!(sum.is_monotonic, "{} is a monotonic sum", metric.name);
                    (&sum.data_points, false)
                }
                Some(metric::Data::Gauge(gauge)) => (&gauge.data_points, true),
                other => panic!("{}: unexpected data {other:?}", metric.name),
            };
            for point in points {
                let label = match point.attributes.first().and_then(|kv| kv.value.as_ref()) {
                    Some(value) => match &value.value {
                        Some(any_value::Value::StringValue(label)) => label.clone(),
                        other => panic!("{}: attribute {other:?}", metric.name),
                    },
                    None => String::new(),
                };
                let Some(number_data_point::Value::AsInt(value)) = point.value else {
                    panic!("{}: not an int point", metric.name);
                };
                let previous = out.insert((metric.name.clone(), label), (value as u64, gauge));
                assert_eq!(previous, None, "{}: a point twice", metric.name);
            }
        }
        out
    }

    /// The metric point a counter is, from the table alone.
    fn point_of(def: &CounterDef) -> Option<(String, String)> {
        let (metric, label) = match (def.role, def.metric) {
            (Role::CallsLost(stage), _) => (&CALLS_LOST, Some(("kspan.stage", stage))),
            (Role::LogsLost(stage), _) => (&LOGS_LOST, Some(("kspan.stage", stage))),
            (_, Some(metric)) => metric,
            (_, None) => return None,
        };
        let label = label
            .map(|(_, value)| value.to_string())
            .unwrap_or_default();
        Some((metric.name.to_string(), label))
    }

    #[test]
    fn summary_log_and_metrics_list_the_same_counters_with_the_same_values() {
        let snapshot = distinct();
        let json = leaves(&snapshot.to_json());
        let log = log_values(&snapshot.to_log_fields());
        assert_eq!(log, json, "the log line and the JSON summary differ");

        let table: Vec<&str> = COUNTERS.iter().map(|def| def.key).collect();
        assert_eq!(
            json.keys().map(String::as_str).collect::<Vec<_>>(),
            {
                let mut sorted = table.clone();
                sorted.sort_unstable();
                sorted
            },
            "the summary lists exactly the table's counters"
        );

        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let points = metric_points(&snapshot.to_metrics(start, start + Duration::from_secs(10)));
        let mut expected = BTreeMap::new();
        for def in COUNTERS {
            match (def.role, point_of(def)) {
                (Role::Total, None) => {}
                (Role::Total, Some(point)) => {
                    panic!("{}: a total is not a point: {point:?}", def.key)
                }
                (role, Some(point)) => {
                    expected.insert(point, (json[def.key], role == Role::Gauge));
                }
                (_, None) => panic!("{}: every counter but a total is a metric point", def.key),
            }
        }
        assert_eq!(
            points, expected,
            "the health metrics differ from the summary"
        );

        // The totals are the sums of the metrics' loss points.
        let calls_lost: u64 = points
            .iter()
            .filter(|((name, _), _)| name == "kspan.calls.lost")
            .map(|(_, (value, _))| value)
            .sum();
        assert_eq!(calls_lost, json["lost"]);
        assert_eq!(
            json["possibly_delivered"],
            snapshot.export.spans_possibly_delivered
        );
    }

    #[test]
    fn every_field_counted_is_in_the_table() {
        // A field added where something is counted but not to the table would never be
        // reported: the struct's own fields must be the table's counters, totals aside.
        let fields = leaves(&serde_json::to_value(distinct()).expect("serialisable"));
        let table: BTreeMap<String, u64> = COUNTERS
            .iter()
            .filter(|def| def.role != Role::Total)
            .map(|def| (def.key.to_string(), (def.read)(&distinct())))
            .collect();
        assert_eq!(
            fields, table,
            "each field is read by the table's line of the same name"
        );
    }

    #[test]
    fn lost_adds_every_call_loss_and_nothing_else() {
        let snapshot = distinct();
        let (k, e) = (snapshot.kernel, snapshot.export);
        assert_eq!(
            snapshot.lost(),
            k.ring_buffer_full
                + k.stale_entries
                + k.entries_not_stored
                + snapshot.malformed
                + e.dropped_queue_full
                + e.spans_failed
                + e.spans_rejected
                + e.spans_lost_at_stop
        );
        assert_eq!(
            snapshot.logs_lost(),
            e.logs_failed + e.logs_rejected + e.logs_lost_at_stop
        );
    }

    #[test]
    fn in_flight_is_what_the_kernel_stored_and_nobody_settled() {
        let kernel = KernelCounters {
            entries: 23,
            ring_buffer_full: 2,
            stale_entries: 3,
            returns_without_entry: 100,
            ..KernelCounters::default()
        };
        // 23 entries: 10 calls read, 1 malformed, 3 stale, 2 dropped by the ring buffer.
        let snapshot = Snapshot::new(10, 1, kernel, ExportSnapshot::default());
        assert_eq!(snapshot.kernel.in_flight, 7);
    }

    #[test]
    fn each_loss_stage_has_its_own_point_even_at_zero() {
        let start = SystemTime::UNIX_EPOCH;
        let metrics = Snapshot::default().to_metrics(start, start + Duration::from_secs(1));
        let stages: Vec<String> = metric_points(&metrics)
            .into_keys()
            .filter(|(name, _)| name == "kspan.calls.lost")
            .map(|(_, stage)| stage)
            .collect();
        assert_eq!(
            stages,
            [
                "decode",
                "entry_not_stored",
                "export",
                "export_queue",
                "export_rejected",
                "ring_buffer",
                "stale_entry",
                "stop_deadline"
            ]
        );
    }
}
