//! Configuration from the environment (SPEC §6), validated once at start-up.
//!
//! Every problem is collected so one message names every bad variable; values of secrets
//! never appear in it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::{ApiV3Key, MerchantKey, VerifyKey};
use crate::prices::{parse_price_list, PriceList};

pub const DEFAULT_BASE_URL: &str = "https://api.mch.weixin.qq.com";
pub const DEFAULT_PRICES: &str = "basic=0.01,premium=29.9";

/// Start-up failed: one line per bad variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// A secret string: compared and used, never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The WeChat Pay public key of SPEC §9, or a pinned platform certificate.
#[derive(Debug, Clone)]
pub enum ConfiguredPlatformKey {
    /// `PUB_KEY_ID_...` and the key it names.
    PublicKey { id: String, key: VerifyKey },
    /// A platform certificate given in `WECHAT_PUBLIC_KEY`; its serial identifies it.
    Certificate { serial: String, key: VerifyKey },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub appid: String,
    pub mchid: String,
    pub serial_no: String,
    pub private_key: Arc<MerchantKey>,
    pub apiv3_key: ApiV3Key,
    pub platform_key: Option<ConfiguredPlatformKey>,
    pub notify_url: String,
    pub refund_notify_url: String,
    pub base_url: String,
    pub api_base_url: Option<String>,
    /// `API_BASE_URL_<BUSINESSTYPE>`, keyed by the upper-cased business type.
    pub api_base_urls: BTreeMap<String, String>,
    pub internal_secret: Option<Secret>,
    pub database_url: Secret,
    pub price_cache_ttl: Duration,
    pub default_prices: PriceList,
    /// Per-attempt timeout for WeChat Pay calls.
    pub wechatpay_timeout: Duration,
    /// How often a warm instance looks for due backend deliveries after a notification.
    pub outbox_sweep_interval: Duration,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Builds the configuration from any set of variables (tests pass their own).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k, v.trim().to_string()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let get = |name: &str| vars.get(name).cloned();
        let mut problems = Vec::new();
        let required = |name: &str, problems: &mut Vec<String>| {
            let v = get(name);
            if v.is_none() {
                problems.push(format!("{name} is not set"));
            }
            v
        };

        let appid = required("WECHAT_APPID", &mut problems).unwrap_or_default();
        let mchid = required("WECHAT_MCHID", &mut problems).unwrap_or_default();
        if !mchid.is_empty() && !mchid.bytes().all(|b| b.is_ascii_digit()) {
            problems.push("WECHAT_MCHID must be the numeric merchant id".into());
        }
        let serial_no = required("WECHAT_SERIAL_NO", &mut problems)
            .unwrap_or_default()
            .to_ascii_uppercase();
        if !serial_no.is_empty() && !is_certificate_serial(&serial_no) {
            problems.push(
                "WECHAT_SERIAL_NO must be the 40-hex-digit merchant certificate serial".into(),
            );
        }

