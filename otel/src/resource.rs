//! The resource describing this agent and host.

use opentelemetry::KeyValue;
use opentelemetry_sdk::{
    resource::{ResourceDetector, TelemetryResourceDetector},
    Resource,
};
use opentelemetry_semantic_conventions::attribute;

use crate::{env::env_var, ExportError};

/// Facts about the host, gathered by the agent.
#[derive(Clone, Debug)]
pub struct HostInfo {
    /// `host.name`.
    pub host_name: String,
    /// `os.version`: the kernel release.
    pub kernel_release: String,
}

/// `service.name` (default `kspan`; OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME, win),
/// `service.version`, `host.name`, `os.type`, `os.version`, and OTEL_RESOURCE_ATTRIBUTES.
/// Fails on a variable kspan cannot read whole, rather than dropping part of it.
pub fn agent_resource(host: &HostInfo) -> Result<Resource, ExportError> {
    let detectors: [Box<dyn ResourceDetector>; 1] = [Box::new(TelemetryResourceDetector)];
    let from_env = match env_var("OTEL_RESOURCE_ATTRIBUTES")? {
        Some(list) => parse_resource_attributes(&list)?,
        None => Vec::new(),
    };
    let builder = Resource::builder_empty()
        .with_attributes([
            KeyValue::new(attribute::SERVICE_NAME, "kspan"),
            KeyValue::new(attribute::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
            KeyValue::new(attribute::HOST_NAME, host.host_name.clone()),
            KeyValue::new(attribute::OS_TYPE, "linux"),
            KeyValue::new(attribute::OS_VERSION, host.kernel_release.clone()),
        ])
        .with_detectors(&detectors)
        .with_attributes(from_env);
    Ok(match env_var("OTEL_SERVICE_NAME")? {
        Some(name) => builder.with_service_name(name),
        None => builder,
    }
    .build())
}

/// `key1=value1,key2=value2`, values percent-decoded (the W3C Baggage format the resource
/// specification names, without properties); whitespace around keys and values is trimmed and
/// empty entries are skipped.
fn parse_resource_attributes(list: &str) -> Result<Vec<KeyValue>, ExportError> {
    list.split(',')
        .enumerate()
        .filter(|(_, entry)| !entry.trim().is_empty())
        .map(|(index, entry)| {
            let invalid = |reason| ExportError::InvalidResourceAttribute {
                entry: index + 1,
                reason,
            };
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| invalid("is not key=value"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(invalid("has an empty key"));
            }
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|_| invalid("has a value that does not percent-decode to UTF-8"))?;
            Ok(KeyValue::new(key.to_string(), value.into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(list: &str) -> Result<Vec<(String, String)>, String> {
        parse_resource_attributes(list)
            .map(|attributes| {
                attributes
                    .into_iter()
                    .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                    .collect()
            })
            .map_err(|error| error.to_string())
    }

    #[test]
    fn resource_attributes_are_percent_decoded_and_trimmed() {
        let expected = [
            ("deployment.environment", "prod west"),
            ("team", "a=b,c"),
            ("empty", ""),
            ("k8s.node", "nöde"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        assert_eq!(
            parsed(
                " deployment.environment = prod%20west ,team=a%3Db%2Cc,,empty=,k8s.node=n%C3%B6de"
            ),
            Ok(expected)
        );
        assert_eq!(parsed(""), Ok(vec![]));
    }

    #[test]
    fn malformed_resource_attributes_are_refused_with_the_entry() {
        let cases = [
            ("a=1,foo", "entry 2 is not key=value"),
            ("=bar", "entry 1 has an empty key"),
            ("a=1, =bar", "entry 2 has an empty key"),
            (
                "a=%FF",
                "entry 1 has a value that does not percent-decode to UTF-8",
            ),
        ];
        for (list, expected) in cases {
            assert_eq!(
                parsed(list),
                Err(format!("malformed OTEL_RESOURCE_ATTRIBUTES: {expected}")),
                "{list}"
            );
        }
    }
}
