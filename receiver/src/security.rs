//! TLS and a required request header, for testing exporters against a secured collector.
//!
//! Both are off by default. Secrets (the private key, the header's value) never appear in
//! `Debug` output or in the receiver's logs and error answers.

use crate::ReceiverError;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// How the receiver guards both transports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiverSecurity {
    /// Serve gRPC and HTTP over TLS with this certificate and key; `None` serves plain text.
    pub tls: Option<TlsIdentity>,
    /// Refuse every request that lacks this header with exactly this value.
    pub required_header: Option<RequiredHeader>,
}

/// The server's certificate chain and private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    cert_chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field(
                "cert_chain_pem",
                &format_args!("{} bytes", self.cert_chain_pem.len()),
            )
            .field("key_pem", &format_args!("(hidden)"))
            .finish()
    }
}

impl TlsIdentity {
    /// A certificate chain (server certificate first) and its private key, checked now.
    pub fn from_pem(cert_chain_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Self, ReceiverError> {
        let identity = TlsIdentity {
            cert_chain_pem,
            key_pem,
        };
        identity.rustls_config()?;
        Ok(identity)
    }

    /// Reads and checks a PEM certificate chain file and a PEM private key file.
    pub fn from_pem_files(cert_chain: &Path, key: &Path) -> Result<Self, ReceiverError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|cause| ReceiverError::TlsFile {
                path: path.to_path_buf(),
                cause,
            })
        };
        Self::from_pem(read(cert_chain)?, read(key)?)
    }

    /// For tonic, which builds its own rustls configuration from the PEM.
    pub(crate) fn tonic_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            &self.cert_chain_pem,
            &self.key_pem,
        ))
    }

    /// A rustls server configuration with ring (the workspace's provider), for HTTP/1.1.
    pub(crate) fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, ReceiverError> {
        let invalid = |message: String| ReceiverError::Tls { message };
        let chain = CertificateDer::pem_slice_iter(&self.cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("the certificate chain is not PEM: {e}")))?;
        if chain.is_empty() {
            return Err(invalid(
                "the certificate chain holds no PEM CERTIFICATE block".into(),
            ));
        }
        // The key's bytes stay out of the message: only what kind of problem it is.
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| invalid(format!("the private key is not a PEM private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| invalid(format!("the key does not fit the certificate: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A header every request must carry, e.g. `authorization: Bearer <token>`.
#[derive(Clone, PartialEq, Eq)]
pub struct RequiredHeader {
    name: String,
    value: String,
}

impl fmt::Debug for RequiredHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequiredHeader")
            .field("name", &self.name)
            .field("value", &format_args!("(hidden)"))
            .finish()
    }
}

impl RequiredHeader {
    /// The header `name` (any case; gRPC metadata keys are lower case) with exactly `value`.
    pub fn new(name: &str, value: &str) -> Result<Self, ReceiverError> {
        let name = name.trim().to_ascii_lowercase();
        let valid = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && axum::http::HeaderValue::from_str(value).is_ok();
        if !valid {
            return Err(ReceiverError::InvalidRequiredHeader { name });
        }
        Ok(RequiredHeader {
            name,
            value: value.to_string(),
        })
    }

