//! The resource describing this agent and host.

use opentelemetry::KeyValue;
use opentelemetry_sdk::{
    resource::{EnvResourceDetector, ResourceDetector, TelemetryResourceDetector},
    Resource,
};

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
pub fn agent_resource(host: &HostInfo) -> Resource {
    let detectors: [Box<dyn ResourceDetector>; 2] = [
        Box::new(TelemetryResourceDetector),
        Box::new(EnvResourceDetector::new()),
    ];
    let builder = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "kspan"),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("host.name", host.host_name.clone()),
            KeyValue::new("os.type", "linux"),
            KeyValue::new("os.version", host.kernel_release.clone()),
        ])
        .with_detectors(&detectors);
    match std::env::var("OTEL_SERVICE_NAME") {
        Ok(name) if !name.trim().is_empty() => builder.with_service_name(name),
        _ => builder,
    }
    .build()
}
