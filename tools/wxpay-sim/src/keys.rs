//! Key material: merchant keys for the product under test, and the keys the simulator's
//! own platform identities sign with.
//!
//! Every key comes from `test-keys/rsa2048-test-keys.pem`: RSA-2048 keys made once with
//! openssl and published in this repository (they move no money). Generating RSA keys at
//! run time needed the `rsa` crate, which carries an open advisory (RUSTSEC-2023-0071), and
//! `ring` cannot generate RSA keys. Keys are handed out in turn, so any two handed out
//! within [`ROTATING`] of each other in one process are distinct: a test of "the wrong
//! key" gets a wrong key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::crypto;

const STORED: &str = include_str!("../test-keys/rsa2048-test-keys.pem");

/// Reserved: the tests' merchant key and the forger's key. The rest rotate.
const MERCHANT: usize = 0;
const FOREIGN: usize = 1;
const FIRST_ROTATING: usize = 2;

/// How many keys are handed out before one comes round again.
pub const ROTATING: usize = 22;

/// One stored key: (PKCS#8 private PEM, SPKI public PEM).
fn stored(index: usize) -> &'static (String, String) {
    static KEYS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        // The file is part of the binary: a broken one is a build mistake, not an input.
        let blocks = pem::parse_many(STORED).expect("test-keys/rsa2048-test-keys.pem is PEM");
        assert_eq!(
            blocks.len(),
            FIRST_ROTATING + ROTATING,
            "test-keys/rsa2048-test-keys.pem: run generate.sh {}",
            FIRST_ROTATING + ROTATING
        );
        blocks
            .iter()
            .map(|b| {
                let private = pem::encode_config(
                    b,
                    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
                );
                let public =
                    public_key_pem_of(&private).expect("a stored test key is an RSA PKCS#8 key");
                (private, public)
            })
            .collect()
    });
    &keys[index]
}

fn next_rotating() -> &'static (String, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % ROTATING;
    stored(FIRST_ROTATING + n)
}

/// An RSA-2048 private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the next of the
/// stored test keys: distinct from the previous [`ROTATING`]` - 1` handed out.
pub fn generate_rsa_pkcs8_pem() -> String {
    next_rotating().0.clone()
}

/// An RSA-2048 key pair, the next of the stored test keys: (PKCS#8 private PEM, SPKI
/// public PEM).
pub fn generate_rsa_key_pair_pem() -> (String, String) {
    next_rotating().clone()
}

/// The SPKI public key PEM of a PKCS#8 private key PEM.
pub fn public_key_pem_of(private_key_pem: &str) -> Result<String, String> {
    let key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(
        private_key_pem.trim(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(|e| format!("not an RSA PKCS#8 private key: {e}"))?;
    Ok(key.public_key_pem())
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
    /// The next stored test key, with a fresh serial.
    pub fn generate() -> MerchantKeys {
        let (private_key_pem, public_key_pem) = generate_rsa_key_pair_pem();
        MerchantKeys {
            private_key_pem,
            public_key_pem,
            serial_no: crypto::random_serial().1,
        }
    }

    /// The tests' merchant key set: the same key in every process, never handed out by
    /// [`MerchantKeys::generate`] or to a platform identity.
    pub fn shared_test() -> &'static MerchantKeys {
        static KEYS: OnceLock<MerchantKeys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let (private_key_pem, public_key_pem) = stored(MERCHANT).clone();
            MerchantKeys {
                private_key_pem,
                public_key_pem,
                serial_no: crypto::random_serial().1,
            }
        })
    }
}

/// A process-wide key unrelated to any simulator, for forging signatures in tests.
pub(crate) fn foreign_signer() -> &'static crypto::Signer {
    static SIGNER: OnceLock<crypto::Signer> = OnceLock::new();
    SIGNER.get_or_init(|| {
        crypto::Signer::from_pkcs8_pem(&stored(FOREIGN).0).expect("a stored test key loads")
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

    #[test]
    fn keys_handed_out_in_turn_are_distinct_and_never_the_reserved_ones() {
        let merchant = &MerchantKeys::shared_test().private_key_pem;
        let foreign = &stored(FOREIGN).0;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..ROTATING {
            let (private, public) = generate_rsa_key_pair_pem();
            assert_ne!(&private, merchant);
            assert_ne!(&private, foreign);
            assert_eq!(public_key_pem_of(&private).unwrap(), public);
            seen.insert(private);
        }
        // Other tests in this binary take keys too, but never two equal ones in a row.
        assert!(seen.len() > ROTATING / 2, "{} distinct", seen.len());
        let (a, b) = (generate_rsa_pkcs8_pem(), generate_rsa_pkcs8_pem());
        assert_ne!(a, b);
    }

    #[test]
    fn every_stored_key_is_rsa_2048() {
        for i in 0..FIRST_ROTATING + ROTATING {
            let signer = crypto::Signer::from_pkcs8_pem(&stored(i).0).unwrap();
            assert_eq!(signer.modulus_len(), 256, "key {i}");
        }
    }
}