    /// `KEY=VALUE`, split at the first `=`.
    pub fn parse(text: &str) -> Result<Self, ReceiverError> {
        match text.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => Self::new(name, value),
            _ => Err(ReceiverError::InvalidRequiredHeader {
                name: String::new(),
            }),
        }
    }

    /// The header's name, lower case.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a request whose header `name` has `present` (if any) passes.
    pub(crate) fn admits(&self, present: Option<&[u8]>) -> bool {
        present == Some(self.value.as_bytes())
    }

    /// What a refused client is told: the header's name, never the expected value.
    pub(crate) fn refusal(&self) -> String {
        format!(
            "missing or wrong `{}` header: this receiver requires authentication",
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::received::tests::trace_request;
    use crate::test_pki::TestPki;
    use crate::{Receiver, ReceiverConfig, TransportCounts};
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    use tonic::Code;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const TOKEN: &str = "Bearer s3cr3t-t0ken";

    async fn secured_receiver(pki: &TestPki) -> Result<Receiver, Box<dyn std::error::Error>> {
        Ok(Receiver::start(ReceiverConfig {
            security: ReceiverSecurity {
                tls: Some(pki.server_identity()?),
                required_header: Some(RequiredHeader::new("authorization", TOKEN)?),
            },
            ..ReceiverConfig::loopback()
        })
        .await?)
    }

    fn https_client(ca_pem: &str) -> Result<reqwest::Client, reqwest::Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
            .build()
    }

    fn with_header(
        value: &str,
    ) -> Result<tonic::Request<ExportTraceServiceRequest>, Box<dyn std::error::Error>> {
        let mut request = tonic::Request::new(trace_request());
        request
            .metadata_mut()
            .insert("authorization", value.parse()?);
        Ok(request)
    }

    /// gRPC over TLS: the right header passes; a missing or wrong one is refused as
    /// UNAUTHENTICATED, counted, and the answer does not give the expected value away.
    #[tokio::test]
    async fn grpc_over_tls_requires_the_header() -> TestResult {
        let pki = TestPki::generate()?;
        let receiver = secured_receiver(&pki).await?;
        let endpoint = receiver.grpc_endpoint().ok_or("no gRPC")?;
        assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem));
        let channel = Channel::from_shared(endpoint.clone())?
            .tls_config(tls)?
            .connect()
            .await?;
        let mut client = TraceServiceClient::new(channel);
        client.export(with_header(TOKEN)?).await?;
        let missing = client
            .export(trace_request())
            .await
            .err()
            .ok_or("accepted without the header")?;
        let wrong = client
            .export(with_header("Bearer guess")?)
            .await
            .err()
            .ok_or("accepted a wrong token")?;
        for refused in [&missing, &wrong] {
            assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
            assert!(refused.message().contains("`authorization`"), "{refused:?}");
            assert!(!format!("{refused:?}").contains("s3cr3t"), "{refused:?}");
        }
        let stats = receiver.store().stats();
        assert_eq!(stats.trace_requests.grpc, 1);
        assert_eq!(stats.spans, 3);
        assert_eq!(
            stats.unauthenticated_requests,
            TransportCounts { grpc: 2, http: 0 }
        );

        // A plain-text client gets nowhere.
        let plain = endpoint.replacen("https://", "http://", 1);
        let plain_export = async {
            let mut client = TraceServiceClient::connect(plain).await?;
            client.export(with_header(TOKEN)?).await?;
            Ok::<(), Box<dyn std::error::Error>>(())
        };
        assert!(plain_export.await.is_err(), "plain text was accepted");
        assert_eq!(receiver.store().stats().trace_requests.grpc, 1);
        receiver.shutdown().await;
        Ok(())
    }

    /// HTTP over TLS: the right header passes; a missing or wrong one gets 401 and is counted;
    /// a client that does not trust the receiver's CA fails the handshake.
    #[tokio::test]
    async fn http_over_tls_requires_the_header() -> TestResult {
        let pki = TestPki::generate()?;
        let receiver = secured_receiver(&pki).await?;
        let base = receiver.http_endpoint().ok_or("no HTTP")?;
        assert!(base.starts_with("https://127.0.0.1:"), "{base}");
        let url = format!("{base}/v1/traces");
        let client = https_client(&pki.ca_pem)?;
        let post = |token: Option<&str>| {
            let mut request = client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(trace_request().encode_to_vec());
            if let Some(token) = token {
                request = request.header("authorization", token);
            }
            request.send()
        };
        let accepted = post(Some(TOKEN)).await?;
        assert_eq!(accepted.status(), reqwest::StatusCode::OK);
        for token in [None, Some("Bearer guess")] {
            let refused = post(token).await?;
            assert_eq!(
                refused.status(),
                reqwest::StatusCode::UNAUTHORIZED,
                "{token:?}"
            );
            let text = refused.text().await?;
            assert!(
                text.contains("`authorization`") && !text.contains("s3cr3t"),
                "{text}"
            );
        }
        let stats = receiver.store().stats();
        assert_eq!(stats.trace_requests.http, 1);
        assert_eq!(
            stats.unauthenticated_requests,
            TransportCounts { grpc: 0, http: 2 }
        );
        assert_eq!(stats.rejected_http_requests, 0, "401s are counted apart");

        let other_ca = TestPki::generate()?;
        let untrusting = https_client(&other_ca.ca_pem)?
            .post(&url)
            .header("authorization", TOKEN)
            .send()
            .await;
        assert!(
            untrusting.is_err(),
            "a certificate from an untrusted CA was accepted"
        );
        assert_eq!(receiver.store().stats().trace_requests.http, 1);
        receiver.shutdown().await;
        Ok(())
    }

    /// A restarted receiver (collector outage) keeps its TLS and header.
    #[tokio::test]
    async fn config_keeps_the_security_for_a_restart() -> TestResult {
        let pki = TestPki::generate()?;
        let receiver = secured_receiver(&pki).await?;
        let config = receiver.config();
        let endpoint = receiver.http_endpoint();
        receiver.shutdown().await;
        assert!(config.security.tls.is_some() && config.security.required_header.is_some());
        let restarted = Receiver::start(config).await?;
        assert_eq!(restarted.http_endpoint(), endpoint);
        restarted.shutdown().await;
        Ok(())
    }

    #[test]
    fn debug_output_hides_secrets() -> Result<(), ReceiverError> {
        let header = RequiredHeader::new("Authorization", "Bearer s3cr3t")?;
        let security = ReceiverSecurity {
            tls: None,
            required_header: Some(header),
        };
        let shown = format!("{security:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("authorization"), "{shown}");
        Ok(())
    }

    #[test]
    fn header_names_are_case_insensitive_values_exact() -> Result<(), ReceiverError> {
        let header = RequiredHeader::parse("Authorization=Bearer a=b")?;
        assert_eq!(header.name(), "authorization");
        assert!(header.admits(Some(b"Bearer a=b")));
        assert!(!header.admits(Some(b"bearer a=b")));
        assert!(!header.admits(None));
        assert!(!header.refusal().contains("a=b"));
        Ok(())
    }

    #[test]
    fn malformed_headers_are_refused_without_the_value() {
        for bad in ["novalue", "=x", "bad name=x"] {
            let error = RequiredHeader::parse(bad).err();
            assert!(
                matches!(error, Some(ReceiverError::InvalidRequiredHeader { .. })),
                "{bad}: {error:?}"
            );
        }
        let error = RequiredHeader::new("authorization", "line\nbreak").err();
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(!message.contains("break"), "{message}");
    }

    #[test]
    fn non_pem_identity_is_refused_with_a_reason() {
        let error = TlsIdentity::from_pem(b"not a certificate".to_vec(), b"nor a key".to_vec());
        let message = error.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("no PEM CERTIFICATE block"), "{message}");
    }
}
