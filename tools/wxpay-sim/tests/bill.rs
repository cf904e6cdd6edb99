//! The trade bill, checked as a merchant following WeChat Pay's documentation would: apply
//! for the bill (a signed answer), download it with a signed request (an unsigned file),
//! compare its SHA1 with `hash_value`, and read the backtick-prefixed CSV.

mod common;

use common::*;
use ring::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY};
use serde_json::json;
use time::{Duration as Days, OffsetDateTime, UtcOffset};
use wxpay_sim::{PlatformMode, RefundOutcome, SimConfig, Simulator};

const NO_RECEIVER: &str = "http://127.0.0.1:9/unused";

fn beijing_today() -> time::Date {
    OffsetDateTime::now_utc()
        .to_offset(UtcOffset::from_hms(8, 0, 0).unwrap())
        .date()
}

/// A paid order and a paid-then-refunded one, both without a notification.
async fn a_day_of_trading() -> Simulator {
    let mut config = SimConfig::for_merchant(keys());
    config.mode = PlatformMode::Certificate;
    let sim = Simulator::start(config).await.expect("simulator starts");
    sim.serve_bills_early(true);
    prepay_jsapi(&sim, "BILL_order_1", 2990, NO_RECEIVER).await;
    prepay_jsapi(&sim, "BILL_order_2", 1, NO_RECEIVER).await;
    sim.mark_paid_silently("BILL_order_1").await.unwrap();
    sim.mark_paid_silently("BILL_order_2").await.unwrap();
    let r = call(
        &sim,
        "POST",
        "/v3/refund/domestic/refunds",
        Some(
            &json!({
                "out_trade_no": "BILL_order_1",
                "out_refund_no": "BILL_refund_1",
                "notify_url": NO_RECEIVER,
                "amount": {"refund": 990, "total": 2990, "currency": "CNY"},
            })
            .to_string(),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    sim.complete_refund_silently("BILL_refund_1", RefundOutcome::Success)
        .unwrap();
    sim
}

struct Downloaded {
    hash_value: String,
    file: Resp,
}

async fn apply_and_download(sim: &Simulator, date: &str) -> Downloaded {
    let applied = call(
        sim,
        "GET",
        &format!("/v3/bill/tradebill?bill_date={date}&bill_type=ALL"),
        None,
    )
    .await;
    assert_eq!(applied.status, 200, "{}", applied.body);
    assert!(applied.verifies_with(&sim.platform_public_key_pem()));
    let v = applied.json();
    assert_eq!(v["hash_type"], "SHA1");
    let url = v["download_url"].as_str().expect("download_url");
    let path = url
        .strip_prefix(&sim.base_url())
        .expect("served by the simulator");
    let file = call(sim, "GET", path, None).await;
    Downloaded {
        hash_value: v["hash_value"].as_str().unwrap().to_string(),
        file,
    }
}

fn fields(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|f| {
            f.strip_prefix('`')
                .expect("every data field starts with a backtick")
        })
        .collect()
}

#[tokio::test]
async fn the_bill_lists_payments_and_refunds_and_its_hash_vouches_for_it() {
    let sim = a_day_of_trading().await;
    let d = apply_and_download(&sim, &beijing_today().to_string()).await;
    assert_eq!(d.file.status, 200);
    assert!(
        d.file.header("Wechatpay-Signature").is_none(),
        "the file itself is not signed"
    );
    let sha1 = hex::encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, d.file.body.as_bytes()));
    assert_eq!(sha1, d.hash_value);

    let lines: Vec<&str> = d
        .file
        .body
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        6,
        "header, 3 rows, summary header, summary:\n{}",
        d.file.body
    );
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let rows: Vec<Vec<&str>> = lines[1..4].iter().map(|l| fields(l)).collect();
    let payment = rows
        .iter()
        .find(|r| r[col("商户订单号")] == "BILL_order_1" && r[col("交易状态")] == "SUCCESS")
        .expect("the payment row");
    assert_eq!(payment[col("订单金额")], "29.90");
    assert_eq!(payment[col("应结订单金额")], "29.90");
    assert_eq!(payment[col("公众账号ID")], sim.config().appid);
    assert_eq!(
        Some(payment[col("微信订单号")].to_string()),
        sim.order("BILL_order_1").unwrap().transaction_id
    );
    let refund = rows
        .iter()
        .find(|r| r[col("交易状态")] == "REFUND")
        .expect("the refund row");
    assert_eq!(refund[col("商户退款单号")], "BILL_refund_1");
    assert_eq!(refund[col("退款金额")], "9.90");
    assert_eq!(refund[col("申请退款金额")], "9.90");
    assert_eq!(refund[col("退款状态")], "SUCCESS");
    // As WeChat Pay prints a refund: no order amounts, the fee given back, five decimals.
    assert_eq!(refund[col("订单金额")], "0.00");
    assert_eq!(refund[col("应结订单金额")], "0.00");
    assert_eq!(refund[col("手续费")], "-0.06000");
    assert_eq!(payment[col("手续费")], "0.18000");

    assert!(lines[4].starts_with("总交易单数,应结订单总金额,退款总金额"));
    let summary = fields(lines[5]);
    assert_eq!(summary[0], "3");
    assert_eq!(summary[1], "29.91", "settlement total of the two payments");
    assert_eq!(summary[2], "9.90", "refund total");
}

