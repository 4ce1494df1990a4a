//! Pairing primitives (reference part 1, section 4.2), SHA-256 flavour only.

use aws_lc_rs::cipher::{
    AES_128, DecryptingKey, DecryptionContext, EncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::digest;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{self, KeyPair as _, RsaParameters, UnparsedPublicKey};
use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;

use super::{CertError, IdentityError, PairingError};

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The pairing AES key: `K = SHA256(salt ‖ PIN)[..16]`, PIN as the ASCII digits typed.
pub fn aes_key(salt: &[u8; 16], pin: &str) -> [u8; 16] {
    let hash = sha256(&[salt, pin.as_bytes()]);
    let mut key = [0u8; 16];
    key.copy_from_slice(&hash[..16]);
    key
}

/// AES-128-ECB encryption without padding. `N` must be a non-zero multiple of 16 (checked at
/// compile time). ECB is what the protocol uses; it is not a choice this crate would make.
pub fn aes_ecb_encrypt<const N: usize>(
    key: &[u8; 16],
    mut data: [u8; N],
) -> Result<[u8; N], PairingError> {
    const {
        assert!(
            N > 0 && N.is_multiple_of(16),
            "ECB input must be whole 16-byte blocks"
        )
    };
    let key = UnboundCipherKey::new(&AES_128, key).map_err(|_| PairingError::Crypto)?;
    let key = EncryptingKey::ecb(key).map_err(|_| PairingError::Crypto)?;
    key.encrypt(&mut data).map_err(|_| PairingError::Crypto)?;
    Ok(data)
}

/// AES-128-ECB decryption without padding; see [`aes_ecb_encrypt`].
pub fn aes_ecb_decrypt<const N: usize>(
    key: &[u8; 16],
    mut data: [u8; N],
) -> Result<[u8; N], PairingError> {
    const {
        assert!(
            N > 0 && N.is_multiple_of(16),
            "ECB input must be whole 16-byte blocks"
        )
    };
    let key = UnboundCipherKey::new(&AES_128, key).map_err(|_| PairingError::Crypto)?;
    let key = DecryptingKey::ecb(key).map_err(|_| PairingError::Crypto)?;
    key.decrypt(&mut data, DecryptionContext::None)
        .map_err(|_| PairingError::Crypto)?;
    Ok(data)
}

/// Step 2's `H1 = SHA256(CC ‖ SIG(server cert) ‖ SS)`.
pub fn server_challenge_hash(
    client_challenge: &[u8; 16],
    server_cert_signature: &[u8],
    server_secret: &[u8; 16],
) -> [u8; 32] {
    sha256(&[client_challenge, server_cert_signature, server_secret])
}

/// Step 3's client hash `SHA256(SC ‖ SIG(client cert) ‖ CS)`.
pub fn client_hash(
    server_challenge: &[u8; 16],
    client_cert_signature: &[u8],
    client_secret: &[u8; 16],
) -> [u8; 32] {
    sha256(&[server_challenge, client_cert_signature, client_secret])
}

/// The client identity used everywhere in howl: SHA-256 of the certificate's DER.
///
/// Never `uniqueid` (many clients share `0123456789ABCDEF`) and never subject/serial (all qt
/// and embedded clients share those).
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    sha256(&[cert_der])
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(b"-----BEGIN")
}

/// The DER of the first PEM `CERTIFICATE` block in `pem`.
pub fn cert_der_from_pem(pem: &[u8]) -> Result<Vec<u8>, CertError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| CertError::Pem)?;
    if block.label != "CERTIFICATE" {
        return Err(CertError::Pem);
    }
    Ok(block.contents)
}

fn to_der(pem_or_der: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, CertError> {
    if looks_like_pem(pem_or_der) {
        cert_der_from_pem(pem_or_der).map(std::borrow::Cow::Owned)
    } else {
        Ok(std::borrow::Cow::Borrowed(pem_or_der))
    }
}

fn parse_der(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, CertError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(CertError::Der),
    }
}

/// `SIG(cert)`: the raw bits of the certificate's `signatureValue` (what OpenSSL's
/// `X509_get0_signature` returns; 256 bytes for RSA-2048). Accepts PEM or DER.
pub fn cert_signature_bytes(pem_or_der: &[u8]) -> Result<Vec<u8>, CertError> {
    let der = to_der(pem_or_der)?;
    let cert = parse_der(&der)?;
    Ok(cert.signature_value.data.to_vec())
}

/// Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature with an RSA public key given as the DER
/// `RSAPublicKey` (what [`Certificate::public_key`] holds).
pub fn verify_signature(rsa_public_key_der: &[u8], message: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, rsa_public_key_der)
        .verify(message, sig)
        .is_ok()
}

