//! Counting the spans or log records of an encoded OTLP request without decoding it.
//!
//! For benchmarks: the receiver shares a small machine with the agent it measures, and a full
//! decode (an allocation per attribute) costs more CPU than the agent spends per call.

use prost::encoding::decode_varint;

/// Why an encoded request could not be walked.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CountError {
    /// A field runs past the end of its message.
    #[error("truncated protobuf message")]
    Truncated,
    /// A wire type protobuf 3 does not use (groups) or does not define.
    #[error("unsupported protobuf wire type {0}")]
    WireType(u64),
}

/// The items of an `ExportTraceServiceRequest` (spans) or an `ExportLogsServiceRequest` (log
/// records): both nest them as field 1 (resource) → field 2 (scope) → field 2 (item).
pub fn count_items(request: &[u8]) -> Result<usize, CountError> {
    let mut items = 0;
    for_each_message(request, 1, |resource| {
        for_each_message(resource, 2, |scope| {
            for_each_message(scope, 2, |_| {
                items += 1;
                Ok(())
            })
        })
    })?;
    Ok(items)
}

/// Calls `visit` with the bytes of each length-delimited field numbered `wanted`, skipping the
/// other fields after checking they are well formed.
fn for_each_message(
    mut message: &[u8],
    wanted: u64,
    mut visit: impl FnMut(&[u8]) -> Result<(), CountError>,
) -> Result<(), CountError> {
    let varint = |bytes: &mut &[u8]| decode_varint(bytes).map_err(|_| CountError::Truncated);
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let skip = match key & 0b111 {
            0 => {
                varint(&mut message)?;
                0
            }
            1 => 8,
            2 => {
                let len =
                    usize::try_from(varint(&mut message)?).map_err(|_| CountError::Truncated)?;
                let field = message.get(..len).ok_or(CountError::Truncated)?;
                if key >> 3 == wanted {
                    visit(field)?;
                }
                len
            }
            5 => 4,
            wire_type => return Err(CountError::WireType(wire_type)),
        };
        message = message.get(skip..).ok_or(CountError::Truncated)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
        common::v1::{any_value, AnyValue, KeyValue},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span},
    };
    use prost::Message;

    use super::*;

    fn span(name: &str) -> Span {
        Span {
            name: name.into(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![KeyValue {
                key: "k".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(-7)),
                }),
                ..KeyValue::default()
            }],
            ..Span::default()
        }
    }

    fn traces(spans_per_scope: &[&[usize]]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: spans_per_scope
                .iter()
                .map(|scopes| ResourceSpans {
                    resource: Some(Resource::default()),
                    scope_spans: scopes
                        .iter()
                        .map(|&n| ScopeSpans {
                            spans: (0..n).map(|i| span(&i.to_string())).collect(),
                            schema_url: "https://example.invalid/schema".into(),
                            ..ScopeSpans::default()
                        })
                        .collect(),
                    ..ResourceSpans::default()
                })
                .collect(),
        }
    }

    #[test]
    fn counts_spans_across_resources_and_scopes() {
        let request = traces(&[&[3, 0, 2], &[], &[5]]);
        assert_eq!(count_items(&request.encode_to_vec()), Ok(10));
        assert_eq!(count_items(&[]), Ok(0));
    }

    #[test]
    fn counts_log_records() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 4],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        assert_eq!(count_items(&request.encode_to_vec()), Ok(4));
    }

    #[test]
    fn malformed_requests_are_errors_not_counts() {
        let bytes = traces(&[&[2]]).encode_to_vec();
        for cut in 1..bytes.len() {
            // Some cuts land between fields of the outer message and still parse; none may
            // count more than was sent.
            if let Ok(count) = count_items(&bytes[..cut]) {
                assert!(count <= 2, "cut at {cut} counted {count}");
            }
        }
        assert_eq!(
            count_items(&bytes[..bytes.len() - 1]),
            Err(CountError::Truncated)
        );
        // Field 1 with wire type 3 (start group).
        assert_eq!(count_items(&[0x0b]), Err(CountError::WireType(3)));
    }
}
