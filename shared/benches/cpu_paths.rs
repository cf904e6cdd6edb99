//! Micro-benchmarks of the CPU paths with no I/O (issue 6), next to their physical floor:
//! one ring RSA-2048 sign and one verify on this machine.
//!
//! - `floor/*`: raw ring, no product code;
//! - `signing/*`: a request `Authorization` header, a JSAPI `paySign`;
//! - `notification/cpu_path`: everything a payment notification costs before the store —
//!   header parse, precheck, signature verify over `ts\nnonce\nbody\n`, AES-256-GCM decrypt,
//!   JSON decode of the transaction, the field checks;
//! - `order/cpu_path`: the order handler's CPU work — request JSON, prepay body, its
//!   `Authorization`, verifying the (real, simulator-signed) prepay answer, `paySign`, the
//!   result JSON;
//! - `certificates/parse_pem`: a platform certificate, as after a `/v3/certificates` download;
//! - `startup/config_from_vars`: what a cold start spends on configuration (key parsing).
//!
//! Inputs are produced once by the WeChat Pay simulator, so signatures and ciphertexts are the
//! real thing. The targets: notification ≤ 2 × `floor/rsa2048_verify`, order ≤ 1.25 × two
//! `floor/rsa2048_sign`. `scripts/bench.sh` prints those ratios after the run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use ring::signature::{
    RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use wxpay_shared::api::{
    Amount, NotificationBody, Payer, PrepayRequest, PrepayResponse, Transaction,
};
use wxpay_shared::certs::{parse_certificate_pem, SignatureHeaders};
use wxpay_shared::config::Config;
use wxpay_shared::crypto::{
    authorization_header, jsapi_pay_sign, response_message, ApiV3Key, MerchantKey, RequestToSign,
    VerifyKey,
};
use wxpay_shared::util::{new_reference, random_alnum};
use wxpay_sim::keys::MerchantKeys;
use wxpay_sim::{NotificationEvent, SimConfig, Simulator};

const JSAPI_PATH: &str = "/v3/pay/transactions/jsapi";
const AMOUNT: i64 = 2990;
const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// A signed answer or notification: the headers and the exact body bytes.
struct Signed {
    headers: HeaderMap,
    body: Vec<u8>,
}

fn header_map(pairs: impl IntoIterator<Item = (String, String)>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).expect("header name"),
            HeaderValue::from_str(&v).expect("header value"),
        );
    }
    h
}

/// Everything the benchmarks need, made once with the simulator.
struct Fixture {
    appid: String,
    mchid: String,
    serial_no: String,
    merchant_pem: String,
    merchant: MerchantKey,
    platform_serial: String,
    platform_cert_pem: String,
    platform_key: VerifyKey,
    apiv3: ApiV3Key,
    notification: Signed,
    prepay_answer: Signed,
    config_vars: Vec<(String, String)>,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let keys = MerchantKeys::generate();
    let sim = rt
        .block_on(Simulator::start(SimConfig::for_merchant(&keys)))
        .expect("simulator");
    let sc = sim.config().clone();
    let merchant = MerchantKey::from_text(&keys.private_key_pem).expect("merchant key");
    let platform_cert_pem = sim
        .platform_cert_pem()
        .expect("certificate mode has a certificate");
    let platform_serial = sim.platform_cert_serial().expect("platform serial");
    let platform_key = parse_certificate_pem(&platform_cert_pem)
        .expect("platform certificate")
        .key;

    // A real prepay round trip, so the answer is signed exactly as the product receives it.
    let prepay = prepay_request(&sc.appid, &sc.mchid, &new_reference("WX"));
    let body = serde_json::to_string(&prepay).expect("prepay JSON");
    let nonce = random_alnum(32);
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let auth = authorization_header(
        &merchant,
        &sc.mchid,
        &keys.serial_no,
        &RequestToSign {
            method: "POST",
            path_and_query: JSAPI_PATH,
            timestamp: ts,
            nonce: &nonce,
            body: &body,
        },
    )
    .expect("sign");
    let prepay_answer = rt.block_on(async {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .post(format!("{}{JSAPI_PATH}", sim.base_url()))
            .header("Authorization", auth)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("prepay request");
        assert_eq!(resp.status(), 200, "the simulator refused the prepay");
        let headers = resp.headers().clone();
        Signed {
            headers,
            body: resp.bytes().await.expect("prepay answer").to_vec(),
        }
    });

    // A TRANSACTION.SUCCESS notification with every field WeChat Pay sends.
    let n = sim.notification(NotificationEvent {
        event_type: "TRANSACTION.SUCCESS".into(),
        original_type: "transaction".into(),
        plaintext: json!({
            "appid": sc.appid, "mchid": sc.mchid, "out_trade_no": "WX20240101120000abcdef12",
            "transaction_id": "4200001234202401011234567890", "trade_type": "JSAPI",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
            "attach": "", "success_time": "2024-01-01T12:00:05+08:00",
            "payer": { "openid": OPENID },
            "amount": { "total": AMOUNT, "payer_total": AMOUNT, "currency": "CNY", "payer_currency": "CNY" }
        }),
    });
    let notification = Signed {
        headers: header_map(n.headers.clone()),
        body: n.body.clone().into_bytes(),
    };