/// A parsed, validated peer certificate with everything pairing needs from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    pem: Vec<u8>,
    der: Vec<u8>,
    signature: Vec<u8>,
    public_key: Vec<u8>,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &hex::encode(self.fingerprint))
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Parses a certificate from PEM (or DER) and checks it carries an RSA key of 2048..=8192
    /// bits, so a bad certificate is refused in step 1 rather than failing in step 4.
    pub fn parse(pem_or_der: &[u8]) -> Result<Self, CertError> {
        let der = to_der(pem_or_der)?.into_owned();
        let cert = parse_der(&der)?;
        let spki = cert.public_key();
        if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
            return Err(CertError::NotRsa);
        }
        let public_key = spki.subject_public_key.data.to_vec();
        match RsaParameters::public_modulus_len(&public_key) {
            Ok(bits) if (2048..=8192).contains(&bits) => {}
            _ => return Err(CertError::BadRsaKey),
        }
        let signature = cert.signature_value.data.to_vec();
        let pem = if looks_like_pem(pem_or_der) {
            pem_or_der.to_vec()
        } else {
            der_to_pem(&der)
        };
        Ok(Self {
            pem,
            fingerprint: fingerprint(&der),
            der,
            signature,
            public_key,
        })
    }

    /// The certificate as PEM text (as received, or generated from DER).
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// The certificate's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// `SIG(cert)`, see [`cert_signature_bytes`].
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The subject public key as DER `RSAPublicKey`.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// SHA-256 of the DER, see [`fingerprint`].
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Verifies a PKCS#1 v1.5 SHA-256 signature made with this certificate's key.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        verify_signature(&self.public_key, message, sig)
    }

    /// Replaces `SIG(cert)` so the reference's synthetic test vectors can drive real states.
    #[cfg(test)]
    pub(crate) fn set_signature_for_tests(&mut self, signature: Vec<u8>) {
        self.signature = signature;
    }
}

fn der_to_pem(der: &[u8]) -> Vec<u8> {
    let b64 = crate::base64::encode(der).into_bytes();
    let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in b64.chunks(64) {
        pem.extend_from_slice(line);
        pem.push(b'\n');
    }
    pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    pem
}

/// A local identity: RSA key pair plus its certificate. The host's is
/// [`ServerIdentity`](super::ServerIdentity); the test client's is
/// [`ClientIdentity`](super::ClientIdentity).
pub struct Identity {
    key: RsaKeyPair,
    cert: Certificate,
}

impl std::fmt::Debug for Identity {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads a PEM private key (`PRIVATE KEY` = PKCS#8, or `RSA PRIVATE KEY` = PKCS#1) and the
    /// PEM certificate that belongs to it. Refuses a key that does not match the certificate,
    /// since clients would then reject every pairing signature.
    pub fn from_pem(key_pem: &[u8], cert_pem: &[u8]) -> Result<Self, IdentityError> {
        let (_, block) =
            x509_parser::pem::parse_x509_pem(key_pem).map_err(|_| IdentityError::Key)?;
        let key = match block.label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&block.contents),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&block.contents),
            _ => return Err(IdentityError::Key),
        }
        .map_err(|_| IdentityError::Key)?;
        let cert = Certificate::parse(cert_pem).map_err(IdentityError::Cert)?;
        if key.public_key().as_ref() != cert.public_key() {
            return Err(IdentityError::KeyCertMismatch);
        }
        Ok(Self { key, cert })
    }

    /// The certificate.
    pub fn cert(&self) -> &Certificate {
        &self.cert
    }

    /// The certificate PEM text (`plaincert` in step 1; also what TLS must present).
    pub fn cert_pem(&self) -> &[u8] {
        self.cert.pem()
    }

    /// The certificate DER.
    pub fn cert_der(&self) -> &[u8] {
        self.cert.der()
    }

    /// `SIG(cert)` of the certificate.
    pub fn cert_signature(&self) -> &[u8] {
        self.cert.signature()
    }

    /// SHA-256 of the certificate DER.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.cert.fingerprint()
    }

    /// `SIGN_key(message)`: RSASSA-PKCS1-v1_5 with SHA-256. Deterministic; aws-lc-rs ignores
    /// the RNG argument it asks for, so no randomness is drawn.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PairingError> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key
            .sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
            .map_err(|_| PairingError::Crypto)?;
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference part 1, section 4.6.
    #[test]
    fn golden_key_and_challenge() {
        let salt: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            hex::encode(sha256(&[&salt, b"1234"])),
            "bad0b4f7cae08eb7c1b5acc763a8ed25242e2c9173e81f3f624b1fa5303cf6ce"
        );
        let k = aes_key(&salt, "1234");
        assert_eq!(hex::encode(k), "bad0b4f7cae08eb7c1b5acc763a8ed25");
        let cc: [u8; 16] = core::array::from_fn(|i| 0x10 + i as u8);
        let enc = aes_ecb_encrypt(&k, cc).unwrap();
        assert_eq!(hex::encode(enc), "5febcdc985b2baddd65925da162380eb");
        assert_eq!(aes_ecb_decrypt(&k, enc).unwrap(), cc);
    }

    #[test]
    fn der_to_pem_round_trips() {
        for len in [0usize, 1, 2, 3, 47, 48, 49, 1000] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let pem = der_to_pem(&der);
            if len > 0 {
                assert_eq!(cert_der_from_pem(&pem).unwrap(), der, "len {len}");
            }
        }
    }
}
