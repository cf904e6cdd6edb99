//! Configuration from the environment (contract §7), validated once at start-up.
//!
//! Every problem is collected so one message names every bad variable; values of secrets
//! never appear in it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use crate::certs::ConfiguredPlatformKey;
use crate::crypto::{ApiV3Key, MerchantKey, VerifyKey};
use crate::price_list::{parse_price_list, PriceList};
use crate::store::{DatabaseCa, StoreError};

pub const DEFAULT_BASE_URL: &str = "https://api.mch.weixin.qq.com";
pub const DEFAULT_PRICES: &str = "basic=0.01,premium=29.9";
pub const DEFAULT_WECHAT_API_BASE_URL: &str = "https://api.weixin.qq.com";
/// HMAC-SHA256 keys shorter than its block's worth of entropy are guessable offline.
pub const MIN_SESSION_SECRET_BYTES: usize = 32;

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

/// Which Lambda events a function accepts (`LAMBDA_EVENT_SHAPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventShape {
    /// API Gateway v1/v2 and ALB events (and schedules).
    Http,
    /// Raw `callFunction` events (and schedules).
    Raw,
    /// Decided per event: `userInfo` means raw, otherwise the HTTP fields decide.
    Auto,
}

impl EventShape {
    pub fn as_str(self) -> &'static str {
        match self {
            EventShape::Http => "http",
            EventShape::Raw => "raw",
            EventShape::Auto => "auto",
        }
    }
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
    /// `DATABASE_CA_PEM` (or `_FILE`): the CA a MySQL `ssl-mode=VERIFY_CA|VERIFY_IDENTITY`
    /// trusts instead of the public web roots.
    pub database_ca: Option<DatabaseCa>,
    pub price_cache_ttl: Duration,
    pub default_prices: PriceList,
    /// Per-attempt timeout for WeChat Pay calls.
    pub wechatpay_timeout: Duration,
    /// `FUNCTION_TIMEOUT_MS`: the deadline of a local HTTP or SCF web-function invocation
    /// (Lambda's own deadline comes with each event). Default 15 s, `template.yaml`'s.
    pub function_timeout: Duration,
    /// How often a warm instance looks for due backend deliveries after a notification.
    pub outbox_sweep_interval: Duration,
    /// `REFUND_RESOLVE_AFTER_SECS`: how long a refund may stay `processing` before the
    /// scheduled sweep asks WeChat Pay about it (its call died, or its outcome was lost).
    pub refund_resolve_after: Duration,
    pub login: LoginSettings,
    /// `TRUST_OPENID_HEADER`: believe `X-WX-OPENID` (only where a gateway sets it and
    /// strips clients' copies, as CloudBase does).
    pub trust_openid_header: bool,
    /// `LAMBDA_EVENT_SHAPE`.
    pub event_shape: EventShape,
    /// `MIGRATE_ON_START`: apply missing schema migrations on first use (local runs)
    /// instead of refusing a schema behind this release.
    pub migrate_on_start: bool,
    /// The platform sets the request-id headers of local HTTP (`SCF_FUNCTIONNAME` is set:
    /// an SCF web function, behind Tencent's gateway). Elsewhere anyone reaching the
    /// listener can send them, and they are only kept prefixed (contract §13).
    pub platform_request_ids: bool,
}

/// `wxpay_login` (`jscode2session`) and the session tokens it issues.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// `WECHAT_API_BASE_URL`: where `/sns/jscode2session` is.
    pub api_base_url: String,
    pub app_secret: Option<Secret>,
    /// Signs session tokens; at least [`MIN_SESSION_SECRET_BYTES`].
    pub session_secret: Option<Secret>,
    pub session_ttl: Duration,
}

