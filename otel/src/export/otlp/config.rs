//! Where and how OTLP requests go: the command line first, then the standard
//! `OTEL_EXPORTER_OTLP_*` variables (signal-specific before general), then the spec's defaults.

use std::{path::PathBuf, str::FromStr, time::Duration};

use rustls::pki_types::{pem::PemObject as _, CertificateDer};

use crate::ExportError;

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
        env_setting(Signal::Traces, "PROTOCOL")
            .map(|(_, value)| value.parse())
            .transpose()
    }

    fn default_endpoint(self) -> &'static str {
        match self {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf => "http://localhost:4318",
        }
    }
}

/// The three kinds of OTLP data kspan sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Spans, one per call.
    Traces,
    /// Log records, one per call.
    Logs,
    /// kspan's own health.
    Metrics,
}

impl Signal {
    fn env_name(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Logs => "LOGS",
            Signal::Metrics => "METRICS",
        }
    }

    /// The HTTP path the spec appends to a base endpoint.
    fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
        }
    }
}

/// How to reach the collector, as given on the command line; what is unset comes from
/// `OTEL_EXPORTER_OTLP_*`, then defaults.
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// Transport.
    pub protocol: Protocol,
    /// Base URL (`http://collector:4317`); HTTP appends `/v1/traces`, `/v1/logs`, `/v1/metrics`.
    pub endpoint: Option<String>,
    /// Extra request headers (for example authentication), on top of the headers variables.
    pub headers: Vec<(String, String)>,
    /// PEM file of the CA that signed the collector's certificate.
    pub ca_certificate: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Option<Duration>,
}

/// Everything one signal's requests need, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// gRPC: the server URL; HTTP: the full URL requests are posted to.
    pub url: String,
    /// Request headers (gRPC metadata), names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Whether bodies are gzip-compressed.
    pub gzip: bool,
    /// PEM of a CA to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of a client certificate and its key (mutual TLS).
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The spec's default export timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl OtlpConfig {
    /// Resolves one signal's target. Fails on anything malformed, naming the setting.
    pub fn target(&self, signal: Signal) -> Result<Target, ExportError> {
        let url = match (&self.endpoint, env_setting(signal, "ENDPOINT")) {
            (Some(base), _) => self.signal_url(base, signal),
            (None, Some((name, url))) if name.contains(signal.env_name()) => url,
            (None, Some((_, base))) => self.signal_url(&base, signal),
            (None, None) => self.signal_url(self.protocol.default_endpoint(), signal),
        };
        validate_endpoint(&url)?;

        let mut headers = Vec::new();
        for variable in [
            "OTEL_EXPORTER_OTLP_HEADERS".to_string(),
            format!("OTEL_EXPORTER_OTLP_{}_HEADERS", signal.env_name()),
        ] {
            if let Some(list) = non_empty_env(&variable) {
                merge_headers(&mut headers, parse_header_list(&variable, &list)?);
            }
        }
        merge_headers(&mut headers, self.headers.clone());
        for (name, value) in &headers {
            if http::HeaderName::from_str(name).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                return Err(ExportError::InvalidHeader { name: name.clone() });
            }
        }

        let timeout = match self.timeout {
            Some(timeout) => timeout,
            None => match env_setting(signal, "TIMEOUT") {
                Some((variable, millis)) => millis
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| ExportError::InvalidEnv {
                        variable,
                        expected: "a whole number of milliseconds",
                    })?,
                None => DEFAULT_TIMEOUT,
            },
        };
        let gzip = match env_setting(signal, "COMPRESSION") {
            None => false,
            Some((_, value)) if value.trim() == "none" => false,
            Some((_, value)) if value.trim() == "gzip" => true,
            Some((variable, _)) => {
                return Err(ExportError::InvalidEnv {
                    variable,
                    expected: "`gzip` or `none`",
                })
            }
        };
        let ca_pem = self.ca_certificate.as_ref().map(read_ca).transpose()?;
        let client_identity = match (
            env_setting(signal, "CLIENT_CERTIFICATE"),
            env_setting(signal, "CLIENT_KEY"),
        ) {
            (None, None) => None,
            (Some((_, cert)), Some((_, key))) => {
                Some((read_pem(&cert.into())?, read_pem(&key.into())?))
            }
            (Some((variable, _)), None) | (None, Some((variable, _))) => {
                return Err(ExportError::InvalidEnv {
                    variable,
                    expected: "both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY",
                })
            }
        };
        Ok(Target {
            url,
            headers,
            timeout,
            gzip,
            ca_pem,
            client_identity,
        })
    }

    fn signal_url(&self, base: &str, signal: Signal) -> String {
        match self.protocol {
            Protocol::Grpc => base.to_string(),
            Protocol::HttpProtobuf => {
                format!("{}{}", base.trim_end_matches('/'), signal.http_path())
            }
        }
    }
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

