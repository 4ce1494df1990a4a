//! A fresh long-term identity: RSA-2048 key and self-signed SHA-256 certificate.

use aws_lc_rs::encoding::AsDer;

/// Why an identity could not be made (the system RNG or the crypto library failed).
#[derive(Debug, thiserror::Error)]
#[error("key generation: {0}")]
pub struct IdentityError(String);

/// A key and its certificate, PEM-encoded. `Debug` never shows the key.
#[derive(Clone)]
pub struct IdentityPem {
    pub key_pem: String,
    pub cert_pem: String,
}

impl std::fmt::Debug for IdentityPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityPem")
            .field("key_pem", &"<redacted>")
            .field("cert_pem", &self.cert_pem)
            .finish()
    }
}

/// An RSA-2048 key and a self-signed SHA-256 certificate with subject `CN=<common_name>`,
/// serial `serial` (big-endian bytes) and validity from 2024 to `not_after_year`: the shape
/// every GameStream peer expects (reference part 1, 2.4). Validity is long on purpose: peers
/// pin the certificate at pairing and never check its dates afterwards.
pub fn generate_identity(
    common_name: &str,
    serial: &[u8],
    not_after_year: i32,
) -> Result<IdentityPem, IdentityError> {
    let kg = |e: &dyn std::fmt::Display| IdentityError(e.to_string());
    let rsa =
        aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|e| kg(&e))?;
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).map_err(|e| kg(&e))?;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| kg(&e))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| kg(&e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
    let cert = params.self_signed(&key).map_err(|e| kg(&e))?;
    Ok(IdentityPem {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
    })
}
