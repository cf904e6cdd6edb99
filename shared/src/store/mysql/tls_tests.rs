//! Unit tests of `tls.rs`: what `DATABASE_URL` and `DATABASE_CA_PEM` become. Connections
//! over TLS are tested against a real MariaDB in `tests/mysql_tls/`.

use super::*;
use crate::store::{MySqlStore, StoreError};

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("self-signed").pem()
}

fn decide(url: &str, ca: Option<&DatabaseCa>) -> Result<Tls, String> {
    let (mode, driver_url) = take_ssl_mode(url)?;
    let opts = Opts::from_url(&driver_url).expect("the driver reads what is left");
    Tls::decide(mode, &opts, ca)
}

fn mode_of(url: &str, ca: Option<&DatabaseCa>) -> SslMode {
    decide(url, ca).expect("accepted").mode
}

#[test]
fn ssl_mode_takes_every_mysql_value_in_any_case_and_leaves_the_driver_the_rest() {
    for (written, mode) in [
        ("disabled", SslMode::Disabled),
        ("Preferred", SslMode::Preferred),
        ("REQUIRED", SslMode::Required),
        ("verify_ca", SslMode::VerifyCa),
        ("Verify_Identity", SslMode::VerifyIdentity),
    ] {
        let url =
            format!("mysql://u:p@db.example:3306/pay?pool_max=3&SSL-MODE={written}&conn_ttl=5");
        let (got, driver_url) = take_ssl_mode(&url).unwrap();
        assert_eq!(got, Some(mode), "{written}");
        assert_eq!(
            driver_url,
            "mysql://u:p@db.example:3306/pay?pool_max=3&conn_ttl=5"
        );
    }
    let (_, alone) = take_ssl_mode("mysql://u:p%40ss@db/pay?ssl-mode=REQUIRED").unwrap();
    assert_eq!(
        alone, "mysql://u:p%40ss@db/pay",
        "the password keeps its encoding"
    );
    let (none, untouched) = take_ssl_mode("mysql://u:p%40ss@db/pay?pool_max=3").unwrap();
    assert_eq!(
        (none, untouched.as_str()),
        (None, "mysql://u:p%40ss@db/pay?pool_max=3")
    );
}

#[test]
fn a_wrong_or_repeated_ssl_mode_is_refused_naming_the_choices() {
    let err = take_ssl_mode("mysql://u:p@db/pay?ssl-mode=ON").unwrap_err();
    assert!(
        err.contains("DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY"),
        "{err}"
    );
    let err = take_ssl_mode("mysql://u:p@db/pay?ssl-mode=REQUIRED&ssl-mode=DISABLED").unwrap_err();
    assert!(err.contains("twice"), "{err}");
    // Percent-encoding does not smuggle a second one past the check.
    let err =
        take_ssl_mode("mysql://u:p@db/pay?ssl-mode=REQUIRED&ssl%2Dmode=DISABLED").unwrap_err();
    assert!(err.contains("twice"), "{err}");
}

#[test]
fn the_drivers_own_tls_switches_are_refused_pointing_to_ssl_mode() {
    for param in [
        "require_ssl=true",
        "verify_ca=false",
        "verify_identity=false",
        "built_in_roots=false",
    ] {
        let url = format!("mysql://u:p@db/pay?{param}");
        let err = take_ssl_mode(&url).unwrap_err();
        assert!(err.contains("ssl-mode"), "{param}: {err}");
        assert!(err.contains(param.split('=').next().unwrap()), "{err}");
    }
}

#[test]
fn without_ssl_mode_loopback_prefers_tls_a_remote_host_requires_it_and_a_ca_verifies() {
    assert_eq!(
        mode_of("mysql://root@127.0.0.1:3306/test", None),
        SslMode::Preferred
    );
    assert_eq!(
        mode_of("mysql://root@localhost/test", None),
        SslMode::Preferred
    );
    assert_eq!(
        mode_of("mysql://root@[::1]:3306/test", None),
        SslMode::Preferred
    );
    assert_eq!(
        mode_of("mysql://app@db.internal/pay", None),
        SslMode::Required
    );
    assert_eq!(mode_of("mysql://app@10.0.0.5/pay", None), SslMode::Required);
    let ca = DatabaseCa::from_pem_text(&ca_pem()).unwrap();
    assert_eq!(
        mode_of("mysql://app@db.internal/pay", Some(&ca)),
        SslMode::VerifyIdentity
    );
    assert_eq!(
        mode_of("mysql://root@127.0.0.1/test", Some(&ca)),
        SslMode::VerifyIdentity
    );
    assert_eq!(
        mode_of(
            "mysql://root@localhost/test?socket=/run/mysqld/mysqld.sock",
            None
        ),
        SslMode::Disabled
    );
}