#[tokio::test]
async fn the_bill_can_be_made_to_disagree() {
    let sim = a_day_of_trading().await;
    sim.drop_from_bill("BILL_order_2");
    sim.alter_bill_amount("BILL_order_1", 2900);
    let d = apply_and_download(&sim, &beijing_today().to_string()).await;
    assert!(!d.file.body.contains("BILL_order_2"));
    assert!(d.file.body.contains("`29.00"));
    let summary = fields(d.file.body.trim_end().lines().last().unwrap());
    assert_eq!(
        (summary[0], summary[1]),
        ("2", "29.00"),
        "the summary agrees with the rows"
    );

    sim.break_bill_hash(true);
    let d = apply_and_download(&sim, &beijing_today().to_string()).await;
    let sha1 = hex::encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, d.file.body.as_bytes()));
    assert_ne!(sha1, d.hash_value);

    sim.reset_bill();
    let d = apply_and_download(&sim, &beijing_today().to_string()).await;
    assert!(d.file.body.contains("BILL_order_2"));
}

#[tokio::test]
async fn bills_not_ready_or_empty_are_refused_and_downloads_need_a_signature() {
    let sim = a_day_of_trading().await;
    let today = beijing_today();
    let three_days_ago = today - Days::days(3);
    let r = call(
        &sim,
        "GET",
        &format!("/v3/bill/tradebill?bill_date={three_days_ago}&bill_type=ALL"),
        None,
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (400, "NO_STATEMENT_EXIST"));
    assert!(r.verifies_with(&sim.platform_public_key_pem()));

    sim.serve_bills_early(false);
    let r = call(
        &sim,
        "GET",
        &format!("/v3/bill/tradebill?bill_date={today}&bill_type=ALL"),
        None,
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (400, "STATEMENT_CREATING"));

    let r = call(&sim, "GET", "/v3/bill/tradebill?bill_date=20240101", None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "PARAM_ERROR"));

    sim.serve_bills_early(true);
    let applied = call(
        &sim,
        "GET",
        &format!("/v3/bill/tradebill?bill_date={today}"),
        None,
    )
    .await;
    assert_eq!(applied.status, 200, "bill_type defaults to ALL");
    let url = applied.json()["download_url"].as_str().unwrap().to_string();
    let path = url.strip_prefix(&sim.base_url()).unwrap();
    let unsigned = call_signed(&sim, "GET", path, None, None).await;
    assert_eq!(
        (unsigned.status, unsigned.code().as_str()),
        (401, "SIGN_ERROR")
    );
    let r = call(&sim, "GET", "/v3/billdownload/file?token=nosuchtoken", None).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn the_control_api_loses_notifications_and_edits_the_bill() {
    let sim = a_day_of_trading().await;
    prepay_jsapi(&sim, "BILL_order_3", 500, NO_RECEIVER).await;
    let http = reqwest::Client::new();
    let post = |path: &str| http.post(format!("{}{path}", sim.base_url())).send();
    let r = post("/sim/pay-silently/BILL_order_3").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.order("BILL_order_3").unwrap().trade_state, "SUCCESS");
    let r = post("/sim/bill/amount/BILL_order_3?fen=400").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/sim/bill/drop/BILL_order_2").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/sim/refunds/NOSUCH/complete-silently").await.unwrap();
    assert_eq!(r.status(), 404);
    let text = http
        .get(format!("{}/sim/bill/{}", sim.base_url(), beijing_today()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bill: serde_json::Value = serde_json::from_str(&text).unwrap();
    let file = bill["file"].as_str().unwrap();
    assert!(file.contains("`BILL_order_3") && file.contains("`4.00"));
    assert!(!file.contains("BILL_order_2"));
}
