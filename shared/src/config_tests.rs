//! Unit tests of `config.rs`.

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
fn login_needs_both_secrets_and_a_long_session_secret() {
    let c = load(&base()).unwrap();
    assert!(!c.login.enabled());
    assert_eq!(c.login.api_base_url, DEFAULT_WECHAT_API_BASE_URL);
    assert_eq!(c.login.session_ttl, Duration::from_secs(86_400));

    let mut vars = base();
    vars.insert(
        "WECHAT_APP_SECRET",
        "app-s3cret-0123456789abcdef012345".into(),
    );
    vars.insert("SESSION_SECRET", "too-short-s3cret".into());
    let err = load(&vars).unwrap_err().to_string();
    assert!(
        err.contains("SESSION_SECRET must be at least 32 bytes"),
        "{err}"
    );
    assert!(!err.contains("too-short-s3cret"), "{err}");

    vars.insert("SESSION_SECRET", "x".repeat(32));
    vars.insert("SESSION_TTL_SECS", "3600".into());
    let c = load(&vars).unwrap();
    assert!(c.login.enabled());
    assert_eq!(c.login.session_ttl, Duration::from_secs(3600));
    assert!(!format!("{c:?}").contains("app-s3cret"));
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
fn header_trust_is_off_and_the_event_shape_auto_unless_set() {
    let c = load(&base()).unwrap();
    assert!(!c.trust_openid_header);
    assert_eq!(c.event_shape, EventShape::Auto);
    let mut vars = base();
    vars.insert("TRUST_OPENID_HEADER", "true".into());
    vars.insert("LAMBDA_EVENT_SHAPE", "http".into());
    let c = load(&vars).unwrap();
    assert!(c.trust_openid_header);
    assert_eq!(c.event_shape, EventShape::Http);
    vars.insert("TRUST_OPENID_HEADER", "yes please".into());
    vars.insert("LAMBDA_EVENT_SHAPE", "sniff".into());
    let err = load(&vars).unwrap_err().to_string();
    assert!(err.contains("TRUST_OPENID_HEADER"), "{err}");
    assert!(err.contains("LAMBDA_EVENT_SHAPE"), "{err}");
}

#[test]
fn public_key_needs_its_id() {
    let mut vars = base();
    vars.insert("WECHAT_PUBLIC_KEY_ID", "PUB_KEY_ID_0112".into());
    let err = load(&vars).unwrap_err().to_string();
    assert!(err.contains("WECHAT_PUBLIC_KEY"), "{err}");
}

fn database_ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn database_tls_settings_are_read_at_start_up() {
    let mut vars = base();
    vars.insert(
        "DATABASE_URL",
        "mysql://app:dbpassw0rd@db/pay?ssl-mode=verify_identity".into(),
    );
    vars.insert("DATABASE_CA_PEM", database_ca_pem().replace('\n', "\\n"));
    let c = load(&vars).unwrap();
    assert!(c.database_ca.is_some());
    assert!(!format!("{c:?}").contains("dbpassw0rd"));

    // A provider's bundle, from a file (Lambda's variables hold 4 KB in all).
    let dir = std::env::temp_dir().join(format!("wxpay-cfg-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bundle.pem");
    std::fs::write(&path, format!("{}{}", database_ca_pem(), database_ca_pem())).unwrap();
    vars.remove("DATABASE_CA_PEM");
    vars.insert("DATABASE_CA_PEM_FILE", path.display().to_string());
    assert!(load(&vars).unwrap().database_ca.is_some());
    vars.insert("DATABASE_CA_PEM", database_ca_pem());
    let err = load(&vars).unwrap_err().to_string();
    assert!(err.contains("not both"), "{err}");
    vars.remove("DATABASE_CA_PEM");
    vars.insert("DATABASE_CA_PEM_FILE", "/nonexistent/ca.pem".into());
    let err = load(&vars).unwrap_err().to_string();
    assert!(
        err.contains("DATABASE_CA_PEM_FILE: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_database_tls_settings_are_named_in_the_one_start_up_message() {
    let mut vars = base();
    vars.remove("WECHAT_APPID");
    vars.insert(
        "DATABASE_URL",
        "mysql://app:dbpassw0rd@db/pay?ssl-mode=sometimes".into(),
    );
    vars.insert(
        "DATABASE_CA_PEM",
        "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----".into(),
    );
    let err = load(&vars).unwrap_err().to_string();
    for name in [
        "WECHAT_APPID",
        "DATABASE_URL: ssl-mode must be one of",
        "DATABASE_CA_PEM:",
    ] {
        assert!(err.contains(name), "{name} not named in: {err}");
    }
    assert!(
        !err.contains("dbpassw0rd") && !err.contains("bm9wZQ"),
        "{err}"
    );

    // A CA nobody would use is as wrong as a missing one.
    let mut vars = base();
    vars.insert(
        "DATABASE_URL",
        "mysql://app:dbpassw0rd@db/pay?ssl-mode=REQUIRED".into(),
    );
    vars.insert("DATABASE_CA_PEM", database_ca_pem());
    let err = load(&vars).unwrap_err().to_string();
    assert!(
        err.contains("DATABASE_CA_PEM is set but ssl-mode=REQUIRED"),
        "{err}"
    );
    vars.insert("DATABASE_URL", "sqlite::memory:".into());
    let err = load(&vars).unwrap_err().to_string();
    assert!(err.contains("only a mysql:// store uses it"), "{err}");

    // The driver's own switches would bypass ssl-mode.
    let mut vars = base();
    vars.insert(
        "DATABASE_URL",
        "mysql://app:dbpassw0rd@db/pay?require_ssl=true".into(),
    );
    let err = load(&vars).unwrap_err().to_string();
    assert!(err.contains("`require_ssl` is not read here"), "{err}");
}

#[test]
fn functions_check_the_schema_unless_told_to_migrate_on_start() {
    assert!(!load(&base()).unwrap().migrate_on_start);
    let mut vars = base();
    vars.insert("MIGRATE_ON_START", "true".into());
    assert!(load(&vars).unwrap().migrate_on_start);
    vars.insert("MIGRATE_ON_START", "sometimes".into());
    let err = load(&vars).unwrap_err().to_string();
    assert!(err.contains("MIGRATE_ON_START"), "{err}");
}
