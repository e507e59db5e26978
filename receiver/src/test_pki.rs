//! A throwaway certificate authority and a server certificate it signed, made at test time.
//!
//! For tests of TLS exporters against the receiver: nothing secret is kept in the repository,
//! and every run has its own keys.

use crate::{ReceiverError, TlsIdentity};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A self-signed CA and a server certificate for `127.0.0.1`, `::1` and `localhost`, all PEM.
#[derive(Clone)]
pub struct TestPki {
    /// The CA's certificate: what a client must trust.
    pub ca_pem: String,
    /// The server's certificate, signed by the CA.
    pub server_cert_pem: String,
    /// The server's private key.
    pub server_key_pem: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl TestPki {
    /// Generates a fresh CA and server certificate.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kspan test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let names = ["127.0.0.1", "::1", "localhost"].map(String::from).to_vec();
        let mut server_params = CertificateParams::new(names)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "kspan test receiver");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &ca)?;
        Ok(TestPki {
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        })
    }

    /// The server's identity, for [`crate::ReceiverSecurity::tls`].
    pub fn server_identity(&self) -> Result<TlsIdentity, ReceiverError> {
        TlsIdentity::from_pem(
            self.server_cert_pem.clone().into_bytes(),
            self.server_key_pem.clone().into_bytes(),
        )
    }
}
