//! Where and how OTLP requests go, signal by signal: the command line first, then the standard
//! `OTEL_EXPORTER_OTLP_{TRACES,LOGS,METRICS}_*` variable, then the general
//! `OTEL_EXPORTER_OTLP_*` one, then the default.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use base64::Engine as _;
use rustls::pki_types::{pem::PemObject as _, CertificateDer};

use crate::{env::Env, ExportError};

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
    /// Transport of every signal; `None`: each signal's `OTEL_EXPORTER_OTLP_*PROTOCOL`, else
    /// gRPC.
    pub protocol: Option<Protocol>,
    /// Base URL (`http://collector:4317`); HTTP appends `/v1/traces`, `/v1/logs`, `/v1/metrics`.
    pub endpoint: Option<String>,
    /// Extra request headers (for example authentication), on top of the headers variables.
    pub headers: Vec<(String, String)>,
    /// PEM file of the CA that signed the collector's certificate; `None`: each signal's
    /// `OTEL_EXPORTER_OTLP_*CERTIFICATE`.
    pub ca_certificate: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Option<Duration>,
    /// Where the `OTEL_*` variables are read.
    pub env: Env,
}

/// Everything one signal's requests need, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// Transport.
    pub protocol: Protocol,
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
        let protocol = match (self.protocol, self.setting(signal, "PROTOCOL")?) {
            (Some(protocol), _) => protocol,
            (None, Some((_, value))) => value.parse()?,
            (None, None) => Protocol::Grpc,
        };
        // Read (and checked) whatever the endpoint: a wrong value is refused, not left waiting.
        let insecure = self.flag(signal, "INSECURE")?.unwrap_or(false);
        let url = match (&self.endpoint, self.setting(signal, "ENDPOINT")?) {
            (Some(base), _) => signal_url(protocol, base, signal),
            (None, Some((name, url))) if name.contains(signal.env_name()) => url,
            (None, Some((_, base))) => signal_url(protocol, &base, signal),
            (None, None) => signal_url(protocol, protocol.default_endpoint(), signal),
        };
        let url = match protocol {
            Protocol::Grpc => with_grpc_scheme(url, insecure),
            Protocol::HttpProtobuf => url,
        };
        validate_endpoint(&url)?;
        // User information becomes a header (as curl and reqwest do) so that the URL, which
        // error messages and logs show, holds no secret.
        let (plain_url, credentials) = split_userinfo(&url);
        let mut headers = Vec::new();
        if let Some(userinfo) = credentials {
            headers.push(basic_authorization(userinfo).map_err(|reason| {
                ExportError::InvalidEndpoint {
                    endpoint: redact_userinfo(&url),
                    reason,
                }
            })?);
        }
        let url = plain_url;
        for variable in [
            "OTEL_EXPORTER_OTLP_HEADERS".to_string(),
            format!("OTEL_EXPORTER_OTLP_{}_HEADERS", signal.env_name()),
        ] {
            if let Some(list) = self.env.var(&variable)? {
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
            None => match self.setting(signal, "TIMEOUT")? {
                Some((variable, millis)) => match millis.trim().parse::<u64>() {
                    Ok(millis) if millis > 0 => Duration::from_millis(millis),
                    // 0 would fail every request at once: every call lost.
                    _ => {
                        return Err(ExportError::InvalidEnv {
                            variable,
                            expected: "a positive whole number of milliseconds",
                        })
                    }
                },
                None => DEFAULT_TIMEOUT,
            },
        };
        if timeout.is_zero() {
            return Err(ExportError::ZeroTimeout);
        }
        let gzip = match self.setting(signal, "COMPRESSION")? {
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
        let client_files = match (
            self.setting(signal, "CLIENT_CERTIFICATE")?,
            self.setting(signal, "CLIENT_KEY")?,
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some((variable, _)), None) | (None, Some((variable, _))) => {
                return Err(ExportError::InvalidEnv {
                    variable,
                    expected: "both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY",
                })
            }
        };
        let ca_file = match &self.ca_certificate {
            Some(path) => Some(("--otlp-ca-cert".to_string(), path.clone())),
            None => self
                .setting(signal, "CERTIFICATE")?
                .map(|(variable, path)| (variable, PathBuf::from(path))),
        };
        // A certificate says the user expects TLS; over http:// headers would go in clear.
        if !url.starts_with("https://") {
            let setting = match (&ca_file, &client_files) {
                (Some((setting, _)), _) => Some(setting.clone()),
                (None, Some(((variable, _), _))) => Some(variable.clone()),
                (None, None) => None,
            };
            if let Some(setting) = setting {
                return Err(ExportError::TlsFilesWithoutTls {
                    setting,
                    endpoint: url,
                });
            }
        }
        let ca_pem = ca_file.map(|(_, path)| read_ca(&path)).transpose()?;
        let client_identity = match client_files {
            None => None,
            Some(((_, cert), (_, key))) => Some((read_pem(&cert.into())?, read_pem(&key.into())?)),
        };
        Ok(Target {
            protocol,
            url,
            headers,
            timeout,
            gzip,
            ca_pem,
            client_identity,
        })
    }

    /// The signal-specific variable if set, else the general one: its name and value.
    fn setting(
        &self,
        signal: Signal,
        suffix: &str,
    ) -> Result<Option<(String, String)>, ExportError> {
        for name in signal_variables(signal, suffix) {
            if let Some(value) = self.env.var(&name)? {
                return Ok(Some((name, value)));
            }
        }
        Ok(None)
    }

    /// A boolean setting, signal-specific variable first.
    fn flag(&self, signal: Signal, suffix: &str) -> Result<Option<bool>, ExportError> {
        for name in signal_variables(signal, suffix) {
            if let Some(value) = self.env.flag(&name)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}

/// `OTEL_EXPORTER_OTLP_{SIGNAL}_{suffix}`, then `OTEL_EXPORTER_OTLP_{suffix}`.
fn signal_variables(signal: Signal, suffix: &str) -> [String; 2] {
    [
        format!("OTEL_EXPORTER_OTLP_{}_{suffix}", signal.env_name()),
        format!("OTEL_EXPORTER_OTLP_{suffix}"),
    ]
}

/// HTTP appends the signal's path to a base endpoint; gRPC takes it as it is.
fn signal_url(protocol: Protocol, base: &str, signal: Signal) -> String {
    match protocol {
        Protocol::Grpc => base.to_string(),
        Protocol::HttpProtobuf => {
            format!("{}{}", base.trim_end_matches('/'), signal.http_path())
        }
    }
}

/// A gRPC endpoint given as `host:port` (the form gRPC clients take) gets `https://`, or
/// `http://` when `OTEL_EXPORTER_OTLP_*INSECURE` is true, as the specification says; an
/// endpoint with a scheme keeps it, whatever INSECURE says. Anything else is left for
/// [`validate_endpoint`] to refuse.
fn with_grpc_scheme(url: String, insecure: bool) -> String {
    let is_host = |host: &str| {
        (host.starts_with('[') && host.ends_with(']'))
            || (!host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    };
    // Nothing else: no user information, no path.
    let host_and_port = url
        .rsplit_once(':')
        .is_some_and(|(host, port)| is_host(host) && port.parse::<u16>().is_ok());
    match (host_and_port, insecure) {
        (true, true) => format!("http://{url}"),
        (true, false) => format!("https://{url}"),
        (false, _) => url,
    }
}

/// Checks that an endpoint is an absolute http(s) URL with a host and, if it names one, a port
/// from 1 to 65535. Errors show it without its user information.
pub fn validate_endpoint(endpoint: &str) -> Result<(), ExportError> {
    let invalid = |reason: &str| ExportError::InvalidEndpoint {
        endpoint: redact_userinfo(endpoint),
        reason: reason.to_string(),
    };
    let uri = http::Uri::from_str(endpoint).map_err(|error| invalid(&error.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(invalid(&format!("scheme `{other}` is not http or https"))),
        None => {
            return Err(invalid(
                "it needs a scheme, e.g. http://localhost:4317 (gRPC also takes host:port)",
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    let host_and_port = uri
        .authority()
        .map_or("", |authority| authority.as_str())
        .rsplit('@')
        .next()
        .unwrap_or_default();
    // After the last `:` outside an IPv6 literal's brackets.
    if let Some((_, port)) = host_and_port
        .rsplit_once(':')
        .filter(|(_, port)| !port.contains(']'))
    {
        match port.parse::<u16>() {
            Ok(1..) => {}
            _ => return Err(invalid(&format!("port `{port}` is not 1 to 65535"))),
        }
    }
    Ok(())
}

/// The endpoint as it may be shown: any user information (`user:password@`) replaced.
pub fn redact_userinfo(endpoint: &str) -> String {
    match userinfo_span(endpoint) {
        Some((start, at)) => format!("{}<redacted>{}", &endpoint[..start], &endpoint[at..]),
        None => endpoint.to_string(),
    }
}

/// The URL without its user information, and that information.
fn split_userinfo(url: &str) -> (String, Option<&str>) {
    match userinfo_span(url) {
        Some((start, at)) => (
            format!("{}{}", &url[..start], &url[at + 1..]),
            Some(&url[start..at]),
        ),
        None => (url.to_string(), None),
    }
}

/// Where the user information starts and where its `@` is, found in the text alone so that it
/// also works on strings that are not valid URLs.
fn userinfo_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let authority_len = url[start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - start);
    let at = url[start..start + authority_len].rfind('@')?;
    Some((start, start + at))
}

/// `user:password` (percent-encoded, as in a URL) as an `authorization: Basic` header.
fn basic_authorization(userinfo: &str) -> Result<(String, String), String> {
    let decoded = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| "its user information does not percent-decode to UTF-8".to_string())
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let credentials = format!("{}:{}", decoded(user)?, decoded(password)?);
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    Ok(("authorization".to_string(), format!("Basic {encoded}")))
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

/// Largest headers file read: a few tokens fit many times over; `/dev/zero` does not.
const HEADERS_FILE_MAX_BYTES: u64 = 64 * 1024;

/// Headers from a file (`--otlp-headers-file`): one `KEY=VALUE` per line, taken literally (no
/// percent-decoding), surrounding whitespace trimmed; blank lines and lines starting with `#`
/// are skipped. Errors name the line, never its text: it may hold a secret.
pub fn read_headers_file(path: &Path) -> Result<Vec<(String, String)>, ExportError> {
    let failed = |reason: String| ExportError::HeadersFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(HEADERS_FILE_MAX_BYTES + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|error| failed(error.to_string()))?;
    if bytes.len() as u64 > HEADERS_FILE_MAX_BYTES {
        return Err(failed(format!(
            "it is larger than {HEADERS_FILE_MAX_BYTES} bytes"
        )));
    }
    let mut headers = Vec::new();
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        let bad_line = |what: &str| failed(format!("line {} {what}", index + 1));
        let line = std::str::from_utf8(line)
            .map_err(|_| bad_line("is not valid UTF-8"))?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| bad_line("is not KEY=VALUE"))?;
        let (name, value) = (name.trim(), value.trim());
        if http::HeaderName::from_str(name).is_err() {
            return Err(bad_line("does not start with a valid header name"));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(bad_line(
                "has a value that is not visible ASCII, spaces or tabs",
            ));
        }
        headers.push((name.to_string(), value.to_string()));
    }
    Ok(headers)
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
            protocol: Some(protocol),
            endpoint: endpoint.map(String::from),
            headers: vec![],
            ca_certificate: None,
            timeout: None,
            env: Env::fixed::<&str, &str>([]),
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
        for good in [
            "http://localhost:4317",
            "https://collector.example:4318/",
            "http://collector",
            "http://[::1]:1",
            "http://[::1]",
            "http://127.0.0.1:65535/otlp",
        ] {
            assert!(validate_endpoint(good).is_ok(), "{good} should be accepted");
        }
        for bad in ["localhost:4317", "ftp://host", "http://", "not a url", ""] {
            assert!(validate_endpoint(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn ports_outside_1_to_65535_are_refused() {
        for (endpoint, port) in [
            ("http://collector:0", "0"),
            ("http://collector:65536", "65536"),
            ("http://collector:99999/v1", "99999"),
            ("http://[::1]:0", "0"),
            ("http://u:p@collector:0", "0"),
        ] {
            let message = validate_endpoint(endpoint).expect_err(endpoint).to_string();
            assert!(
                message.ends_with(&format!("port `{port}` is not 1 to 65535")),
                "{endpoint}: {message}"
            );
        }
    }

    #[test]
    fn user_information_is_redacted_even_in_invalid_endpoints() {
        let cases = [
            (
                "http://user:s3cr3t@host:4317",
                "http://<redacted>@host:4317",
            ),
            (
                "https://s3cr3t@host/v1?x=a@b",
                "https://<redacted>@host/v1?x=a@b",
            ),
            ("user:s3cr3t@host:99999", "<redacted>@host:99999"),
            ("http://u:s3cr3t@host:0", "http://<redacted>@host:0"),
            ("http://host:4317/a@b", "http://host:4317/a@b"),
        ];
        for (endpoint, shown) in cases {
            assert_eq!(redact_userinfo(endpoint), shown);
        }
        let message = validate_endpoint("http://user:s3cr3t@host:0")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("s3cr3t"), "{message}");
        assert!(message.contains("http://<redacted>@host:0"), "{message}");
    }

    #[test]
    fn user_information_becomes_a_basic_authorization_header() {
        let target = config(
            Protocol::HttpProtobuf,
            Some("http://us%40er:p%3Ass@host:4318"),
        )
        .target(Signal::Traces)
        .unwrap();
        assert_eq!(target.url, "http://host:4318/v1/traces");
        // base64("us@er:p:ss")
        assert_eq!(
            target.headers,
            vec![("authorization".into(), "Basic dXNAZXI6cDpzcw==".into())]
        );
        // An explicit header wins over the URL's.
        let explicit = OtlpConfig {
            headers: vec![("Authorization".into(), "Bearer t".into())],
            ..config(Protocol::Grpc, Some("http://user:pw@host:4317"))
        };
        let target = explicit.target(Signal::Logs).unwrap();
        assert_eq!(target.url, "http://host:4317");
        assert_eq!(
            target.headers,
            vec![("authorization".into(), "Bearer t".into())]
        );
    }

    #[test]
    fn a_certificate_with_a_plaintext_endpoint_is_refused() {
        let with_ca = |endpoint: Option<&str>| OtlpConfig {
            ca_certificate: Some("/nonexistent/ca.pem".into()),
            ..config(Protocol::Grpc, endpoint)
        };
        for endpoint in [
            Some("http://collector:4317"),
            None,
            Some("http://u:s3cr3t@c:1"),
        ] {
            let error = with_ca(endpoint).target(Signal::Traces).unwrap_err();
            assert!(
                matches!(error, ExportError::TlsFilesWithoutTls { .. }),
                "{endpoint:?}: {error}"
            );
            let message = error.to_string();
            assert!(message.starts_with("--otlp-ca-cert"), "{message}");
            assert!(!message.contains("s3cr3t"), "{message}");
        }
        // With https:// the CA file itself is what is checked next.
        let error = with_ca(Some("https://collector:4317"))
            .target(Signal::Traces)
            .unwrap_err();
        assert!(
            matches!(error, ExportError::CaCertificate { .. }),
            "{error}"
        );
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let zero = OtlpConfig {
            timeout: Some(Duration::ZERO),
            ..config(Protocol::Grpc, None)
        };
        assert!(matches!(
            zero.target(Signal::Traces),
            Err(ExportError::ZeroTimeout)
        ));
    }

    fn headers_file(name: &str, contents: &[u8]) -> Result<Vec<(String, String)>, String> {
        let path =
            std::env::temp_dir().join(format!("kspan-headers-{name}-{}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        let headers = read_headers_file(&path).map_err(|error| {
            let message = error.to_string();
            let prefix = format!("headers file {}: ", path.display());
            message
                .strip_prefix(&prefix)
                .unwrap_or(&message)
                .to_string()
        });
        let _ = std::fs::remove_file(&path);
        headers
    }

    #[test]
    fn headers_files_hold_one_header_per_line() {
        assert_eq!(
            headers_file(
                "good",
                b"# the collector's token\r\nAuthorization = Bearer a=b%20c \r\n\n  x-tenant=7\n"
            ),
            Ok(vec![
                ("Authorization".into(), "Bearer a=b%20c".into()),
                ("x-tenant".into(), "7".into()),
            ])
        );
        assert_eq!(headers_file("empty", b""), Ok(vec![]));
    }

    #[test]
    fn malformed_headers_files_name_the_line_and_hide_the_value() {
        let cases: [(&str, &[u8], &str); 5] = [
            ("novalue", b"a=1\ns3cr3t\n", "line 2 is not KEY=VALUE"),
            (
                "badname",
                b"bad name=s3cr3t",
                "line 1 does not start with a valid header name",
            ),
            (
                "emptyname",
                b"=s3cr3t",
                "line 1 does not start with a valid header name",
            ),
            (
                "badvalue",
                b"a=s3cr3t\x7f",
                "line 1 has a value that is not visible ASCII, spaces or tabs",
            ),
            (
                "notutf8",
                b"a=1\n\nb=s3cr3t\xff",
                "line 3 is not valid UTF-8",
            ),
        ];
        for (name, contents, expected) in cases {
            assert_eq!(
                headers_file(name, contents),
                Err(expected.to_string()),
                "{name}"
            );
        }
        let missing = read_headers_file(Path::new("/nonexistent/headers")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "headers file /nonexistent/headers: No such file or directory (os error 2)"
        );
        let huge = vec![b'#'; HEADERS_FILE_MAX_BYTES as usize + 1];
        assert_eq!(
            headers_file("huge", &huge),
            Err(format!("it is larger than {HEADERS_FILE_MAX_BYTES} bytes"))
        );
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
            ..config(Protocol::Grpc, Some("https://collector:4317"))
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
                ..config(Protocol::HttpProtobuf, Some("https://collector:4318"))
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

    /// Variables, by name and value.
    type Variables<'a> = &'a [(&'a str, &'a str)];

    /// The command line's settings (none unless given) with exactly these variables.
    fn resolved(
        cli: OtlpConfig,
        variables: &[(&str, &str)],
        signal: Signal,
    ) -> Result<Target, String> {
        OtlpConfig {
            env: Env::fixed(variables.iter().copied()),
            ..cli
        }
        .target(signal)
        .map_err(|error| error.to_string())
    }

    fn unset() -> OtlpConfig {
        OtlpConfig {
            protocol: None,
            ..config(Protocol::Grpc, None)
        }
    }

    /// Command line > the signal's own variable > the general variable > default, for each
    /// setting that has all four.
    #[test]
    fn precedence_is_flag_then_signal_variable_then_general_variable_then_default() {
        /// Transport, URL, timeout, gzip.
        type Resolved<'a> = (Protocol, &'a str, Duration, bool);
        use Signal::{Logs, Metrics, Traces};
        let general = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ];
        let traces_own = [
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:2"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2000"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ];
        let both: Vec<_> = general.iter().chain(&traces_own).copied().collect();
        let flags = OtlpConfig {
            protocol: Some(Protocol::HttpProtobuf),
            endpoint: Some("http://flag:3".into()),
            timeout: Some(Duration::from_secs(3)),
            ..unset()
        };
        let second = Duration::from_secs;
        let cases: [(&str, OtlpConfig, Variables, Signal, Resolved); 7] = [
            (
                "defaults",
                unset(),
                &[],
                Traces,
                (Protocol::Grpc, "http://localhost:4317", second(10), false),
            ),
            (
                "general",
                unset(),
                &general,
                Traces,
                (
                    Protocol::HttpProtobuf,
                    "http://general:1/v1/traces",
                    second(1),
                    true,
                ),
            ),
            (
                "signal's own",
                unset(),
                &both,
                Traces,
                (Protocol::Grpc, "http://traces:2", second(2), false),
            ),
            (
                "another signal's are not",
                unset(),
                &both,
                Logs,
                (
                    Protocol::HttpProtobuf,
                    "http://general:1/v1/logs",
                    second(1),
                    true,
                ),
            ),
            (
                "flags",
                flags.clone(),
                &both,
                Traces,
                (
                    Protocol::HttpProtobuf,
                    "http://flag:3/v1/traces",
                    second(3),
                    false,
                ),
            ),
            (
                "flags, metrics",
                flags.clone(),
                &both,
                Metrics,
                (
                    Protocol::HttpProtobuf,
                    "http://flag:3/v1/metrics",
                    second(3),
                    true,
                ),
            ),
            (
                "per-signal protocol picks the default port",
                unset(),
                &[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf")],
                Logs,
                (
                    Protocol::HttpProtobuf,
                    "http://localhost:4318/v1/logs",
                    second(10),
                    false,
                ),
            ),
        ];
        for (name, cli, variables, signal, (protocol, url, timeout, gzip)) in cases {
            let target = resolved(cli, variables, signal).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (
                    target.protocol,
                    target.url.as_str(),
                    target.timeout,
                    target.gzip
                ),
                (protocol, url, timeout, gzip),
                "{name}"
            );
        }
        // The signal's own variable is checked even where the general one would do.
        let error = resolved(
            unset(),
            &[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")],
            Metrics,
        )
        .unwrap_err();
        assert_eq!(
            error,
            "unsupported OTLP protocol `http/json`: use `grpc` or `http/protobuf`"
        );
    }

    #[test]
    fn insecure_gives_a_grpc_host_and_port_its_scheme() {
        use Signal::{Logs, Traces};
        let endpoint = |url: &str| OtlpConfig {
            endpoint: Some(url.into()),
            ..unset()
        };
        let cases: [(&str, Variables, Signal, Result<&str, &str>); 10] = [
            ("collector:4317", &[], Traces, Ok("https://collector:4317")),
            (
                "collector:4317",
                &[("OTEL_EXPORTER_OTLP_INSECURE", "true")],
                Traces,
                Ok("http://collector:4317"),
            ),
            (
                "collector:4317",
                &[("OTEL_EXPORTER_OTLP_INSECURE", "false")],
                Traces,
                Ok("https://collector:4317"),
            ),
            (
                "collector:4317",
                &[
                    ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
                    ("OTEL_EXPORTER_OTLP_LOGS_INSECURE", "false"),
                ],
                Logs,
                Ok("https://collector:4317"),
            ),
            // A scheme wins over INSECURE, as the specification says.
            (
                "https://collector:4317",
                &[("OTEL_EXPORTER_OTLP_INSECURE", "true")],
                Traces,
                Ok("https://collector:4317"),
            ),
            (
                "http://collector:4317",
                &[],
                Traces,
                Ok("http://collector:4317"),
            ),
            (
                "collector",
                &[],
                Traces,
                Err("invalid OTLP endpoint `collector`: it needs a scheme"),
            ),
            (
                "u:pw@collector:4317",
                &[],
                Traces,
                Err("invalid OTLP endpoint `<redacted>@collector:4317`"),
            ),
            (
                "[::1]:4317",
                &[("OTEL_EXPORTER_OTLP_INSECURE", "true")],
                Traces,
                Ok("http://[::1]:4317"),
            ),
            (
                "collector:4317",
                &[("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "yes")],
                Traces,
                Err("invalid OTEL_EXPORTER_OTLP_TRACES_INSECURE: expected `true` or `false`"),
            ),
        ];
        for (url, variables, signal, expected) in cases {
            let got = resolved(endpoint(url), variables, signal);
            match expected {
                Ok(expected) => assert_eq!(
                    got.map(|t| t.url),
                    Ok(expected.to_string()),
                    "{url} {variables:?}"
                ),
                Err(expected) => {
                    let error = got.expect_err(url);
                    assert!(error.starts_with(expected), "{url} {variables:?}: {error}");
                }
            }
        }
        // HTTP always takes a URL: INSECURE does not apply.
        let http = OtlpConfig {
            protocol: Some(Protocol::HttpProtobuf),
            ..endpoint("collector:4318")
        };
        let error = resolved(http, &[("OTEL_EXPORTER_OTLP_INSECURE", "true")], Traces).unwrap_err();
        assert!(
            error.starts_with("invalid OTLP endpoint `collector:4318/v1/traces`"),
            "{error}"
        );
    }

    #[test]
    fn the_ca_certificate_comes_from_the_flag_then_the_signal_then_the_general_variable() {
        use Signal::{Logs, Traces};
        let https = |ca: Option<&str>| OtlpConfig {
            endpoint: Some("https://collector:4317".into()),
            ca_certificate: ca.map(PathBuf::from),
            ..unset()
        };
        let variables = [
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/general/ca.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/traces/ca.pem"),
        ];
        // Each file is missing: the error names the one that was chosen.
        let cases = [
            (Some("/flag/ca.pem"), Traces, "/flag/ca.pem"),
            (None, Traces, "/traces/ca.pem"),
            (None, Logs, "/general/ca.pem"),
        ];
        for (flag, signal, chosen) in cases {
            let error = resolved(https(flag), &variables, signal).unwrap_err();
            assert!(
                error.starts_with(&format!("cannot read CA certificate {chosen}:")),
                "{signal:?} {flag:?}: {error}"
            );
        }
        // Over plaintext, the setting that asked for TLS is named.
        let plaintext = OtlpConfig {
            endpoint: Some("http://collector:4317".into()),
            ..unset()
        };
        let error = resolved(plaintext, &variables, Traces).unwrap_err();
        assert!(
            error.starts_with("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE is set but the OTLP endpoint `http://collector:4317` is plaintext"),
            "{error}"
        );
    }
}
