//! The keys WeChat Pay signs with: platform certificates and the WeChat Pay public key.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::crypto::{self, Signer};
use crate::keys;

/// How the simulated WeChat Pay identifies itself to the merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformMode {
    /// Platform certificates only (merchants onboarded before the public-key scheme).
    Certificate,
    /// A WeChat Pay public key (`PUB_KEY_ID_...`) only; `/v3/certificates` answers 404.
    PublicKey,
    /// Both active, as during a merchant's migration: responses and notifications
    /// alternate between the certificate and the public key.
    Mixed,
}

/// A platform certificate served by `/v3/certificates`.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// One key WeChat Pay signs with, named by `Wechatpay-Serial`.
#[derive(Debug)]
pub struct Identity {
    /// A 40-hex certificate serial or a `PUB_KEY_ID_...` id.
    pub serial: String,
    pub signer: Signer,
    pub public_key_pem: String,
    /// Present for platform certificates.
    pub cert: Option<CertInfo>,
}

impl Identity {
    pub fn new_public_key() -> Identity {
        let (private_pem, public_key_pem) = keys::generate_rsa_key_pair_pem();
        Identity {
            serial: format!("PUB_KEY_ID_{}", crypto::random_digits(32)),
            signer: Signer::from_pkcs8_pem(&private_pem).expect("a stored test key loads"),
            public_key_pem,
            cert: None,
        }
    }

    pub fn new_certificate() -> Result<Identity, String> {
        let (private_pem, public_key_pem) = keys::generate_rsa_key_pair_pem();
        let key_pair =
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&private_pem, &rcgen::PKCS_RSA_SHA256)
                .map_err(|e| format!("rcgen rejected the RSA key: {e}"))?;
        let (serial_bytes, serial) = crypto::random_serial();
        let now = crypto::now_cst();
        let not_before = now - Duration::days(1);
        let not_after = now + Duration::days(5 * 365);

        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "CN");
        dn.push(rcgen::DnType::LocalityName, "Shenzhen");
        dn.push(rcgen::DnType::OrganizationName, "Tenpay.com");
        dn.push(
            rcgen::DnType::OrganizationalUnitName,
            "Tenpay.com CA Center",
        );
        dn.push(rcgen::DnType::CommonName, "Tenpay.com Root CA");
        params.distinguished_name = dn;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial_bytes));
        params.not_before = not_before.to_offset(time::UtcOffset::UTC);
        params.not_after = not_after.to_offset(time::UtcOffset::UTC);
        let cert = params
            .self_signed(&key_pair)
            .map_err(|e| format!("rcgen could not build the certificate: {e}"))?;

        Ok(Identity {
            serial,
            signer: Signer::from_pkcs8_pem(&private_pem)?,
            public_key_pem,
            cert: Some(CertInfo {
                pem: cert.pem(),
                not_before,
                not_after,
            }),
        })
    }
}

/// The identities in force and which one signs next.
#[derive(Debug)]
pub struct Platform {
    /// Oldest first; the newest signs.
    pub certs: Vec<Arc<Identity>>,
    pub public_key: Option<Arc<Identity>>,
    turn: u64,
}

impl Platform {
    /// Makes the identities `mode` needs, from the stored test keys.
    pub fn generate(mode: PlatformMode) -> Result<Platform, String> {
        let certs = match mode {
            PlatformMode::Certificate | PlatformMode::Mixed => {
                vec![Arc::new(Identity::new_certificate()?)]
            }
            PlatformMode::PublicKey => Vec::new(),
        };
        let public_key = match mode {
            PlatformMode::PublicKey | PlatformMode::Mixed => {
                Some(Arc::new(Identity::new_public_key()))
            }
            PlatformMode::Certificate => None,
        };
        Ok(Platform {
            certs,
            public_key,
            turn: 0,
        })
    }

    /// The identity that signs the next response or notification.
    pub fn next_signer(&mut self) -> Arc<Identity> {
        self.turn = self.turn.wrapping_add(1);
        let cert = self.certs.last().cloned();
        let pk = self.public_key.clone();
        match (cert, pk) {
            (Some(c), Some(p)) => {
                if self.turn % 2 == 1 {
                    c
                } else {
                    p
                }
            }
            (Some(c), None) => c,
            (None, Some(p)) => p,
            // generate() always creates at least one identity.
            (None, None) => unreachable!("a platform without any signing identity"),
        }
    }

    pub fn find(&self, serial: &str) -> Option<Arc<Identity>> {
        self.certs
            .iter()
            .chain(self.public_key.iter())
            .find(|i| i.serial == serial)
            .cloned()
    }
}