/// The signal-specific variable if set, else the general one: its name and value.
fn env_setting(signal: Signal, suffix: &str) -> Option<(String, String)> {
    [
        format!("OTEL_EXPORTER_OTLP_{}_{suffix}", signal.env_name()),
        format!("OTEL_EXPORTER_OTLP_{suffix}"),
    ]
    .into_iter()
    .find_map(|name| non_empty_env(&name).map(|value| (name, value)))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// Later settings win, header by header.
fn merge_headers(headers: &mut Vec<(String, String)>, more: Vec<(String, String)>) {
    for (name, value) in more {
        let name = name.to_ascii_lowercase();
        headers.retain(|(existing, _)| *existing != name);
        headers.push((name, value));
    }
}

/// `key1=value1,key2=value2` with percent-encoded values, as the OTLP exporter specification
/// defines the headers variables. Errors never show a value: it may be a secret.
fn parse_header_list(variable: &str, list: &str) -> Result<Vec<(String, String)>, ExportError> {
    list.split(',')
        .enumerate()
        .filter(|(_, pair)| !pair.trim().is_empty())
        .map(|(index, pair)| {
            let invalid = || ExportError::InvalidEnvHeaders {
                variable: variable.to_string(),
                entry: index + 1,
            };
            let (name, value) = pair.split_once('=').ok_or_else(invalid)?;
            let name = name.trim();
            http::HeaderName::from_str(name).map_err(|_| invalid())?;
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|_| invalid())?;
            Ok((name.to_string(), value.into_owned()))
        })
        .collect()
}

fn read_pem(path: &PathBuf) -> Result<Vec<u8>, ExportError> {
    std::fs::read(path).map_err(|cause| ExportError::Certificate {
        path: path.clone(),
        cause,
    })
}

/// The CA file's PEM, checked now: without a certificate in it, TLS would fail only at the first
/// export (gRPC) or the file would be ignored (HTTP).
fn read_ca(path: &PathBuf) -> Result<Vec<u8>, ExportError> {
    let invalid = |reason: String| ExportError::CaCertificate {
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|error| invalid(error.to_string()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("it is not valid PEM ({error})")))?;
    if certificates.is_empty() {
        return Err(invalid(
            "it holds no PEM CERTIFICATE block: give the collector's CA certificate in PEM form"
                .into(),
        ));
    }
    let (_, unparsable) = rustls::RootCertStore::empty().add_parsable_certificates(certificates);
    if unparsable > 0 {
        return Err(invalid(format!(
            "{unparsable} of its PEM certificates are not X.509 certificates"
        )));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(protocol: Protocol, endpoint: Option<&str>) -> OtlpConfig {
        OtlpConfig {
            protocol,
            endpoint: endpoint.map(String::from),
            headers: vec![],
            ca_certificate: None,
            timeout: None,
        }
    }

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
    fn http_appends_the_signal_path_to_a_base_endpoint() {
        let http = config(Protocol::HttpProtobuf, Some("http://collector:4318/"));
        assert_eq!(
            http.target(Signal::Logs).unwrap().url,
            "http://collector:4318/v1/logs"
        );
        let grpc = config(Protocol::Grpc, Some("https://collector:4317"));
        assert_eq!(
            grpc.target(Signal::Metrics).unwrap().url,
            "https://collector:4317"
        );
    }

    #[test]
    fn header_lists_follow_the_spec() {
        assert_eq!(
            parse_header_list("V", "api-key=secret,other=x=y, Authorization=Bearer%20t").unwrap(),
            vec![
                ("api-key".to_string(), "secret".to_string()),
                ("other".to_string(), "x=y".to_string()),
                ("Authorization".to_string(), "Bearer t".to_string()),
            ]
        );
        assert!(parse_header_list("V", "").unwrap().is_empty());
        let error = parse_header_list("V", "api-key=secret,broken").unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed V: entry 2 is not KEY=VALUE with a valid header name"
        );
        assert!(!error.to_string().contains("secret"));
        assert!(parse_header_list("V", "bad key=1").is_err());
    }

    #[test]
    fn later_headers_win() {
        let mut headers = vec![("a".to_string(), "1".to_string())];
        merge_headers(
            &mut headers,
            vec![("A".into(), "2".into()), ("b".into(), "3".into())],
        );
        assert_eq!(
            headers,
            vec![("a".into(), "2".into()), ("b".into(), "3".into())]
        );
    }

    #[test]
    fn unreadable_ca_names_the_file() {
        let config = OtlpConfig {
            ca_certificate: Some("/nonexistent/ca.pem".into()),
            ..config(Protocol::Grpc, None)
        };
        let error = config.target(Signal::Traces).expect_err("must fail");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let path = std::env::temp_dir().join(format!("kspan-ca-test-{}.pem", std::process::id()));
        let cases = [
            ("hello", "holds no PEM CERTIFICATE block"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "1 of its PEM certificates are not X.509 certificates",
            ),
        ];
        for (contents, expected) in cases {
            std::fs::write(&path, contents).unwrap();
            let config = OtlpConfig {
                ca_certificate: Some(path.clone()),
                ..config(Protocol::HttpProtobuf, None)
            };
            let error = config.target(Signal::Traces).expect_err("must fail");
            let message = error.to_string();
            assert!(
                message.starts_with("cannot read CA certificate "),
                "{message}"
            );
            assert!(message.contains(expected), "{message}");
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn bad_header_is_refused() {
        let config = OtlpConfig {
            headers: vec![("bad header".into(), "x".into())],
            ..config(Protocol::Grpc, None)
        };
        assert!(matches!(
            config.target(Signal::Traces),
            Err(ExportError::InvalidHeader { .. })
        ));
    }
}