        let private_key = match (get("WECHAT_PRIVATE_KEY"), get("WECHAT_PRIVATE_KEY_FILE")) {
            (Some(text), _) => MerchantKey::from_text(&text)
                .map_err(|e| problems.push(format!("WECHAT_PRIVATE_KEY: {e}")))
                .ok(),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => MerchantKey::from_text(&text)
                    .map_err(|e| problems.push(format!("WECHAT_PRIVATE_KEY_FILE ({path}): {e}")))
                    .ok(),
                Err(e) => {
                    problems.push(format!("WECHAT_PRIVATE_KEY_FILE: cannot read {path}: {e}"));
                    None
                }
            },
            (None, None) => {
                problems.push("WECHAT_PRIVATE_KEY or WECHAT_PRIVATE_KEY_FILE is not set".into());
                None
            }
        };

        let apiv3_key = required("WECHAT_APIV3_KEY", &mut problems).and_then(|k| {
            let key = ApiV3Key::new(&k);
            if key.is_none() {
                problems.push(format!(
                    "WECHAT_APIV3_KEY must be exactly 32 bytes (it has {})",
                    k.len()
                ));
            }
            key
        });

        let platform_key = match (get("WECHAT_PUBLIC_KEY"), get("WECHAT_PUBLIC_KEY_ID")) {
            (None, None) => None,
            (Some(text), id) => parse_platform_key(&text, id, &mut problems),
            (None, Some(_)) => {
                problems.push("WECHAT_PUBLIC_KEY_ID is set but WECHAT_PUBLIC_KEY is not".into());
                None
            }
        };

        let notify_url = required("WECHAT_NOTIFY_URL", &mut problems).unwrap_or_default();
        check_url("WECHAT_NOTIFY_URL", &notify_url, &mut problems);
        let refund_notify_url =
            get("WECHAT_REFUND_NOTIFY_URL").unwrap_or_else(|| notify_url.clone());
        check_url(
            "WECHAT_REFUND_NOTIFY_URL",
            &refund_notify_url,
            &mut problems,
        );

        let base_url = get("WECHATPAY_BASE_URL")
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
            .trim_end_matches('/')
            .to_string();
        check_url("WECHATPAY_BASE_URL", &base_url, &mut problems);

        let api_base_url = get("API_BASE_URL").map(|u| u.trim_end_matches('/').to_string());
        if let Some(u) = &api_base_url {
            check_url("API_BASE_URL", u, &mut problems);
        }
        let mut api_base_urls = BTreeMap::new();
        for (name, value) in &vars {
            if let Some(business) = name.strip_prefix("API_BASE_URL_") {
                check_url(name, value, &mut problems);
                api_base_urls.insert(
                    business.to_ascii_uppercase(),
                    value.trim_end_matches('/').to_string(),
                );
            }
        }

        let internal_secret = get("INTERNAL_API_SECRET").map(Secret::new);
        let database_url = required("DATABASE_URL", &mut problems).unwrap_or_default();
        if !database_url.is_empty() && !is_database_url(&database_url) {
            problems.push("DATABASE_URL must start with mysql:// or sqlite://".into());
        }

        let price_cache_ttl = match get("PRICE_CACHE_TTL_SECS") {
            None => Duration::from_secs(300),
            Some(v) => match v.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => {
                    problems.push(format!(
                        "PRICE_CACHE_TTL_SECS must be whole seconds (got `{v}`)"
                    ));
                    Duration::from_secs(300)
                }
            },
        };
        let default_prices_text =
            get("DEFAULT_PRICES").unwrap_or_else(|| DEFAULT_PRICES.to_string());
        let default_prices = match parse_price_list(&default_prices_text) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("DEFAULT_PRICES: {e}"));
                PriceList::default()
            }
        };
        let wechatpay_timeout = match get("WECHATPAY_TIMEOUT_MS") {
            None => Duration::from_millis(4000),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    problems.push(format!("WECHATPAY_TIMEOUT_MS must be a positive number of milliseconds (got `{v}`)"));
                    Duration::from_millis(4000)
                }
            },
        };

        let outbox_sweep_interval = match get("OUTBOX_SWEEP_INTERVAL_SECS") {
            None => Duration::from_secs(30),
            Some(v) => match v.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => {
                    problems.push(format!(
                        "OUTBOX_SWEEP_INTERVAL_SECS must be whole seconds (got `{v}`)"
                    ));
                    Duration::from_secs(30)
                }
            },
        };

        match (private_key, apiv3_key) {
            (Some(private_key), Some(apiv3_key)) if problems.is_empty() => Ok(Config {
                appid,
                mchid,
                serial_no,
                private_key: Arc::new(private_key),
                apiv3_key,
                platform_key,
                notify_url,
                refund_notify_url,
                base_url,
                api_base_url,
                api_base_urls,
                internal_secret,
                database_url: Secret::new(database_url),
                price_cache_ttl,
                default_prices,
                wechatpay_timeout,
                outbox_sweep_interval,
            }),
            _ => Err(ConfigError { problems }),
        }
    }

    /// Where backend deliveries for `business_type` go: `API_BASE_URL_<TYPE>` or
    /// `API_BASE_URL`.
    pub fn backend_url_for(&self, business_type: Option<&str>) -> Option<&str> {
        business_type
            .and_then(|b| self.api_base_urls.get(&b.to_ascii_uppercase()))
            .or(self.api_base_url.as_ref())
            .map(String::as_str)
    }

    /// The `Wechatpay-Serial` requests carry in public-key mode.
    pub fn public_key_id(&self) -> Option<&str> {
        match &self.platform_key {
            Some(ConfiguredPlatformKey::PublicKey { id, .. }) => Some(id),
            _ => None,
        }
    }
}

fn is_certificate_serial(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_database_url(s: &str) -> bool {
    s.starts_with("mysql://") || s.starts_with("sqlite://") || s == "sqlite::memory:"
}

fn check_url(name: &str, url: &str, problems: &mut Vec<String>) {
    if url.is_empty() {
        return;
    }
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
        _ => problems.push(format!("{name} must be an http(s) URL (got `{url}`)")),
    }
}