    let config_vars = vec![
        ("WECHAT_APPID".to_string(), sc.appid.clone()),
        ("WECHAT_MCHID".into(), sc.mchid.clone()),
        ("WECHAT_SERIAL_NO".into(), keys.serial_no.clone()),
        ("WECHAT_PRIVATE_KEY".into(), keys.private_key_pem.clone()),
        ("WECHAT_APIV3_KEY".into(), sc.apiv3_key.clone()),
        ("WECHAT_NOTIFY_URL".into(), "https://example.com/pay".into()),
        ("API_BASE_URL".into(), "https://backend.example.com".into()),
        (
            "DATABASE_URL".into(),
            "mysql://u@127.0.0.1:3306/wxpay".into(),
        ),
    ];
    sim.shutdown();
    Fixture {
        appid: sc.appid.clone(),
        mchid: sc.mchid.clone(),
        serial_no: keys.serial_no.clone(),
        merchant_pem: keys.private_key_pem.clone(),
        merchant,
        platform_serial,
        platform_cert_pem,
        platform_key,
        apiv3: ApiV3Key::new(&sc.apiv3_key).expect("APIv3 key"),
        notification,
        prepay_answer,
        config_vars,
    }
}

fn prepay_request(appid: &str, mchid: &str, out_trade_no: &str) -> PrepayRequest {
    PrepayRequest {
        appid: appid.into(),
        mchid: mchid.into(),
        description: "premium".into(),
        out_trade_no: out_trade_no.into(),
        notify_url: "https://example.com/pay".into(),
        attach: None,
        amount: Amount {
            total: AMOUNT,
            currency: "CNY".into(),
        },
        payer: Some(Payer {
            openid: Some(OPENID.into()),
        }),
        scene_info: None,
    }
}

/// The moment the signed inputs count as fresh. Fixed (one second after signing) so a long
/// benchmark run does not drift out of the 300 s window the precheck enforces.
fn fresh_now(h: &HeaderMap) -> OffsetDateTime {
    let ts: i64 = h["wechatpay-timestamp"].to_str().unwrap().parse().unwrap();
    OffsetDateTime::from_unix_timestamp(ts + 1).unwrap()
}

/// The notification path up to (not including) the store, composed from the product's own
/// public functions in the order `notify::handle` runs them.
fn notification_cpu(f: &Fixture, now: OffsetDateTime) -> Transaction {
    let n = &f.notification;
    let sig = SignatureHeaders::from_headers(&n.headers).expect("headers");
    sig.precheck(now).expect("fresh");
    // Key choice by serial: a lookup in warm memory, as PlatformKeys does.
    assert!(sig.serial.eq_ignore_ascii_case(&f.platform_serial));
    let message = response_message(&sig.timestamp, &sig.nonce, &n.body);
    assert!(f.platform_key.verify(&message, &sig.signature), "signature");
    let body: NotificationBody = serde_json::from_slice(&n.body).expect("notification JSON");
    assert!(body.event_type.starts_with("TRANSACTION."));
    let r = &body.resource;
    assert_eq!(r.algorithm, "AEAD_AES_256_GCM");
    let plain = f
        .apiv3
        .decrypt(
            &r.nonce,
            r.associated_data.as_deref().unwrap_or(""),
            &r.ciphertext,
        )
        .expect("decrypt");
    let tx: Transaction = serde_json::from_slice(&plain).expect("transaction JSON");
    assert_eq!(tx.trade_state.as_deref(), Some("SUCCESS"));
    assert!(tx.out_trade_no.is_some() && tx.transaction_id.is_some());
    assert_eq!(tx.mchid.as_deref(), Some(f.mchid.as_str()));
    assert_eq!(tx.appid.as_deref(), Some(f.appid.as_str()));
    assert_eq!(tx.amount.as_ref().and_then(|a| a.total), Some(AMOUNT));
    tx
}

