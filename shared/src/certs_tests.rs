//! Unit tests of `certs.rs`.

use super::*;

#[test]
fn published_certificate_download_decrypts_to_the_expected_certificate() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../tests/data/wechatpay-published.json")).unwrap();
    let d = &v["certificate_download"];
    let resp: CertificatesResponse = serde_json::from_value(d["response"].clone()).unwrap();
    let key = ApiV3Key::new(d["apiv3_key"].as_str().unwrap()).unwrap();
    let certs = decrypt_certificates(&resp, &key).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].serial, d["expected_serial"].as_str().unwrap());
    let fmt = time::format_description::well_known::Rfc3339;
    assert_eq!(
        certs[0].not_before,
        OffsetDateTime::parse(d["expected_not_before"].as_str().unwrap(), &fmt).unwrap()
    );
    assert_eq!(
        certs[0].not_after,
        OffsetDateTime::parse(d["expected_not_after"].as_str().unwrap(), &fmt).unwrap()
    );
    // The wrong APIv3 key must not yield a certificate.
    let wrong = ApiV3Key::new(&"x".repeat(32)).unwrap();
    assert!(decrypt_certificates(&resp, &wrong).is_err());
}

fn headers(sig: &str, ts: i64) -> SignatureHeaders {
    SignatureHeaders {
        serial: "ABC".into(),
        signature: sig.into(),
        timestamp: ts.to_string(),
        nonce: "n".into(),
    }
}

#[test]
fn precheck_refuses_probes_and_stale_timestamps() {
    let now = OffsetDateTime::now_utc();
    let t = now.unix_timestamp();
    assert_eq!(
        headers("WECHATPAY/SIGNTEST/abc", t).precheck(now),
        Err(VerifyError::Probe)
    );
    assert_eq!(
        headers("x", t - 301).precheck(now),
        Err(VerifyError::StaleTimestamp)
    );
    assert_eq!(
        headers("x", t + 301).precheck(now),
        Err(VerifyError::StaleTimestamp)
    );
    assert_eq!(headers("x", t - 10).precheck(now), Ok(()));
    let mut h = headers("x", t);
    h.timestamp = "soon".into();
    assert_eq!(h.precheck(now), Err(VerifyError::StaleTimestamp));
}

#[test]
fn timestamps_are_digits_only_and_extremes_neither_panic_nor_wrap() {
    let now = OffsetDateTime::now_utc();
    let t = now.unix_timestamp();
    for bad in [
        i64::MIN.to_string(),
        i64::MAX.to_string(),
        format!("+{t}"),
        format!("0{t}"),
        format!("00{t}"),
        format!("-{t}"),
        format!("{t}.0"),
        format!("0x{t:x}"),
        "1e9".to_string(),
        String::new(),
    ] {
        let mut h = headers("x", t);
        h.timestamp = bad.clone();
        assert_eq!(h.precheck(now), Err(VerifyError::StaleTimestamp), "{bad}");
    }
}

