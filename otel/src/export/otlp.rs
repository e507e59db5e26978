//! OTLP export of spans and log records through opentelemetry-otlp, over gRPC or HTTP/protobuf.
//! Standard `OTEL_EXPORTER_OTLP_*` variables apply wherever the command line leaves a setting open.

use std::{collections::HashMap, path::PathBuf, str::FromStr, time::Duration};

use opentelemetry::{logs::LoggerProvider as _, InstrumentationScope};
use opentelemetry_otlp::{
    tonic_types::transport::{Certificate, ClientTlsConfig},
    LogExporter, RetryPolicy, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::{
    logs::{LogBatch, LogExporter as _, SdkLogger, SdkLoggerProvider},
    trace::SpanExporter as _,
    Resource,
};

use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

use crate::{call::Call, ids::TraceGrouping, record, ExportError};

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318).
    HttpProtobuf,
}

impl FromStr for Protocol {
    type Err = ExportError;

    /// The values of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(ExportError::UnsupportedProtocol(other.to_string())),
        }
    }
}

impl Protocol {
    /// The protocol named by `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn from_env() -> Result<Option<Self>, ExportError> {
        [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]
        .iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        })
        .map(|value| value.parse())
        .transpose()
    }
}

/// How to reach the collector. Unset fields fall back to `OTEL_EXPORTER_OTLP_*`, then defaults.
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// Transport.
    pub protocol: Protocol,
    /// Base URL (`http://collector:4317`); HTTP appends `/v1/traces` and `/v1/logs`.
    pub endpoint: Option<String>,
    /// Extra request headers (for example authentication), added to `OTEL_EXPORTER_OTLP_HEADERS`.
    pub headers: Vec<(String, String)>,
    /// PEM file of the CA that signed the collector's certificate.
    pub ca_certificate: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Option<Duration>,
}

/// Checks that an endpoint is an absolute http(s) URL with a host.
pub fn validate_endpoint(endpoint: &str) -> Result<(), ExportError> {
    let invalid = |reason: &str| ExportError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let uri = http::Uri::from_str(endpoint).map_err(|error| invalid(&error.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(invalid(&format!("scheme `{other}` is not http or https"))),
        None => return Err(invalid("it needs a scheme, e.g. http://localhost:4317")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    Ok(())
}

/// Checks the `OTEL_EXPORTER_OTLP_*` endpoint and header variables, which the exporter would
/// otherwise reject late or skip silently.
pub fn validate_env() -> Result<(), ExportError> {
    let set = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
    };
    for name in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ] {
        if let Some(endpoint) = set(name) {
            validate_endpoint(&endpoint)?;
        }
    }
    for name in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    ] {
        if let Some(headers) = set(name) {
            validate_header_list(name, &headers)?;
        }
    }
    Ok(())
}

/// `key1=value1,key2=value2`, as the OTLP exporter specification defines the headers variables.
fn validate_header_list(variable: &'static str, headers: &str) -> Result<(), ExportError> {
    for (index, pair) in headers
        .split(',')
        .enumerate()
        .filter(|(_, pair)| !pair.trim().is_empty())
    {
        let valid = pair
            .split_once('=')
            .is_some_and(|(name, _)| http::HeaderName::from_str(name.trim()).is_ok());
        if !valid {
            return Err(ExportError::InvalidEnvHeaders {
                variable,
                entry: index + 1,
            });
        }
    }
    Ok(())
}

/// Encodes calls as OTLP spans and log records and sends them.
pub struct OtlpSink {
    spans: SpanExporter,
    logs: LogExporter,
    grouping: TraceGrouping,
    scope: InstrumentationScope,
    // Only a factory for log records: they go to `logs` directly, not through a processor.
    logger: SdkLogger,
    // Kept alive with the logger: dropping it would shut the logger down.
    _logger_provider: SdkLoggerProvider,
}

