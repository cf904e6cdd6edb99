//! Who the simulated WeChat Pay serves and how it behaves.

use std::time::Duration;

use crate::crypto;
use crate::keys::MerchantKeys;
use crate::platform::PlatformMode;

/// Who the simulated WeChat Pay serves and how it behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub appid: String,
    pub mchid: String,
    /// 32 bytes; encrypts notification resources and `/v3/certificates`.
    pub apiv3_key: String,
    /// The merchant API certificate serial requests must name.
    pub merchant_serial_no: String,
    /// SPKI (or PKCS#1) PEM that verifies merchant request signatures.
    pub merchant_public_key_pem: String,
    pub mode: PlatformMode,
    /// Complete refunds automatically (SUCCESS + notification) after this delay.
    pub auto_refund_after: Option<Duration>,
    /// The mini-program's AppSecret, which `GET /sns/jscode2session` checks.
    pub app_secret: String,
    /// WeChat Pay answers `429 FREQUENCY_LIMITED` to a refund request for an order that had
    /// one less than this long ago ("同一笔订单多次退款的请求需相隔1分钟"). Tests shorten it.
    pub refund_frequency_window: Duration,
}

/// The merchant's app (mini-program) in a default configuration.
pub const DEFAULT_APPID: &str = "wx8888888888888888";

impl SimConfig {
    /// appid [`DEFAULT_APPID`], mchid `1900000001`, a random APIv3 key, certificates.
    pub fn for_merchant(keys: &MerchantKeys) -> SimConfig {
        SimConfig {
            appid: DEFAULT_APPID.to_string(),
            mchid: "1900000001".to_string(),
            apiv3_key: crypto::random_alnum(32),
            merchant_serial_no: keys.serial_no.clone(),
            merchant_public_key_pem: keys.public_key_pem.clone(),
            mode: PlatformMode::Certificate,
            auto_refund_after: None,
            app_secret: crypto::random_from(b"0123456789abcdef", 32),
            refund_frequency_window: Duration::from_secs(60),
        }
    }
}
