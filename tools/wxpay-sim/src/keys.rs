//! Key material: merchant keys for the product under test, and the key generator the
//! simulator's own platform identities use.

use std::sync::OnceLock;

use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::rand_core::{CryptoRng, RngCore};
use rsa::RsaPrivateKey;

use crate::crypto;

/// rsa wants a rand_core RNG; ring's SystemRandom is already the crate's randomness
/// source, so adapt it rather than pulling in another RNG crate.
struct OsRandom;

impl RngCore for OsRandom {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.copy_from_slice(&crypto::random_bytes(dest.len()));
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for OsRandom {}

fn generate_rsa() -> RsaPrivateKey {
    // Only a broken RNG makes this fail; no caller could recover.
    RsaPrivateKey::new(&mut OsRandom, 2048).expect("RSA-2048 key generation failed")
}

fn pkcs8_pem(key: &RsaPrivateKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 encoding of a fresh RSA key failed")
        .to_string()
}

fn spki_pem(key: &RsaPrivateKey) -> String {
    key.to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("SPKI encoding of a fresh RSA key failed")
}

/// A fresh RSA-2048 private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
pub fn generate_rsa_pkcs8_pem() -> String {
    pkcs8_pem(&generate_rsa())
}

/// A fresh RSA-2048 key pair: (PKCS#8 private PEM, SPKI public PEM).
pub fn generate_rsa_key_pair_pem() -> (String, String) {
    let key = generate_rsa();
    (pkcs8_pem(&key), spki_pem(&key))
}

/// The SPKI public key PEM of a PKCS#8 private key PEM.
pub fn public_key_pem_of(private_key_pem: &str) -> Result<String, String> {
    use rsa::pkcs8::DecodePrivateKey;
    let key = RsaPrivateKey::from_pkcs8_pem(private_key_pem.trim())
        .map_err(|e| format!("not an RSA PKCS#8 private key: {e}"))?;
    Ok(spki_pem(&key))
}

/// What a merchant holds: the API client key (`apiclient_key.pem`), its public half
/// (which WeChat Pay knows through the merchant certificate) and the certificate serial.
#[derive(Clone)]
pub struct MerchantKeys {
    /// PKCS#8 PEM.
    pub private_key_pem: String,
    /// SPKI PEM.
    pub public_key_pem: String,
    /// 40 upper-hex digits.
    pub serial_no: String,
}

impl std::fmt::Debug for MerchantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerchantKeys")
            .field("serial_no", &self.serial_no)
            .finish_non_exhaustive()
    }
}

impl MerchantKeys {
    pub fn generate() -> MerchantKeys {
        let (private_key_pem, public_key_pem) = generate_rsa_key_pair_pem();
        MerchantKeys {
            private_key_pem,
            public_key_pem,
            serial_no: crypto::random_serial().1,
        }
    }

    /// One key set per process, so a test binary pays for RSA generation once.
    pub fn shared_test() -> &'static MerchantKeys {
        static KEYS: OnceLock<MerchantKeys> = OnceLock::new();
        KEYS.get_or_init(MerchantKeys::generate)
    }
}

/// A process-wide key unrelated to any simulator, for forging signatures in tests.
pub(crate) fn foreign_signer() -> &'static crypto::Signer {
    static FOREIGN: OnceLock<crypto::Signer> = OnceLock::new();
    FOREIGN.get_or_init(|| {
        crypto::Signer::from_pkcs8_pem(&generate_rsa_pkcs8_pem())
            .expect("a freshly generated key must load")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify() {
        let keys = MerchantKeys::shared_test();
        assert!(keys
            .private_key_pem
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(keys
            .public_key_pem
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(keys.serial_no.len(), 40);
        let signer = crypto::Signer::from_pkcs8_pem(&keys.private_key_pem).unwrap();
        let verifier = crypto::Verifier::from_pem(&keys.public_key_pem).unwrap();
        let sig = signer.sign_base64(b"message");
        assert!(verifier.verify_base64(b"message", &sig));
        assert!(!verifier.verify_base64(b"messagf", &sig));
        assert_eq!(
            public_key_pem_of(&keys.private_key_pem).unwrap(),
            keys.public_key_pem
        );
    }
}
