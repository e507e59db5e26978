//! kspan's health metrics as the receiver got them, against kspan's summary: the final export
//! carries the summary's figures, so each must equal its counterpart exactly.

use std::path::Path;

use anyhow::Context as _;
use kspan_receiver::{
    inspect::as_str,
    proto::metrics::v1::{metric::Data, number_data_point::Value, NumberDataPoint},
    Store,
};

use crate::run::artifacts;

/// Differences between the last health figures received and kspan's summary, readable; empty
/// when every figure arrived and matches.
pub fn health_mismatches(dir: &Path) -> anyhow::Result<Vec<String>> {
    let store = Store::read_jsonl(&dir.join(artifacts::RECEIVED))?;
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(artifacts::SUMMARY)).context("reading summary.json")?,
    )
    .context("parsing summary.json")?;
    let figure = |path: &[&str]| {
        path.iter()
            .fold(&summary, |value, key| &value[key])
            .as_i64()
            .with_context(|| format!("summary.json has no `{}`", path.join(".")))
    };
    // (metric, the `kspan.*` attribute's value or "" for the sum over all points, summary key)
    let expected = [
        ("kspan.calls.captured", "", figure(&["calls_read"])?),
        ("kspan.calls.lost", "", figure(&["lost"])?),
        (
            "kspan.returns_without_entry",
            "",
            figure(&["kernel", "returns_without_entry"])?,
        ),
        (
            "kspan.exported",
            "spans",
            figure(&["export", "spans_exported"])?,
        ),
        (
            "kspan.exported",
            "logs",
            figure(&["export", "logs_exported"])?,
        ),
        (
            "kspan.export.errors",
            "",
            figure(&["export", "export_errors"])?,
        ),
    ];
    let mut mismatches = Vec::new();
    if store.metrics_requests().is_empty() {
        mismatches.push("no health metrics arrived".to_string());
        return Ok(mismatches);
    }
    for (name, label, want) in expected {
        let points = last_points(&store, name);
        let got: Option<i64> = match label {
            "" if points.is_empty() => None,
            "" => Some(points.iter().map(|(_, value)| value).sum()),
            label => points
                .iter()
                .find(|(point_label, _)| point_label == label)
                .map(|(_, value)| *value),
        };
        let shown = match label {
            "" => name.to_string(),
            label => format!("{name}{{{label}}}"),
        };
        match got {
            Some(got) if got == want => {}
            Some(got) => mismatches.push(format!(
                "{shown} is {got} in the last health export, the summary says {want}"
            )),
            None => mismatches.push(format!("{shown} is missing from the health exports")),
        }
    }
    Ok(mismatches)
}

/// The points of metric `name` with the latest timestamp among every request received (a
/// collector may merge or reorder exports), as (first attribute's string value, value).
fn last_points(store: &Store, name: &str) -> Vec<(String, i64)> {
    let requests = store.metrics_requests();
    let points: Vec<&NumberDataPoint> = requests
        .iter()
        .flat_map(|request| &request.resource_metrics)
        .flat_map(|resource| &resource.scope_metrics)
        .flat_map(|scope| &scope.metrics)
        .filter(|metric| metric.name == name)
        .flat_map(|metric| match &metric.data {
            Some(Data::Sum(sum)) => sum.data_points.as_slice(),
            Some(Data::Gauge(gauge)) => gauge.data_points.as_slice(),
            _ => &[],
        })
        .collect();
    let Some(last) = points.iter().map(|point| point.time_unix_nano).max() else {
        return Vec::new();
    };
    points
        .into_iter()
        .filter(|point| point.time_unix_nano == last)
        .filter_map(|point| {
            let label = point
                .attributes
                .first()
                .and_then(|kv| as_str(kv.value.as_ref()?))
                .unwrap_or_default()
                .to_string();
            match point.value {
                Some(Value::AsInt(value)) => Some((label, value)),
                _ => None,
            }
        })
        .collect()
}