/// The order handler's CPU work for a JSAPI order: two signs, one verify, the JSON.
fn order_cpu(f: &Fixture, now: OffsetDateTime) -> String {
    let request: Value = serde_json::from_slice(
        br#"{"type":"wxpay_order","packageType":"premium","tradeType":"JSAPI","userId":"u1","generationId":"g1"}"#,
    )
    .expect("order request");
    let package_type = request["packageType"].as_str().expect("packageType");
    let out_trade_no = new_reference("WX");
    let mut prepay = prepay_request(&f.appid, &f.mchid, &out_trade_no);
    prepay.description = package_type.to_string();
    let body = serde_json::to_string(&prepay).expect("prepay JSON");
    let auth = authorization_header(
        &f.merchant,
        &f.mchid,
        &f.serial_no,
        &RequestToSign {
            method: "POST",
            path_and_query: JSAPI_PATH,
            timestamp: now.unix_timestamp(),
            nonce: &random_alnum(32),
            body: &body,
        },
    )
    .expect("sign");
    black_box(auth);

    let answer = &f.prepay_answer;
    let sig = SignatureHeaders::from_headers(&answer.headers).expect("answer headers");
    sig.precheck(now).expect("fresh answer");
    let message = response_message(&sig.timestamp, &sig.nonce, &answer.body);
    assert!(
        f.platform_key.verify(&message, &sig.signature),
        "answer signature"
    );
    let prepay_answer: PrepayResponse = serde_json::from_slice(&answer.body).expect("answer JSON");
    let prepay_id = prepay_answer.prepay_id.expect("prepay_id");

    let time_stamp = now.unix_timestamp().to_string();
    let nonce_str = random_alnum(32);
    let package = format!("prepay_id={prepay_id}");
    let pay_sign =
        jsapi_pay_sign(&f.merchant, &f.appid, &time_stamp, &nonce_str, &package).expect("paySign");
    json!({ "code": 0, "msg": "ok", "data": {
        "outTradeNo": out_trade_no, "appId": f.appid, "timeStamp": time_stamp,
        "nonceStr": nonce_str, "package": package, "packageVal": package,
        "signType": "RSA", "paySign": pay_sign,
    }})
    .to_string()
}

fn benches(c: &mut Criterion) {
    let f = fixture();

    // The floor: ring alone, over a message the size of a real request message.
    let der = pem::parse(f.merchant_pem.as_bytes()).expect("PEM");
    let ring_key = RsaKeyPair::from_pkcs8(der.contents()).expect("ring key");
    let rng = ring::rand::SystemRandom::new();
    let body = serde_json::to_string(&prepay_request(&f.appid, &f.mchid, "WX1234567890")).unwrap();
    let nonce = random_alnum(32);
    let message = RequestToSign {
        method: "POST",
        path_and_query: JSAPI_PATH,
        timestamp: 1_700_000_000,
        nonce: &nonce,
        body: &body,
    }
    .message();
    let mut sig = vec![0u8; ring_key.public().modulus_len()];
    ring_key
        .sign(&RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut sig)
        .unwrap();
    let public_der = ring_key.public().as_ref().to_vec();

    let mut g = c.benchmark_group("floor");
    g.bench_function("rsa2048_sign", |b| {
        let mut out = vec![0u8; ring_key.public().modulus_len()];
        b.iter(|| {
            ring_key
                .sign(
                    &RSA_PKCS1_SHA256,
                    &rng,
                    black_box(message.as_bytes()),
                    &mut out,
                )
                .unwrap()
        })
    });
    g.bench_function("rsa2048_verify", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public_der)
                .verify(black_box(message.as_bytes()), &sig)
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("signing");
    g.bench_function("authorization_header", |b| {
        let nonce = random_alnum(32);
        b.iter(|| {
            let request = RequestToSign {
                method: "POST",
                path_and_query: JSAPI_PATH,
                timestamp: 1_700_000_000,
                nonce: &nonce,
                body: black_box(&body),
            };
            authorization_header(&f.merchant, &f.mchid, &f.serial_no, &request).unwrap()
        })
    });
    g.bench_function("jsapi_pay_sign", |b| {
        b.iter(|| {
            jsapi_pay_sign(
                &f.merchant,
                &f.appid,
                "1700000000",
                "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
                black_box("prepay_id=wx201410272009395522657a690389285100"),
            )
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("notification");
    let now = fresh_now(&f.notification.headers);
    g.bench_function("cpu_path", |b| {
        b.iter(|| notification_cpu(&f, black_box(now)))
    });
    g.finish();

    let mut g = c.benchmark_group("order");
    let now = fresh_now(&f.prepay_answer.headers);
    g.bench_function("cpu_path", |b| b.iter(|| order_cpu(&f, black_box(now))));
    g.finish();

    let mut g = c.benchmark_group("certificates");
    g.bench_function("parse_pem", |b| {
        b.iter(|| parse_certificate_pem(black_box(&f.platform_cert_pem)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("startup");
    g.bench_function("config_from_vars", |b| {
        b.iter(|| Config::from_vars(black_box(f.config_vars.clone())).unwrap())
    });
    g.finish();
}

fn config() -> Criterion {
    // Small samples: the whole suite should finish in about a minute on 2 shared cores; the
    // RSA-dominated paths are steady enough that 20 samples give tight intervals.
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

criterion_group! {
    name = cpu_paths;
    config = config();
    targets = benches
}
criterion_main!(cpu_paths);
