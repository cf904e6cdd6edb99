//! The built router under the Lambda Runtime API writes CloudWatch Embedded Metric Format
//! lines to stdout (metrics are on by default on Lambda), each invocation's before its
//! answer: read straight after an answer, the binary's output already holds them. The
//! lines carry counts, fen and a closed set of reasons, never an openid, an order number,
//! a transaction id or a secret.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use wxpay_local::lambda_api::{payment_notification_event, Bootstrap, RuntimeApi};
use wxpay_local::{LocalEnv, LocalOptions};

const BIN: &str = env!("CARGO_BIN_EXE_wxpay_functions");
const OPENID: &str = "oLambdaMetricsTest0000000001";
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Every EMF document the binary has written so far: the JSON lines carrying `_aws`.
fn emf_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter(|l| l.starts_with('{') && l.contains("\"_aws\""))
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("an EMF line is JSON ({e}): {l}"))
        })
        .collect()
}

/// The sum of a metric over `lines` (a histogram's values are counted one by one).
fn total(lines: &[Value], name: &str) -> f64 {
    lines
        .iter()
        .filter_map(|l| l.get(name))
        .map(|v| match v {
            Value::Array(values) => values.iter().filter_map(Value::as_f64).sum(),
            v => v.as_f64().unwrap_or_default(),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_notification_writes_payments_recorded_before_its_answer() {
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let api = RuntimeApi::start().await.expect("the Runtime API listens");
    let mut function =
        Bootstrap::with_sqlite(Path::new(BIN), &api, "wxpay-RouterFunction", &env.vars);

    // A mini-program's order: OrdersCreated.
    let answer = api
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
    assert_eq!(answer["code"], 0, "{answer}");
    let out_trade_no = answer["data"]["outTradeNo"]
        .as_str()
        .expect("outTradeNo")
        .to_string();
    let lines = emf_lines(&function.logs());
    assert_eq!(total(&lines, "OrdersCreated"), 1.0, "{lines:?}");
    assert_eq!(total(&lines, "PaymentsRecorded"), 0.0, "{lines:?}");

    // WeChat Pay's notification of the payment: PaymentsRecorded 1, PaymentAmountFen 1
    // (basic is 0.01 yuan), in namespace WxPay, already written when the answer arrives.
    let notification = payment_notification_event(&env.sim, &out_trade_no)
        .await
        .expect("the simulator pays and signs");
    let answer = api
        .invoke(&mut function, notification.clone(), INVOKE_TIMEOUT)
        .await;
    assert_eq!(answer["statusCode"], 204, "{answer}");
    let lines = emf_lines(&function.logs());
    let paid: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("PaymentsRecorded").is_some())
        .collect();
    assert_eq!(
        paid.len(),
        1,
        "one EMF line with PaymentsRecorded: {lines:?}"
    );
    assert_eq!(paid[0]["PaymentsRecorded"], 1, "{}", paid[0]);
    assert_eq!(total(&lines, "PaymentAmountFen"), 1.0, "{lines:?}");
    let directive = &paid[0]["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "WxPay", "{}", paid[0]);
    assert!(
        directive["Metrics"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["Name"] == "PaymentsRecorded")),
        "the directive names the metric: {}",
        paid[0]
    );

    // The same notification again is a duplicate: nothing recorded twice.
    let answer = api
        .invoke(&mut function, notification.clone(), INVOKE_TIMEOUT)
        .await;
    assert_eq!(answer["statusCode"], 204, "{answer}");
    assert_eq!(total(&emf_lines(&function.logs()), "PaymentsRecorded"), 1.0);

    // A forged signature: NotificationsRefused with Reason "signature", nothing else.
    let mut forged = notification;
    forged["headers"]["wechatpay-signature"] = Value::from("Zm9yZ2Vk");
    let answer = api.invoke(&mut function, forged, INVOKE_TIMEOUT).await;
    assert_eq!(answer["statusCode"], 401, "{answer}");
    let lines = emf_lines(&function.logs());
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("NotificationsRefused").is_some())
        .collect();
    assert_eq!(refused.len(), 1, "{lines:?}");
    assert_eq!(refused[0]["Reason"], "signature", "{}", refused[0]);
    assert_eq!(
        refused[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Reason"]]),
        "{}",
        refused[0]
    );

    // Nothing that names a person, an order, a payment or a secret is in any metric line.
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
    let transaction_id = answer["data"]["transactionId"]
        .as_str()
        .unwrap_or_else(|| panic!("the paid order's transaction id: {answer}"))
        .to_string();
    let lines = emf_lines(&function.logs());
    let all: String = lines.iter().map(Value::to_string).collect();
    let mut never = vec![OPENID.to_string(), out_trade_no.clone(), transaction_id];
    never.extend(
        env.vars
            .iter()
            .filter(|(k, _)| k.contains("SECRET") || k.contains("KEY"))
            .map(|(_, v)| v.clone())
            .filter(|v| v.len() >= 8),
    );
    for value in never {
        assert!(
            !all.contains(&value),
            "`{value}` is in a metric line: {all}"
        );
    }
}
