//! The dump format: JSON lines, one per received request, in arrival order:
//!
//! ```text
//! {"signal":"traces","transport":"grpc","request":{"resourceSpans":[...]}}
//! ```
//!
//! `request` is the export request in OTLP/JSON as `opentelemetry-proto` writes it: trace and
//! span ids as lowercase hex, 64-bit integers as decimal strings, enums as numbers. Reading a
//! dump back gives requests equal to the ones written, floats included.
//!
//! The one exception is a non-finite double (NaN, ±infinity) outside a summary quantile:
//! `opentelemetry-proto` writes it as `null`, which reads back as an absent value (attributes,
//! histogram sum/min/max) or fails to load. Nothing kspan sends carries one.

use crate::{ExportRequest, ReceivedRequest, ReceiverError, Signal, Transport};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

#[derive(Serialize)]
struct LineOut<'a> {
    signal: Signal,
    transport: Transport,
    request: RequestOut<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RequestOut<'a> {
    Traces(&'a opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest),
    Logs(&'a opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest),
    Metrics(&'a opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest),
}

#[derive(Deserialize)]
struct LineIn<'a> {
    signal: Signal,
    transport: Transport,
    #[serde(borrow)]
    request: &'a RawValue,
}

impl ReceivedRequest {
    /// This request as one dump line (no trailing newline).
    pub fn to_json_line(&self) -> Result<String, ReceiverError> {
        let request = match &self.request {
            ExportRequest::Traces(request) => RequestOut::Traces(request),
            ExportRequest::Logs(request) => RequestOut::Logs(request),
            ExportRequest::Metrics(request) => RequestOut::Metrics(request),
        };
        let line = LineOut {
            signal: self.request.signal(),
            transport: self.transport,
            request,
        };
        serde_json::to_string(&line).map_err(|cause| ReceiverError::Encode {
            signal: self.request.signal(),
            cause,
        })
    }

    /// Parses one dump line; the error message says what is wrong with it.
    pub fn from_json_line(line: &str) -> Result<ReceivedRequest, String> {
        let parsed: LineIn<'_> = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let body = parsed.request.get();
        let request = match parsed.signal {
            Signal::Traces => serde_json::from_str(body).map(ExportRequest::Traces),
            Signal::Logs => serde_json::from_str(body).map(ExportRequest::Logs),
            Signal::Metrics => serde_json::from_str(body).map(ExportRequest::Metrics),
        }
        .map_err(|e| format!("bad {} request: {e}", parsed.signal))?;
        Ok(ReceivedRequest {
            transport: parsed.transport,
            request,
        })
    }
}

/// Appends requests to a dump file, one line each, written through to the OS at once so that
/// killing the process loses nothing already acknowledged.
#[derive(Debug)]
pub struct DumpWriter {
    path: PathBuf,
    file: Mutex<File>,
}

impl DumpWriter {
    /// Creates (or empties) the dump file at `path`.
    pub fn create(path: &Path) -> Result<DumpWriter, ReceiverError> {
        let file = File::create(path).map_err(|cause| ReceiverError::DumpWrite {
            path: path.to_owned(),
            cause,
        })?;
        Ok(DumpWriter {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// Appends one request as one line.
    pub fn append(&self, received: &ReceivedRequest) -> Result<(), ReceiverError> {
        let mut line = received.to_json_line()?;
        line.push('\n');
        // One write call per line: no buffer to flush, and lines never interleave.
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(line.as_bytes())
            .map_err(|cause| ReceiverError::DumpWrite {
                path: self.path.clone(),
                cause,
            })
    }
}

/// Reads every request of the dump at `path`; blank lines are skipped.
pub(crate) fn read(path: &Path) -> Result<Vec<ReceivedRequest>, ReceiverError> {
    let read_error = |cause| ReceiverError::DumpRead {
        path: path.to_owned(),
        cause,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut requests = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let received =
            ReceivedRequest::from_json_line(&line).map_err(|message| ReceiverError::DumpLine {
                path: path.to_owned(),
                line: index + 1,
                message,
            })?;
        requests.push(received);
    }
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::received::tests::{kv, log_request, string_kv, trace_request};
    use crate::Store;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::metrics::v1::{
        exemplar, metric, number_data_point, summary_data_point::ValueAtQuantile, Exemplar,
        Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        Summary, SummaryDataPoint,
    };
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::Status;

    /// A trace request using every field kind the JSON mapping treats specially.
    fn rich_trace_request() -> ExportTraceServiceRequest {
        let mut request = trace_request();
        let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
        span.parent_span_id = vec![0, 0, 0, 0, 0, 0, 0, 1];
        span.trace_state = "vendor=x".to_owned();
        span.flags = 0x301;
        span.end_time_unix_nano = u64::MAX;
        span.attributes.extend([
            kv("neg", Value::IntValue(i64::MIN)),
            kv("big", Value::IntValue(i64::MAX)),
            kv("ratio", Value::DoubleValue(0.1 + 0.2)),
            kv("tiny", Value::DoubleValue(5e-324)),
            kv("flag", Value::BoolValue(false)),
            kv("raw", Value::BytesValue(vec![0, 1, 254, 255])),
            kv(
                "signals",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue("SIGINT".to_owned())),
                    }],
                }),
            ),
            kv(
                "nested",
                Value::KvlistValue(KeyValueList {
                    values: vec![string_kv("unicode", "é\"\n\u{1F600}")],
                }),
            ),
        ]);
        span.events.push(Event {
            time_unix_nano: 42,
            name: "exit".to_owned(),
            attributes: vec![string_kv("k", "v")],
            dropped_attributes_count: 1,
        });
        span.links.push(Link {
            trace_id: vec![0xff; 16],
            span_id: vec![0; 8],
            trace_state: String::new(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            flags: 1,
        });
        span.status = Some(Status {
            message: "EINVAL".to_owned(),
            code: 2,
        });
        request
    }

    fn metrics_request() -> ExportMetricsServiceRequest {
        let exemplar = Exemplar {
            filtered_attributes: Vec::new(),
            time_unix_nano: 7,
            span_id: vec![0, 1, 2, 3, 4, 5, 6, 7],
            trace_id: vec![0; 15].into_iter().chain([9]).collect(),
            value: Some(exemplar::Value::AsDouble(2.5)),
        };
        let sum = Metric {
            name: "kspan.calls".to_owned(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    start_time_unix_nano: 1,
                    time_unix_nano: u64::MAX,
                    value: Some(number_data_point::Value::AsInt(-5)),
                    exemplars: vec![exemplar],
                    ..Default::default()
                }],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let histogram = Metric {
            name: "kspan.latency".to_owned(),
            unit: "ns".to_owned(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 3,
                    sum: Some(1e300),
                    bucket_counts: vec![1, 0, u64::MAX],
                    explicit_bounds: vec![0.5, 1.0],
                    min: Some(-0.25),
                    max: Some(7.0),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        };
        let summary = Metric {
            name: "kspan.summary".to_owned(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    count: 1,
                    sum: 3.5,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 1.0,
                        value: f64::INFINITY,
                    }],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: None,
                scope_metrics: vec![ScopeMetrics {
                    scope: None,
                    metrics: vec![sum, histogram, summary],
                    schema_url: "https://opentelemetry.io/schemas/1.30.0".to_owned(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    fn all_kinds() -> Vec<ReceivedRequest> {
        vec![
            ReceivedRequest {
                transport: Transport::Grpc,
                request: ExportRequest::Traces(rich_trace_request()),
            },
            ReceivedRequest {
                transport: Transport::Http,
                request: ExportRequest::Logs(log_request()),
            },
            ReceivedRequest {
                transport: Transport::Http,
                request: ExportRequest::Metrics(metrics_request()),
            },
        ]
    }

    #[test]
    fn line_names_signal_transport_and_hex_ids() -> Result<(), ReceiverError> {
        let line = all_kinds()[0].to_json_line()?;
        assert!(
            line.starts_with(
                r#"{"signal":"traces","transport":"grpc","request":{"resourceSpans":"#
            ),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert!(
            line.contains(r#""traceId":"000f01ff000000000000000000001001""#),
            "{line}"
        );
        assert!(line.contains(r#""spanId":"00abcdef01234501""#), "{line}");
        assert!(
            line.contains(r#""parentSpanId":"0000000000000001""#),
            "{line}"
        );
        Ok(())
    }

    #[test]
    fn every_line_round_trips_exactly() -> Result<(), ReceiverError> {
        for received in all_kinds() {
            let line = received.to_json_line()?;
            let back = ReceivedRequest::from_json_line(&line).map_err(|message| {
                ReceiverError::DumpLine {
                    path: "test".into(),
                    line: 1,
                    message,
                }
            })?;
            assert_eq!(back, received, "line: {line}");
        }
        Ok(())
    }

    #[test]
    fn store_dump_round_trips_exactly() -> Result<(), ReceiverError> {
        let store = Store::new();
        for received in all_kinds() {
            store.record(received)?;
        }
        let dir = std::env::temp_dir().join(format!("kspan-receiver-dump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|cause| ReceiverError::DumpWrite {
            path: dir.clone(),
            cause,
        })?;
        let path = dir.join("store.jsonl");
        store.write_jsonl(&path)?;
        let loaded = Store::read_jsonl(&path)?;
        assert_eq!(loaded.requests(), store.requests());
        assert_eq!(loaded.stats(), store.stats());
        let ids = |s: &Store| {
            s.spans()
                .iter()
                .map(|span| (span.trace_id_hex(), span.span_id_hex()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&loaded), ids(&store));
        assert_eq!(loaded.logs()[0].span_id_hex(), "00abcdef01234501");
        std::fs::remove_dir_all(&dir).map_err(|cause| ReceiverError::DumpWrite {
            path: dir.clone(),
            cause,
        })?;
        Ok(())
    }

    /// Pins the exception the module documentation names, so a fix upstream gets noticed.
    #[test]
    fn non_finite_histogram_bounds_are_the_known_exception() -> Result<(), ReceiverError> {
        let mut request = metrics_request();
        let histogram = &mut request.resource_metrics[0].scope_metrics[0].metrics[1];
        if let Some(metric::Data::Histogram(histogram)) = &mut histogram.data {
            histogram.data_points[0].max = Some(f64::INFINITY);
        }
        let received = ReceivedRequest {
            transport: Transport::Grpc,
            request: ExportRequest::Metrics(request),
        };
        let line = received.to_json_line()?;
        assert!(line.contains(r#""max":null"#), "{line}");
        Ok(())
    }

    #[test]
    fn bad_lines_are_named_by_number() -> Result<(), ReceiverError> {
        let path = std::env::temp_dir().join(format!(
            "kspan-receiver-bad-dump-{}.jsonl",
            std::process::id()
        ));
        let good = all_kinds()[1].to_json_line()?;
        let text = format!(
            "{good}\n\n{{\"signal\":\"profiles\",\"transport\":\"grpc\",\"request\":{{}}}}\n"
        );
        std::fs::write(&path, text).map_err(|cause| ReceiverError::DumpWrite {
            path: path.clone(),
            cause,
        })?;
        let error = Store::read_jsonl(&path).err().map(|e| e.to_string());
        let _ = std::fs::remove_file(&path);
        let error = error.unwrap_or_default();
        assert!(
            error.contains(".jsonl:3 is not a receiver dump line"),
            "{error}"
        );
        assert!(error.contains("profiles"), "{error}");
        Ok(())
    }

    #[test]
    fn bad_request_body_says_which_signal() {
        let line = r#"{"signal":"logs","transport":"http","request":{"resourceLogs":7}}"#;
        let error = ReceivedRequest::from_json_line(line)
            .err()
            .unwrap_or_default();
        assert!(error.starts_with("bad logs request:"), "{error}");
    }

    #[test]
    fn missing_dump_is_a_read_error() {
        let error = Store::read_jsonl(Path::new("/nonexistent/kspan.jsonl"));
        assert!(
            matches!(error, Err(ReceiverError::DumpRead { .. })),
            "{error:?}"
        );
    }
}