#[test]
fn each_mode_becomes_the_driver_options_it_means() {
    let ca = DatabaseCa::from_pem_text(&ca_pem()).unwrap();
    let ssl = |url: &str, ca: Option<&DatabaseCa>| decide(url, ca).unwrap().ssl;
    assert!(ssl("mysql://a@db/p?ssl-mode=DISABLED", None).is_none());
    let required = ssl("mysql://a@db/p?ssl-mode=REQUIRED", None).unwrap();
    assert!(required.accept_invalid_certs());
    let preferred = ssl("mysql://a@db/p?ssl-mode=PREFERRED", None).unwrap();
    assert!(preferred.accept_invalid_certs());

    let web = ssl("mysql://a@db/p?ssl-mode=VERIFY_IDENTITY", None).unwrap();
    assert!(!web.accept_invalid_certs() && !web.skip_domain_validation());
    assert!(!web.disable_built_in_roots() && web.root_certs().is_empty());

    let private = ssl("mysql://a@db/p?ssl-mode=VERIFY_IDENTITY", Some(&ca)).unwrap();
    assert!(!private.accept_invalid_certs() && !private.skip_domain_validation());
    assert!(
        private.disable_built_in_roots(),
        "a private CA replaces the web roots"
    );
    assert_eq!(private.root_certs().len(), 1);

    let chain_only = ssl("mysql://a@db/p?ssl-mode=VERIFY_CA", Some(&ca)).unwrap();
    assert!(!chain_only.accept_invalid_certs() && chain_only.skip_domain_validation());
    assert!(chain_only.disable_built_in_roots());
}

#[test]
fn settings_that_would_leave_tls_or_verification_off_unnoticed_are_refused() {
    let ca = DatabaseCa::from_pem_text(&ca_pem()).unwrap();
    for mode in ["DISABLED", "PREFERRED", "REQUIRED"] {
        let err = decide(&format!("mysql://a@db/p?ssl-mode={mode}"), Some(&ca)).unwrap_err();
        assert!(
            err.contains("DATABASE_CA_PEM") && err.contains(mode),
            "{err}"
        );
    }
    let err = decide("mysql://a@db/p?ssl-mode=VERIFY_CA", None).unwrap_err();
    assert!(err.contains("DATABASE_CA_PEM"), "{err}");
    let err = decide(
        "mysql://a@localhost/p?socket=/tmp/s.sock&ssl-mode=REQUIRED",
        None,
    )
    .unwrap_err();
    assert!(err.contains("socket"), "{err}");
    // The password as it is, to a peer whose certificate nobody checked, is the password
    // to whoever can answer in the server's place.
    for mode in [
        "",
        "&ssl-mode=DISABLED",
        "&ssl-mode=PREFERRED",
        "&ssl-mode=REQUIRED",
    ] {
        let url = format!("mysql://a@127.0.0.1/p?enable_cleartext_plugin=true{mode}");
        let err = decide(&url, None).unwrap_err();
        assert!(err.contains("enable_cleartext_plugin"), "{err}");
    }
    assert!(decide(
        "mysql://a@db/p?enable_cleartext_plugin=true&ssl-mode=VERIFY_IDENTITY",
        None
    )
    .is_ok());
    // A socket with PREFERRED is simply not encrypted, as with MySQL's clients.
    assert!(decide(
        "mysql://a@localhost/p?socket=/tmp/s.sock&ssl-mode=PREFERRED",
        None
    )
    .unwrap()
    .ssl
    .is_none());
}

#[test]
fn the_ca_is_read_in_every_form_the_other_pem_settings_take() {
    let pem_text = ca_pem();
    let bundle = format!("{pem_text}{}", ca_pem());
    assert_eq!(DatabaseCa::from_pem_text(&pem_text).unwrap().certs.len(), 1);
    assert_eq!(DatabaseCa::from_pem_text(&bundle).unwrap().certs.len(), 2);
    let escaped = pem_text.trim().replace('\n', "\\n");
    assert_eq!(DatabaseCa::from_pem_text(&escaped).unwrap().certs.len(), 1);
    let quoted = format!("\"{escaped}\"");
    assert_eq!(DatabaseCa::from_pem_text(&quoted).unwrap().certs.len(), 1);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pem_text);
    assert_eq!(DatabaseCa::from_pem_text(&b64).unwrap().certs.len(), 1);
}

#[test]
fn a_malformed_ca_is_refused_without_repeating_it() {
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    for (text, says) in [
        ("not-a-cert-s3cret", "not PEM"),
        (key.as_str(), "PRIVATE KEY"),
        (
            "-----BEGIN CERTIFICATE-----\nczNjcmV0LWJ5dGVz\n-----END CERTIFICATE-----\n",
            "does not parse",
        ),
    ] {
        let err = DatabaseCa::from_pem_text(text).unwrap_err();
        assert!(err.contains(says), "{err}");
        assert!(
            !err.contains("s3cret") && !err.contains("czNjcmV0"),
            "{err}"
        );
    }
}

#[test]
fn tls_settings_errors_never_carry_the_password() {
    for url in [
        "mysql://app:s3cr3t-pw@db/pay?ssl-mode=SOMETIMES",
        "mysql://app:s3cr3t-pw@db/pay?require_ssl=true",
        "mysql://app:s3cr3t-pw@db/pay?ssl-mode=VERIFY_CA",
        "mysql://app:s3cr3t-pw@db/pay?ssl-mode=s3cr3t-pw",
    ] {
        match MySqlStore::check(url, None) {
            Err(e @ StoreError::BadUrl(_)) => {
                let shown = format!("{e} {e:?}");
                assert!(!shown.contains("s3cr3t-pw"), "{shown}");
            }
            other => panic!("{url}: expected BadUrl, got {other:?}"),
        }
    }
}
