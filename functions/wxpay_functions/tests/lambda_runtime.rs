//! The built `wxpay_functions` binary under the real Lambda Runtime API protocol.
//!
//! The Runtime API of `wxpay_local::lambda_api` runs in the test on 127.0.0.1
//! (`/2018-06-01/runtime/...`: `invocation/next`, `invocation/{id}/response`,
//! `invocation/{id}/error`, `init/error`), the binary is started with
//! `AWS_LAMBDA_RUNTIME_API` pointing at it — exactly as Lambda starts `bootstrap` — and is
//! fed events one at a time, as Lambda does. The WeChat Pay simulator and the fake backend
//! come from `wxpay-local`; the binary keeps its own SQLite file, since it is a separate
//! process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use wxpay_local::lambda_api::{
    http_v2_event as http_v2, payment_notification_event, Bootstrap, Posted, RuntimeApi,
};
use wxpay_local::{LocalEnv, LocalOptions};

const BIN: &str = env!("CARGO_BIN_EXE_wxpay_functions");
const OPENID: &str = "oLambdaRuntimeTest0000000001";
/// Generous for a debug binary on a loaded CI machine, but bounded: a hung binary fails
/// the test instead of hanging it.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

fn http_body(answer: &Value) -> Value {
    let body = answer["body"]
        .as_str()
        .unwrap_or_else(|| panic!("an HTTP answer with a body: {answer}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_events_over_the_lambda_runtime_api() {
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let api = RuntimeApi::start().await.expect("the Runtime API listens");
    let mut function =
        Bootstrap::with_sqlite(Path::new(BIN), &api, "wxpay-RouterFunction", &env.vars);
    let json_headers = json!({ "content-type": "application/json", "host": "a1b2c3d4e5.execute-api.ap-east-1.amazonaws.com" });

    // 1. API Gateway v2: a NATIVE order.
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "POST",
                "/pay",
                json_headers.clone(),
                Some(r#"{"type":"wxpay_order","packageType":"basic","tradeType":"NATIVE"}"#.into()),
            ),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body = http_body(&answer);
    assert_eq!(body["code"], 0, "{answer}");
    let code_url = body["data"]["codeUrl"].as_str().unwrap_or_default();
    assert!(code_url.starts_with("weixin://"), "a codeUrl: {answer}");

    // 2. callFunction: the raw data object with userInfo; the answer is the bare envelope.
    let answer = api
        .invoke(
            &mut function,
            json!({
                "type": "wxpay_order",
                "packageType": "basic",
                "tradeType": "JSAPI",
                "userInfo": { "appId": wxpay_sim::DEFAULT_APPID, "openId": OPENID }
            }),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(answer["code"], 0, "{answer}");
    assert!(
        answer.get("statusCode").is_none(),
        "raw events get the envelope: {answer}"
    );
    assert_eq!(answer["data"]["signType"], "RSA", "{answer}");
    assert!(
        answer["data"]["paySign"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "a paySign: {answer}"
    );
    let out_trade_no = answer["data"]["outTradeNo"]
        .as_str()
        .expect("outTradeNo")
        .to_string();

    // 3. An unknown type over HTTP: 400 with the envelope's code.
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "POST",
                "/pay",
                json_headers.clone(),
                Some(r#"{"type":"wxpay_teleport"}"#.into()),
            ),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(answer["statusCode"], 400, "{answer}");
    assert_eq!(http_body(&answer)["code"], 40003, "{answer}");

    // 4. A payload that is not JSON: the runtime reports it on the error endpoint, and the
    //    binary keeps serving.
    match api
        .invoke_raw(
            &mut function,
            Bytes::from_static(b"{not json"),
            INVOKE_TIMEOUT,
        )
        .await
    {
        Posted::Error {
            body, error_type, ..
        } => {
            assert!(
                error_type.is_some(),
                "the Lambda-Runtime-Function-Error-Type header"
            );
            let error: Value = serde_json::from_slice(&body).expect("the error report is JSON");
            assert!(error["errorType"].is_string(), "an errorType: {error}");
            assert!(
                error["errorMessage"].is_string(),
                "an errorMessage: {error}"
            );
        }
        other => function.fail(&format!("expected an error report, got {other:?}")),
    }

    // 5. WeChat Pay's notification for the order of step 2, byte for byte as signed.
    let notification = payment_notification_event(&env.sim, &out_trade_no)
        .await
        .expect("the simulator pays and signs");
    let answer = api
        .invoke(&mut function, notification, INVOKE_TIMEOUT)
        .await;
    assert_eq!(answer["statusCode"], 204, "{answer}");
    assert!(
        answer.get("body").is_none_or(|b| b.is_null() || b == ""),
        "a handled notification has no body: {answer}"
    );

    // ... and the binary recorded it: the payer's query sees a paid order.
    let answer = api
        .invoke(
            &mut function,
            json!({
                "type": "wxpay_query_order_by_out_trade_no",
                "outTradeNo": out_trade_no,
                "userInfo": { "appId": wxpay_sim::DEFAULT_APPID, "openId": OPENID }
            }),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(answer["code"], 0, "{answer}");
    assert_eq!(answer["data"]["tradeState"], "SUCCESS", "{answer}");
    assert_eq!(answer["data"]["order"]["status"], "paid", "{answer}");

    // 6. The EventBridge schedule runs the retry.
    let answer = api
        .invoke(
            &mut function,
            json!({
                "version": "0",
                "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": "2026-03-12T08:05:00Z",
                "region": "ap-east-1",
                "resources": ["arn:aws:events:ap-east-1:123456789012:rule/wxpay-retry"],
                "detail": {}
            }),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(answer["code"], 0, "{answer}");
    assert!(answer["data"]["attempted"].is_u64(), "{answer}");

    // 7. GET /healthz.
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "GET",
                "/healthz",
                json!({ "host": "a1b2c3d4e5.execute-api.ap-east-1.amazonaws.com" }),
                None,
            ),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(http_body(&answer)["status"], "ok", "{answer}");

    // The binary keeps serving: after its last answer it long-polls for an eighth event.
    // (The answer reaches the test before the binary's next poll does, hence the wait.)
    let waited = Instant::now();
    while api.polls() < 8 {
        if waited.elapsed() > INVOKE_TIMEOUT {
            let polls = api.polls();
            function.fail(&format!(
                "the binary asked for events {polls} times, expected 8"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(status) = function.exited() {
        function.fail(&format!("the binary exited early: {status}"));
    }
}

/// The attacks of README "Who may call what", through the real runtime protocol on a
/// function deployed as `template.yaml` leaves it (no header trust): the victim's openid
/// in `X-WX-OPENID`, in a dressed-up `callFunction` event, in a forged `userInfo` in an
/// HTTP body, and with a wrong secret. None acts as the victim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_over_the_lambda_runtime_api_act_as_nobody() {
    const VICTIM: &str = OPENID;
    const ATTACKER: &str = "oLambdaRuntimeAttacker000001";
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let api = RuntimeApi::start().await.expect("the Runtime API listens");
    let mut function =
        Bootstrap::with_sqlite(Path::new(BIN), &api, "wxpay-RouterFunction", &env.vars);
    let json_headers = |openid: Option<&str>| {
        let mut h = json!({ "content-type": "application/json", "host": "a1b2c3d4e5.execute-api.ap-east-1.amazonaws.com" });
        if let Some(o) = openid {
            h["x-wx-openid"] = json!(o);
        }
        h
    };

    // The victim's order, from the victim's own mini-program.
    let answer = api
        .invoke(
            &mut function,
            json!({ "type": "wxpay_order", "packageType": "basic",
                    "userInfo": { "appId": wxpay_sim::DEFAULT_APPID, "openId": VICTIM } }),
            INVOKE_TIMEOUT,
        )
        .await;
    let no = answer["data"]["outTradeNo"]
        .as_str()
        .unwrap_or_else(|| panic!("the victim's order: {answer}"))
        .to_string();
    let close = json!({ "type": "wxpay_close_order", "outTradeNo": no });

    // 1. The header on an API Gateway event: 403, naming the setting.
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "POST",
                "/pay",
                json_headers(Some(VICTIM)),
                Some(close.to_string()),
            ),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(answer["statusCode"], 403, "{answer}");
    assert!(http_body(&answer)["msg"]
        .as_str()
        .unwrap_or_default()
        .contains("TRUST_OPENID_HEADER"));

    // 2. callFunction data dressed up as an HTTP event: the platform's userInfo makes it
    //    raw, so it is the attacker asking, and the victim's order does not exist for them.
    let mut dressed = http_v2(
        "POST",
        "/pay",
        json_headers(Some(VICTIM)),
        Some(close.to_string()),
    );
    dressed["type"] = json!("wxpay_close_order");
    dressed["outTradeNo"] = json!(no);
    dressed["userInfo"] = json!({ "appId": wxpay_sim::DEFAULT_APPID, "openId": ATTACKER });
    let answer = api.invoke(&mut function, dressed, INVOKE_TIMEOUT).await;
    assert_eq!(answer["code"], 40400, "{answer}");

    // 3. A forged userInfo in an HTTP body is no identity.
    let mut forged = close.clone();
    forged["userInfo"] = json!({ "appId": wxpay_sim::DEFAULT_APPID, "openId": VICTIM });
    let answer = api
        .invoke(
            &mut function,
            http_v2("POST", "/pay", json_headers(None), Some(forged.to_string())),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(answer["statusCode"], 401, "{answer}");

    // 4. A wrong secret naming the victim, as a direct invocation.
    let mut claim = close.clone();
    claim["openid"] = json!(VICTIM);
    claim["internalSecret"] = json!("guessed-secret-000000000");
    let answer = api.invoke(&mut function, claim, INVOKE_TIMEOUT).await;
    assert_eq!(answer["code"], 40300, "{answer}");

    // The victim's order is still open: the victim can still close it.
    let answer = api
        .invoke(
            &mut function,
            json!({ "type": "wxpay_close_order", "outTradeNo": no,
                    "userInfo": { "appId": wxpay_sim::DEFAULT_APPID, "openId": VICTIM } }),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(answer["code"], 0, "{answer}");
    assert_eq!(
        env.sim.request_count("/v3/pay/transactions/out-trade-no"),
        1,
        "only the victim's own close reached WeChat Pay"
    );
}

#[test]
fn missing_configuration_exits_2_naming_every_bad_variable_and_no_secret() {
    const APIV3: &str = "short-s3cret-value";
    const INTERNAL: &str = "internal-s3cret-never-printed";
    const KEY: &str =
        "-----BEGIN PRIVATE KEY-----\\nbm90LWEta2V5LXMzY3JldA==\\n-----END PRIVATE KEY-----";
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .env_clear()
        // As on Lambda: the runtime API is set, but start-up must stop before using it.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_LAMBDA_FUNCTION_NAME", "wxpay-RouterFunction")
        .env("WECHAT_MCHID", "1900000109")
        .env(
            "WECHAT_SERIAL_NO",
            "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        )
        .env("WECHAT_PRIVATE_KEY", KEY)
        .env("WECHAT_APIV3_KEY", APIV3)
        .env("INTERNAL_API_SECRET", INTERNAL)
        .env("WECHAT_NOTIFY_URL", "https://pay.example.com/notify")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the wxpay_functions binary");
    // Bounded wait: configuration is read before anything else, so this is immediate.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the misconfigured binary did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("collect output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(status.code(), Some(2), "exit code 2; stderr:\n{stderr}");
    for name in [
        "WECHAT_APPID",
        "DATABASE_URL",
        "WECHAT_APIV3_KEY",
        "WECHAT_PRIVATE_KEY",
    ] {
        assert!(stderr.contains(name), "stderr names {name}:\n{stderr}");
    }
    for secret in [APIV3, INTERNAL, "bm90LWEta2V5LXMzY3JldA"] {
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "a secret value was printed:\n{stderr}{stdout}"
        );
    }
}