impl OtlpSink {
    /// Builds both exporters. Must run inside a tokio runtime (gRPC channels are created here).
    pub fn new(
        config: &OtlpConfig,
        resource: &Resource,
        grouping: TraceGrouping,
    ) -> Result<Self, ExportError> {
        if let Some(endpoint) = &config.endpoint {
            validate_endpoint(endpoint)?;
        }
        let (mut spans, mut logs) = match config.protocol {
            Protocol::Grpc => {
                let tonic = TonicSettings::new(config)?;
                let spans = tonic
                    .apply(SpanExporter::builder().with_tonic(), config)
                    .build();
                let logs = tonic
                    .apply(LogExporter::builder().with_tonic(), config)
                    .build();
                (spans?, logs?)
            }
            Protocol::HttpProtobuf => {
                let http = HttpSettings::new(config)?;
                let spans = http
                    .apply(SpanExporter::builder().with_http(), "/v1/traces")
                    .build();
                let logs = http
                    .apply(LogExporter::builder().with_http(), "/v1/logs")
                    .build();
                (spans?, logs?)
            }
        };
        spans.set_resource(resource);
        logs.set_resource(resource);
        let scope = InstrumentationScope::builder("kspan")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let logger_provider = SdkLoggerProvider::builder().build();
        let logger = logger_provider.logger_with_scope(scope.clone());
        Ok(Self {
            spans,
            logs,
            grouping,
            scope,
            logger,
            _logger_provider: logger_provider,
        })
    }

    pub(super) async fn export_spans(&self, calls: &[Call]) -> Result<(), String> {
        let spans = calls
            .iter()
            .map(|call| record::span(call, &self.grouping, &self.scope))
            .collect();
        self.spans
            .export(spans)
            .await
            .map_err(|error| error.to_string())
    }

    pub(super) async fn export_logs(&self, calls: &[Call]) -> Result<(), String> {
        let records: Vec<_> = calls
            .iter()
            .map(|call| record::log_record(call, &self.grouping, &self.logger))
            .collect();
        let batch: Vec<_> = records.iter().map(|record| (record, &self.scope)).collect();
        self.logs
            .export(LogBatch::new(&batch))
            .await
            .map_err(|error| error.to_string())
    }

    pub(super) fn shutdown(&mut self) {
        if let Err(error) = self.spans.shutdown() {
            tracing::debug!(%error, "span exporter shutdown");
        }
        if let Err(error) = self.logs.shutdown() {
            tracing::debug!(%error, "log exporter shutdown");
        }
    }
}

fn read_ca(path: &PathBuf) -> Result<Vec<u8>, ExportError> {
    std::fs::read(path).map_err(|source| ExportError::Certificate {
        path: path.clone(),
        source,
    })
}

/// gRPC settings shared by the span and log exporters.
struct TonicSettings {
    metadata: MetadataMap,
    tls: Option<ClientTlsConfig>,
}

impl TonicSettings {
    fn new(config: &OtlpConfig) -> Result<Self, ExportError> {
        let mut metadata = MetadataMap::new();
        for (name, value) in &config.headers {
            let key = MetadataKey::from_str(&name.to_ascii_lowercase())
                .map_err(|_| ExportError::InvalidHeader { name: name.clone() })?;
            let value = MetadataValue::from_str(value)
                .map_err(|_| ExportError::InvalidHeader { name: name.clone() })?;
            metadata.insert(key, value);
        }
        let https = config
            .endpoint
            .as_deref()
            .is_some_and(|endpoint| endpoint.starts_with("https://"));
        let tls = match &config.ca_certificate {
            Some(path) => {
                Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_ca(path)?)))
            }
            None if https => Some(ClientTlsConfig::new().with_native_roots()),
            None => None,
        };
        Ok(Self { metadata, tls })
    }

    fn apply<B: WithExportConfig + WithTonicConfig>(&self, builder: B, config: &OtlpConfig) -> B {
        let mut builder = builder
            .with_metadata(self.metadata.clone())
            // The pipeline retries with backoff and keeps a counted backlog: one retry layer.
            .with_retry_policy(RetryPolicy::disabled());
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(timeout) = config.timeout {
            builder = builder.with_timeout(timeout);
        }
        if let Some(tls) = &self.tls {
            builder = builder.with_tls_config(tls.clone());
        }
        builder
    }
}