impl LoginSettings {
    fn from_vars(get: impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> Self {
        let api_base_url = get("WECHAT_API_BASE_URL")
            .unwrap_or_else(|| DEFAULT_WECHAT_API_BASE_URL.to_string())
            .trim_end_matches('/')
            .to_string();
        check_url("WECHAT_API_BASE_URL", &api_base_url, problems);
        let session_secret = get("SESSION_SECRET");
        if let Some(s) = &session_secret {
            if s.len() < MIN_SESSION_SECRET_BYTES {
                problems.push(format!(
                    "SESSION_SECRET must be at least {MIN_SESSION_SECRET_BYTES} bytes (it has {})",
                    s.len()
                ));
            }
        }
        let session_ttl = match get("SESSION_TTL_SECS") {
            None => Duration::from_secs(86_400),
            Some(v) => match v.parse::<u64>() {
                Ok(secs) if (60..=30 * 86_400).contains(&secs) => Duration::from_secs(secs),
                _ => {
                    problems.push(format!(
                        "SESSION_TTL_SECS must be whole seconds from 60 to 2592000 (got `{v}`)"
                    ));
                    Duration::from_secs(86_400)
                }
            },
        };
        LoginSettings {
            api_base_url,
            app_secret: get("WECHAT_APP_SECRET").map(Secret::new),
            session_secret: session_secret.map(Secret::new),
            session_ttl,
        }
    }

    /// Login needs both secrets: one to ask WeChat, one to sign what we hand out.
    pub fn enabled(&self) -> bool {
        self.app_secret.is_some() && self.session_secret.is_some()
    }
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
        } else if !cfg!(feature = "sqlite") && !database_url.starts_with("mysql://") {
            problems.push(format!("DATABASE_URL: {}", crate::store::WITHOUT_SQLITE));
        }
        let database_ca =
            DatabaseCa::from_settings(get("DATABASE_CA_PEM"), get("DATABASE_CA_PEM_FILE"))
                .map_err(|e| problems.push(e))
                .ok()
                .flatten();
        if is_database_url(&database_url) {
            // ssl-mode, the CA and the rest of the URL, read as the store will read them.
            if let Err(StoreError::BadUrl(e) | StoreError::Query(e) | StoreError::Unavailable(e)) =
                crate::store::check_mysql_url(&database_url, database_ca.as_ref())
            {
                problems.push(format!("DATABASE_URL: {e}"));
            }
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

        let function_timeout = match get("FUNCTION_TIMEOUT_MS") {
            None => Duration::from_millis(15_000),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms >= 1000 => Duration::from_millis(ms),
                _ => {
                    problems.push(format!(
                        "FUNCTION_TIMEOUT_MS must be at least 1000 milliseconds (got `{v}`)"
                    ));
                    Duration::from_millis(15_000)
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

        let refund_resolve_after = match get("REFUND_RESOLVE_AFTER_SECS") {
            None => Duration::from_secs(600),
            Some(v) => match v.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => {
                    problems.push(format!(
                        "REFUND_RESOLVE_AFTER_SECS must be whole seconds (got `{v}`)"
                    ));
                    Duration::from_secs(600)
                }
            },
        };

        let login = LoginSettings::from_vars(get, &mut problems);
        let trust_openid_header = match get("TRUST_OPENID_HEADER").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(v) => {
                problems.push(format!(
                    "TRUST_OPENID_HEADER must be true or false (got `{v}`)"
                ));
                false
            }
        };
        let migrate_on_start = match get("MIGRATE_ON_START").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(v) => {
                problems.push(format!(
                    "MIGRATE_ON_START must be true or false (got `{v}`)"
                ));
                false
            }
        };
        let event_shape = match get("LAMBDA_EVENT_SHAPE").as_deref() {
            None | Some("auto") => EventShape::Auto,
            Some("http") => EventShape::Http,
            Some("raw") => EventShape::Raw,
            Some(v) => {
                problems.push(format!(
                    "LAMBDA_EVENT_SHAPE must be http, raw or auto (got `{v}`)"
                ));
                EventShape::Auto
            }
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
                database_ca,
                price_cache_ttl,
                default_prices,
                wechatpay_timeout,
                function_timeout,
                outbox_sweep_interval,
                refund_resolve_after,
                login,
                trust_openid_header,
                event_shape,
                migrate_on_start,
                platform_request_ids: get("SCF_FUNCTIONNAME").is_some(),
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
                not_before: cert.not_before,
                not_after: cert.not_after,
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
#[path = "config_tests.rs"]
mod tests;