fn cert(serial: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> PlatformCert {
    PlatformCert {
        serial: serial.into(),
        key: VerifyKey::from_pkcs1_der(vec![0x30, 0x00]),
        not_before,
        not_after,
    }
}

fn probe(serial: &str) -> SignatureHeaders {
    SignatureHeaders {
        serial: serial.into(),
        signature: "c2lnbmF0dXJl".into(),
        timestamp: OffsetDateTime::now_utc().unix_timestamp().to_string(),
        nonce: "nonce".into(),
    }
}

const SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";

/// A key that is not valid now is not consulted: the keys go looking for a current one
/// (here: a download that fails) instead of checking the signature with it.
async fn consults_the_key(keys: &PlatformKeys) -> bool {
    let source = FailingSource(Default::default());
    let err = keys
        .verify(&probe(SERIAL), b"{}", &source)
        .await
        .unwrap_err();
    let downloads = source.0.load(std::sync::atomic::Ordering::SeqCst);
    match err {
        VerifyError::BadSignature if downloads == 0 => true,
        VerifyError::CertificatesUnavailable(_) if downloads == 1 => false,
        other => panic!("unexpected {other:?} after {downloads} downloads"),
    }
}

#[tokio::test]
async fn a_pinned_certificate_is_used_only_within_its_validity() {
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let pinned = |not_before, not_after| {
        let c = cert(SERIAL, not_before, not_after);
        PlatformKeys::new(
            Some(ConfiguredPlatformKey::Certificate {
                serial: c.serial,
                key: c.key,
                not_before: c.not_before,
                not_after: c.not_after,
            }),
            ApiV3Key::new(&"k".repeat(32)).unwrap(),
        )
    };
    assert!(consults_the_key(&pinned(now - day, now + day)).await);
    assert!(
        !consults_the_key(&pinned(now - 2 * day, now - day)).await,
        "expired"
    );
    assert!(
        !consults_the_key(&pinned(now + day, now + 2 * day)).await,
        "not yet valid"
    );
}

#[tokio::test]
async fn a_cached_certificate_is_used_only_from_its_not_before() {
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let cached = |not_before, not_after| {
        let keys = PlatformKeys::new(None, ApiV3Key::new(&"k".repeat(32)).unwrap());
        {
            let mut c = keys.lock();
            c.by_serial
                .insert(SERIAL.into(), cert(SERIAL, not_before, not_after));
            c.fetched_at = Some(Instant::now());
        }
        keys
    };
    assert!(consults_the_key(&cached(now - day, now + day)).await);
    assert!(
        !consults_the_key(&cached(now + day, now + 2 * day)).await,
        "published early"
    );
}

fn header_map(signature_type: Option<&str>) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in [
        (
            "Wechatpay-Serial",
            "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        ),
        ("Wechatpay-Signature", "c2lnbmF0dXJl"),
        ("Wechatpay-Timestamp", "1554209980"),
        ("Wechatpay-Nonce", "c5ac7061fccab6bf3e254dcf98995b8c"),
    ] {
        h.insert(k, v.parse().unwrap());
    }
    if let Some(t) = signature_type {
        h.insert("Wechatpay-Signature-Type", t.parse().unwrap());
    }
    h
}

#[test]
fn only_the_rsa_signature_type_is_accepted() {
    let ok = SignatureHeaders::from_headers(&header_map(Some("WECHATPAY2-SHA256-RSA2048")));
    assert_eq!(ok.unwrap().nonce, "c5ac7061fccab6bf3e254dcf98995b8c");
    assert_eq!(
        SignatureHeaders::from_headers(&header_map(Some("WECHATPAY2-SM2-WITH-SM3"))).unwrap_err(),
        VerifyError::UnsupportedSignatureType("WECHATPAY2-SM2-WITH-SM3".into())
    );
    assert_eq!(
        SignatureHeaders::from_headers(&header_map(Some("wechatpay2-sha256-rsa2048"))).unwrap_err(),
        VerifyError::UnsupportedSignatureType("wechatpay2-sha256-rsa2048".into()),
        "the name is compared exactly, as WeChat Pay spells it"
    );
    assert_eq!(
        SignatureHeaders::from_headers(&header_map(None)).unwrap_err(),
        VerifyError::MissingHeader("wechatpay-signature-type")
    );
}

/// Anyone who can reach the notify URL picks the serial; the refusal (echoed in the answer
/// and the log line) must not grow with it.
#[test]
fn an_oversized_or_strange_serial_is_refused_bounded() {
    for serial in ["S".repeat(200_000), "ABC DEF".into(), "ABC-DEF".into()] {
        let mut h = header_map(Some(SIGNATURE_TYPE));
        h.insert("wechatpay-serial", serial.parse().unwrap());
        let refused = SignatureHeaders::from_headers(&h).unwrap_err();
        assert!(
            matches!(refused, VerifyError::UnknownSerial(_)),
            "{refused:?}"
        );
        assert!(
            refused.to_string().len() < 100,
            "bounded: {} bytes",
            refused.to_string().len()
        );
    }
    let id = "PUB_KEY_ID_0114232134912410000000000000";
    let mut h = header_map(Some(SIGNATURE_TYPE));
    h.insert("wechatpay-serial", id.parse().unwrap());
    assert_eq!(SignatureHeaders::from_headers(&h).unwrap().serial, id);
}

struct FailingSource(std::sync::atomic::AtomicUsize);

#[async_trait]
impl CertificateSource for FailingSource {
    async fn download_certificates(&self) -> Result<RawAnswer, String> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err("WeChat Pay is down".into())
    }
}

#[tokio::test]
async fn a_failed_download_is_not_retried_by_every_forged_serial() {
    let keys = PlatformKeys::new(None, ApiV3Key::new(&"k".repeat(32)).unwrap());
    let source = FailingSource(Default::default());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    for i in 0..5 {
        let sig = SignatureHeaders {
            serial: format!("{:040X}", 0xF00 + i),
            signature: "c2lnbmF0dXJl".into(),
            timestamp: now.to_string(),
            nonce: "nonce".into(),
        };
        let err = keys.verify(&sig, b"{}", &source).await.unwrap_err();
        assert!(
            matches!(err, VerifyError::CertificatesUnavailable(_)),
            "{err}"
        );
    }
    assert_eq!(source.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}