fn parse_platform_key(
    text: &str,
    id: Option<String>,
    problems: &mut Vec<String>,
) -> Option<ConfiguredPlatformKey> {
    if text.contains("CERTIFICATE")
        || !text.contains("-----BEGIN") && crate::certs::looks_like_base64_certificate(text)
    {
        return match crate::certs::parse_certificate_pem(text) {
            Ok(cert) => Some(ConfiguredPlatformKey::Certificate {
                serial: cert.serial,
                key: cert.key,
            }),
            Err(e) => {
                problems.push(format!("WECHAT_PUBLIC_KEY: {e}"));
                None
            }
        };
    }
    let key = match VerifyKey::from_public_key_pem(text) {
        Ok(k) => k,
        Err(e) => {
            problems.push(format!("WECHAT_PUBLIC_KEY: {e}"));
            return None;
        }
    };
    match id {
        Some(id) if id.starts_with("PUB_KEY_ID_") => {
            Some(ConfiguredPlatformKey::PublicKey { id, key })
        }
        Some(_) => {
            problems.push("WECHAT_PUBLIC_KEY_ID must start with PUB_KEY_ID_".into());
            None
        }
        None => {
            problems.push("WECHAT_PUBLIC_KEY_ID is required with a WeChat Pay public key".into());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vector_key() -> String {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/wechatpay-published.json")).unwrap();
        v["pay_sign"]["private_key_pkcs8_pem"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("WECHAT_APPID", "wx2421b1c4370ec43b".to_string()),
            ("WECHAT_MCHID", "1900000001".to_string()),
            (
                "WECHAT_SERIAL_NO",
                "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".to_string(),
            ),
            ("WECHAT_PRIVATE_KEY", vector_key().replace('\n', "\\n")),
            (
                "WECHAT_APIV3_KEY",
                "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb".to_string(),
            ),
            ("WECHAT_NOTIFY_URL", "https://example.com/pay".to_string()),
            ("DATABASE_URL", "mysql://app:dbpassw0rd@db/pay".to_string()),
            ("INTERNAL_API_SECRET", "internal-s3cret".to_string()),
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.clone())))
    }

    #[test]
    fn complete_configuration_loads_with_defaults() {
        let c = load(&base()).unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.refund_notify_url, "https://example.com/pay");
        assert_eq!(c.price_cache_ttl, Duration::from_secs(300));
        assert_eq!(c.default_prices.get("premium"), Some(2990));
        assert_eq!(c.default_prices.get("basic"), Some(1));
        let debug = format!("{c:?}");
        for secret in [
            "dbpassw0rd",
            "internal-s3cret",
            "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb",
        ] {
            assert!(!debug.contains(secret), "Debug output leaks {secret}");
        }
    }

    #[test]
    fn every_bad_variable_is_named_and_no_secret_is_printed() {
        let mut vars = base();
        vars.remove("WECHAT_APPID");
        vars.insert("WECHAT_SERIAL_NO", "xyz".into());
        vars.insert("WECHAT_APIV3_KEY", "too-short-s3cret".into());
        vars.insert("WECHAT_PRIVATE_KEY", "garbage-private-material".into());
        vars.insert("DEFAULT_PRICES", "basic=abc".into());
        vars.insert("DATABASE_URL", "postgres://u:dbpassw0rd@h/d".into());
        let err = load(&vars).unwrap_err().to_string();
        for name in [
            "WECHAT_APPID",
            "WECHAT_SERIAL_NO",
            "WECHAT_APIV3_KEY",
            "WECHAT_PRIVATE_KEY",
            "DEFAULT_PRICES",
            "DATABASE_URL",
        ] {
            assert!(err.contains(name), "{name} not named in: {err}");
        }
        for secret in ["too-short-s3cret", "garbage-private-material", "dbpassw0rd"] {
            assert!(!err.contains(secret), "error leaks a secret: {err}");
        }
    }

    #[test]
    fn nothing_set_names_all_required_variables() {
        let err = Config::from_vars(Vec::new()).unwrap_err().to_string();
        for name in [
            "WECHAT_APPID",
            "WECHAT_MCHID",
            "WECHAT_SERIAL_NO",
            "WECHAT_PRIVATE_KEY",
            "WECHAT_APIV3_KEY",
            "WECHAT_NOTIFY_URL",
            "DATABASE_URL",
        ] {
            assert!(err.contains(name), "{name} not named in: {err}");
        }
    }

    #[test]
    fn private_key_file_is_read() {
        let dir = std::env::temp_dir().join(format!("wxpay-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        std::fs::write(&path, vector_key()).unwrap();
        let mut vars = base();
        vars.remove("WECHAT_PRIVATE_KEY");
        vars.insert("WECHAT_PRIVATE_KEY_FILE", path.display().to_string());
        assert!(load(&vars).is_ok());
        vars.insert("WECHAT_PRIVATE_KEY_FILE", "/nonexistent/key.pem".into());
        assert!(load(&vars)
            .unwrap_err()
            .to_string()
            .contains("WECHAT_PRIVATE_KEY_FILE"));
    }

    #[test]
    fn backend_url_per_business_type() {
        let mut vars = base();
        vars.insert("API_BASE_URL", "https://api.example.com/".into());
        vars.insert("API_BASE_URL_VIDEO", "https://video.example.com".into());
        let c = load(&vars).unwrap();
        assert_eq!(
            c.backend_url_for(Some("video")),
            Some("https://video.example.com")
        );
        assert_eq!(
            c.backend_url_for(Some("other")),
            Some("https://api.example.com")
        );
        assert_eq!(c.backend_url_for(None), Some("https://api.example.com"));
    }

    #[test]
    fn public_key_needs_its_id() {
        let mut vars = base();
        vars.insert("WECHAT_PUBLIC_KEY_ID", "PUB_KEY_ID_0112".into());
        let err = load(&vars).unwrap_err().to_string();
        assert!(err.contains("WECHAT_PUBLIC_KEY"), "{err}");
    }
}
