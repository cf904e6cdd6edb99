//! The built `wxpay_order` binary serves orders and nothing else: under the Lambda Runtime
//! API it answers `wxpay_order`, refuses every other type with 40003 and notifications
//! with 404 — and it does not even carry the code for them.

use std::path::Path;
use std::time::Duration;

use object::{Object, ObjectSymbol};
use serde_json::{json, Value};
use wxpay_local::lambda_api::{payment_notification_event, Bootstrap, RuntimeApi};
use wxpay_local::{LocalEnv, LocalOptions};

const BIN: &str = env!("CARGO_BIN_EXE_wxpay_order");
const OPENID: &str = "oOrderFunctionTest0000000001";
/// Generous for a debug binary on a loaded CI machine, but bounded.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_function_answers_orders_and_refuses_refunds_and_notifications() {
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let secret = env
        .vars
        .iter()
        .find(|(k, _)| k == "INTERNAL_API_SECRET")
        .map(|(_, v)| v.clone())
        .expect("the local environment has an internal secret");
    let api = RuntimeApi::start().await.expect("the Runtime API listens");
    let mut function =
        Bootstrap::with_sqlite(Path::new(BIN), &api, "wxpay-OrderFunction", &env.vars);

    // A mini-program's order.
    let order = api
        .invoke(
            &mut function,
            json!({
                "type": "wxpay_order",
                "packageType": "basic",
                "userInfo": { "appId": wxpay_sim::DEFAULT_APPID, "openId": OPENID }
            }),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(order["code"], 0, "{order}");
    let out_trade_no = order["data"]["outTradeNo"]
        .as_str()
        .expect("outTradeNo")
        .to_string();

    // A trusted refund of that very order is not this function's business.
    let refund = api
        .invoke(
            &mut function,
            json!({
                "type": "wxpay_refund",
                "outTradeNo": out_trade_no,
                "internalSecret": secret,
            }),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(refund["code"], 40003, "{refund}");
    let msg = refund["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("this function serves: wxpay_order") && !msg.contains("wxpay_refund,"),
        "the message names what it serves: {refund}"
    );

    // Neither is the order's payment notification, signed by WeChat Pay.
    let notification = payment_notification_event(&env.sim, &out_trade_no)
        .await
        .expect("the simulator pays and signs");
    let answer = api
        .invoke(&mut function, notification, INVOKE_TIMEOUT)
        .await;
    assert_eq!(answer["statusCode"], 404, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("a JSON body ({e}): {answer}"));
    assert_eq!(body["code"], "FAIL", "{answer}");

    // Nor the outbox schedule.
    let schedule = api
        .invoke(
            &mut function,
            json!({ "source": "aws.events", "detail-type": "Scheduled Event", "detail": {} }),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(schedule["code"], 40003, "{schedule}");
}

/// Lambda's deadline (`Lambda-Runtime-Deadline-Ms`) is the function's: with WeChat Pay
/// stalling on the prepay (the simulator's delay fault, 10 s) and a 2 s function timeout,
/// the binary answers 504 before the platform would kill it — though its own per-attempt
/// limit (`WECHATPAY_TIMEOUT_MS`, 4 s) is longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_prepay_is_answered_before_lambdas_deadline() {
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let api = RuntimeApi::start().await.expect("the Runtime API listens");
    let mut function =
        Bootstrap::with_sqlite(Path::new(BIN), &api, "wxpay-OrderFunction", &env.vars);
    let order = json!({
        "type": "wxpay_order",
        "packageType": "basic",
        "userInfo": { "appId": wxpay_sim::DEFAULT_APPID, "openId": OPENID }
    });
    // Warm: the platform certificates are downloaded and kept.
    let first = api
        .invoke(&mut function, order.clone(), INVOKE_TIMEOUT)
        .await;
    assert_eq!(first["code"], 0, "{first}");

    env.sim.inject_fault(wxpay_sim::Fault::new(
        "/v3/pay/transactions/jsapi",
        1,
        wxpay_sim::FaultKind::Delay(Duration::from_secs(10)),
    ));
    api.set_function_timeout(Duration::from_millis(2000));
    let started = std::time::Instant::now();
    let answer = api.invoke(&mut function, order, INVOKE_TIMEOUT).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2000),
        "answered after {took:?}, past Lambda's 2 s deadline: {answer}"
    );
    assert!(
        answer["code"] == 50400 || answer["code"] == 50410,
        "{answer}"
    );
}

/// The linker keeps only what the handler table a binary starts with reaches. Read from the
/// symbol table of the (unstripped, dev-profile) binary the test runs.
#[test]
fn the_order_binary_carries_no_refund_query_or_notification_handler() {
    let bytes = std::fs::read(BIN).unwrap_or_else(|e| panic!("read {BIN}: {e}"));
    let file = object::File::parse(&*bytes).expect("the binary is an object file");
    let names: Vec<&str> = file.symbols().filter_map(|s| s.name().ok()).collect();
    // Legacy Rust mangling spells a path as length-prefixed segments.
    let has = |path: &str| names.iter().any(|n| n.contains(path));
    assert!(
        has("12wxpay_shared8handlers5order6create"),
        "no symbol of the order handler: the binary is stripped or mangled differently \
         (run the tests with the dev profile); {} symbols",
        names.len()
    );
    for (what, path) in [
        ("the refund handlers", "12wxpay_shared8handlers6refund"),
        (
            "the query and close handlers",
            "12wxpay_shared8handlers5query",
        ),
        ("the notification handler", "12wxpay_shared6notify6handle"),
        ("the outbox delivery", "12wxpay_shared6outbox"),
    ] {
        let found: Vec<&&str> = names.iter().filter(|n| n.contains(path)).take(3).collect();
        assert!(found.is_empty(), "wxpay_order carries {what}: {found:?}");
    }
}
