//! TLS for the NVHTTP HTTPS port: the host's one self-signed certificate, and mutual TLS that
//! accepts *any* client certificate at the TLS layer.
//!
//! Clients' certificates are self-signed, often expired or not yet valid (wrong clocks), and
//! share subject and serial. Authorisation therefore happens after the handshake, by comparing
//! the certificate's fingerprint with the paired set; the TLS layer only proves that the peer
//! holds the certificate's private key (the handshake signature is still checked).

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use std::sync::Arc;

/// Accepts every client certificate; checks only the handshake signature.
#[derive(Debug)]
struct AcceptAnyClientCert {
    algs: WebPkiSupportedAlgorithms,
    /// Whether a client must present a certificate (the node endpoint: yes).
    mandatory: bool,
}

impl ClientCertVerifier for AcceptAnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }

    // Optional so that a certificate-less probe (curl, a load balancer) still gets the XML
    // 401 answer instead of a TLS alert; every Moonlight client sends its certificate.
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
}

/// Errors building the TLS configuration from the state directory's PEM files.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("server certificate: {0}")]
    Cert(String),
    #[error("server key: {0}")]
    Key(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The host's certificate and key from the state directory's PEM text.
fn cert_and_key(
    cert_pem: &str,
    key_pem: &str,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsSetupError> {
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| TlsSetupError::Cert(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsSetupError::Key(e.to_string()))?;
    Ok((cert, key))
}

/// Builds the HTTPS server configuration.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let (cert, key) = cert_and_key(cert_pem, key_pem)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(AcceptAnyClientCert {
        algs: provider.signature_verification_algorithms,
        mandatory: false,
    });
    let mut cfg = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    // Resumption with stateless tickets: clients poll over a new connection per request
    // (Connection: close), and a resumed handshake skips the RSA signature that dominates the
    // cost of a full one. rustls keeps the client certificate of the original handshake in the
    // ticket, so a resumed connection still identifies its client (the interop tests check
    // that paired-only routes keep working on resumed connections).
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
    // HTTP/1.1 only: a GFE release broke with HTTP/2 and clients disable it.
    cfg.alpn_protocols = Vec::new();
    Ok(Arc::new(cfg))
}

/// The node endpoint's configuration: the host's certificate, and a client certificate
/// required from every node (authorised after the handshake by its pinned fingerprint or a
/// join token, see `node`). TLS 1.3 only: both ends are howl.
pub fn node_server_config(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let (cert, key) = cert_and_key(cert_pem, key_pem)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(AcceptAnyClientCert {
        algs: provider.signature_verification_algorithms,
        mandatory: true,
    });
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    Ok(Arc::new(cfg))
}

/// The crypto provider used everywhere (installed once as the process default).
pub fn install_default_provider() {
    let _ = CryptoProvider::install_default(rustls::crypto::aws_lc_rs::default_provider());
}