/// HTTP settings shared by the span and log exporters.
struct HttpSettings {
    endpoint: Option<String>,
    headers: HashMap<String, String>,
    client: reqwest::Client,
    timeout: Option<Duration>,
}

impl HttpSettings {
    fn new(config: &OtlpConfig) -> Result<Self, ExportError> {
        // reqwest is built without a default TLS provider; ring is the one tonic uses too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut client = reqwest::Client::builder();
        if let Some(path) = &config.ca_certificate {
            let certificate = reqwest::Certificate::from_pem(&read_ca(path)?).map_err(|error| {
                ExportError::Certificate {
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
                }
            })?;
            client = client.add_root_certificate(certificate);
        }
        if let Some(timeout) = config.timeout {
            client = client.timeout(timeout);
        }
        let client = client
            .build()
            .map_err(|error| ExportError::HttpClient(error.to_string()))?;
        for (name, value) in &config.headers {
            if http::HeaderName::from_str(name).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                return Err(ExportError::InvalidHeader { name: name.clone() });
            }
        }
        Ok(Self {
            endpoint: config
                .endpoint
                .as_ref()
                .map(|base| base.trim_end_matches('/').to_string()),
            headers: config.headers.iter().cloned().collect(),
            client,
            timeout: config.timeout,
        })
    }

    fn apply<B: WithExportConfig + WithHttpConfig>(&self, builder: B, signal_path: &str) -> B {
        let mut builder = builder
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(self.client.clone())
            .with_retry_policy(RetryPolicy::disabled());
        if !self.headers.is_empty() {
            builder = builder.with_headers(self.headers.clone());
        }
        if let Some(base) = &self.endpoint {
            builder = builder.with_endpoint(format!("{base}{signal_path}"));
        }
        if let Some(timeout) = self.timeout {
            builder = builder.with_timeout(timeout);
        }
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_follow_the_spec() {
        assert_eq!("grpc".parse::<Protocol>().unwrap(), Protocol::Grpc);
        assert_eq!(
            "http/protobuf".parse::<Protocol>().unwrap(),
            Protocol::HttpProtobuf
        );
        assert!(
            matches!("http/json".parse::<Protocol>(), Err(ExportError::UnsupportedProtocol(p)) if p == "http/json")
        );
    }

    #[test]
    fn endpoint_validation() {
        validate_endpoint("http://localhost:4317").unwrap();
        validate_endpoint("https://collector.example:4318/").unwrap();
        for bad in ["localhost:4317", "ftp://host", "http://", "not a url", ""] {
            assert!(validate_endpoint(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn header_lists_follow_the_spec() {
        validate_header_list("V", "api-key=secret,other=x=y").unwrap();
        validate_header_list("V", "").unwrap();
        let error = validate_header_list("V", "api-key=secret,broken").unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed V: entry 2 is not KEY=VALUE with a valid header name"
        );
        assert!(!error.to_string().contains("secret"));
        assert!(validate_header_list("V", "bad key=1").is_err());
    }

    #[test]
    fn unreadable_ca_names_the_file() {
        let config = OtlpConfig {
            protocol: Protocol::Grpc,
            endpoint: None,
            headers: vec![],
            ca_certificate: Some("/nonexistent/ca.pem".into()),
            timeout: None,
        };
        let error = TonicSettings::new(&config).err().expect("must fail");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn bad_header_is_refused() {
        let config = OtlpConfig {
            protocol: Protocol::Grpc,
            endpoint: None,
            headers: vec![("bad header".into(), "x".into())],
            ca_certificate: None,
            timeout: None,
        };
        assert!(matches!(
            TonicSettings::new(&config),
            Err(ExportError::InvalidHeader { .. })
        ));
    }
}
