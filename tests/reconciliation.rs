//! The daily reconciliation against WeChat Pay's trade bill, end to end: the simulator pays
//! an order without notifying, completes a refund without notifying and shows a different
//! amount for a third order in its bill. Reconciliation repairs the first (the backend is
//! told once), syncs the second, flags the third and changes nothing; a second run of the
//! same date is a no-op.

mod common;

use common::{Harness, StoreKind};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime, UtcOffset};
use wxpay_shared::store::{OrderStatus, RefundStatus};
use wxpay_sim::RefundOutcome;

both_stores!(
    reconciliation_repairs_syncs_and_flags_and_a_second_run_changes_nothing,
    reconciliation_is_for_trusted_callers_and_says_when_a_bill_is_not_ready,
    a_bill_whose_hash_does_not_match_changes_nothing,
    a_payment_the_bill_does_not_list_is_flagged,
    a_day_with_other_apps_and_json_in_attach_is_matched,
    a_refund_row_of_zero_order_amounts_with_a_coupon_is_synced,
    an_attach_with_a_backtick_is_refused_before_wechat_pay_is_asked,
    a_day_cut_off_at_its_deadline_goes_on_from_its_checkpoint,
);

fn beijing_today() -> String {
    OffsetDateTime::now_utc()
        .to_offset(UtcOffset::from_hms(8, 0, 0).unwrap())
        .date()
        .to_string()
}

fn reconcile(bill_date: &str, dry_run: bool) -> Value {
    json!({ "type": "wxpay_reconcile", "billDate": bill_date, "early": true, "dryRun": dry_run })
}

fn kinds(data: &Value) -> Vec<(String, String, bool, bool)> {
    let mut k: Vec<_> = data["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["outTradeNo"].as_str().unwrap().to_string(),
                f["repaired"].as_bool().unwrap(),
                f["known"].as_bool().unwrap(),
            )
        })
        .collect();
    k.sort();
    k
}

async fn reconciliation_repairs_syncs_and_flags_and_a_second_run_changes_nothing(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    h.sim.serve_bills_early(true);
    // 1. Paid at WeChat Pay; the notification never arrives.
    let lost = h.create_order("o_lost", "premium").await;
    h.sim.mark_paid_silently(&lost).await.unwrap();
    // 2. A refund WeChat Pay completes without notifying.
    let refunded = h.create_paid_order("o_refund", "premium").await;
    let refund_no = h.start_refund(&refunded, Some(1000)).await;
    h.sim
        .complete_refund_silently(&refund_no, RefundOutcome::Success)
        .unwrap();
    // 3. The bill shows another amount for a paid order.
    let altered = h.create_paid_order("o_altered", "premium").await;
    h.sim.alter_bill_amount(&altered, 2900);
    let today = beijing_today();

    assert_eq!(h.order(&lost).await.status, OrderStatus::Pending);
    assert_eq!(h.refund_status(&refund_no).await, RefundStatus::Processing);
    let delivered_before = h.backend.deliveries_for(&altered);

    // A dry run reports and changes nothing.
    let (status, body) = h.call_trusted(reconcile(&today, true)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["dryRun"], true);
    assert_eq!(body["data"]["flagged"], 3);
    assert_eq!(h.order(&lost).await.status, OrderStatus::Pending);
    assert_eq!(h.refund_status(&refund_no).await, RefundStatus::Processing);
    assert_eq!(h.backend.deliveries_for(&lost), 0);
    assert!(h.store.get_reconciliation(&today).await.unwrap().is_none());

    let (status, body) = h.call_trusted(reconcile(&today, false)).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(d["status"], "discrepancies");
    assert_eq!(
        (d["repaired"].as_i64(), d["flagged"].as_i64()),
        (Some(2), Some(3))
    );
    assert_eq!(d["billRows"], 4, "three payments and one refund");
    assert_eq!(d["paymentTotal"], 2990 + 2990 + 2900);
    assert_eq!(d["refundTotal"], 1000);
    assert_eq!(
        kinds(d),
        vec![
            ("amount_mismatch".into(), altered.clone(), false, false),
            ("repaired_payment".into(), lost.clone(), true, false),
            ("synced_refund".into(), refunded.clone(), true, false),
        ]
    );
    // Repaired through the payment transition: paid, and the backend told exactly once.
    let order = h.order(&lost).await;
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(
        order.transaction_id,
        h.sim.order(&lost).unwrap().transaction_id
    );
    assert_eq!(h.backend.deliveries_for(&lost), 1);
    // Synced through the refund transition.
    assert_eq!(h.refund_status(&refund_no).await, RefundStatus::Success);
    assert_eq!(h.order(&refunded).await.refunded_amount, 1000);
    // Flagged, not changed.
    let order = h.order(&altered).await;
    assert_eq!((order.status, order.amount), (OrderStatus::Paid, 2990));
    assert_eq!(h.backend.deliveries_for(&altered), delivered_before);

    let stored = h.store.get_reconciliation(&today).await.unwrap().unwrap();
    assert_eq!((stored.repaired, stored.flagged), (2, 3));
    assert_eq!(h.store.reconciliation_items(&today).await.unwrap().len(), 3);

    // Every item, a page at a time, for a trusted caller.
    let page =
        |after: Value| json!({ "type": "wxpay_reconcile", "billDate": today, "itemsAfter": after });
    let (status, body) = h.call_trusted(page(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<&str> = body["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        ["amount_mismatch", "repaired_payment", "synced_refund"]
    );
    assert_eq!(body["data"]["next"], Value::Null, "one page holds them");
    let after = json!({ "kind": "repaired_payment", "outTradeNo": lost });
    let (_, body) = h.call_trusted(page(after)).await;
    assert_eq!(
        body["data"]["items"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    let (status, _) = h.call_as("o_user", page(json!({}))).await;
    assert_eq!(status, 403);

    // The same date again: no repair, no delivery, no new item.
    let (status, body) = h.call_trusted(reconcile(&today, false)).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(
        (d["repaired"].as_i64(), d["flagged"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        kinds(d),
        vec![("amount_mismatch".into(), altered.clone(), false, true)]
    );
    assert_eq!(h.backend.deliveries_for(&lost), 1);
    let items = h.store.reconciliation_items(&today).await.unwrap();
    assert_eq!(items.len(), 3);
    let stored = h.store.get_reconciliation(&today).await.unwrap().unwrap();
    assert_eq!((stored.repaired, stored.flagged), (2, 3));
}

async fn reconciliation_is_for_trusted_callers_and_says_when_a_bill_is_not_ready(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let today = beijing_today();
    let (status, _) = h.call_as("o_user", reconcile(&today, false)).await;
    assert_eq!(status, 403);
    let (status, _) = h.call(reconcile(&today, false)).await;
    assert_eq!(status, 403);

    // Today's bill is made tomorrow after 10:00 Beijing time.
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_reconcile", "billDate": today }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "not_ready");
    assert_eq!(h.sim.request_count("/v3/bill"), 0, "not asked before 10:00");
    // Asked anyway, WeChat Pay says it is still being made.
    let (_, body) = h.call_trusted(reconcile(&today, false)).await;
    assert_eq!(body["data"]["status"], "not_ready");
    assert!(body["data"]["message"]
        .as_str()
        .unwrap()
        .contains("STATEMENT_CREATING"));
    // A day with no transaction has no bill.
    h.sim.serve_bills_early(true);
    let three_days_ago = (OffsetDateTime::now_utc()
        .to_offset(UtcOffset::from_hms(8, 0, 0).unwrap())
        - Duration::days(3))
    .date()
    .to_string();
    let (_, body) = h.call_trusted(reconcile(&three_days_ago, false)).await;
    assert!(body["data"]["message"]
        .as_str()
        .unwrap()
        .contains("NO_STATEMENT_EXIST"));
    assert!(h
        .store
        .get_reconciliation(&three_days_ago)
        .await
        .unwrap()
        .is_none());

    // A schedule reconciles yesterday and the days before it still without a result.
    let tick = json!({
        "source": "aws.events",
        "detail-type": "Scheduled Event",
        "detail": { "type": "wxpay_reconcile" },
    });
    let answer = wxpay_shared::runtime::handle_raw_event(&h.env.app, tick).await;
    assert_eq!(answer["code"], 0, "{answer}");
    let runs = answer["data"]["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 3, "{answer}");
    assert!(runs.iter().all(|r| r["status"] == "not_ready"), "{answer}");

    // A mini-program's callFunction dressed as that schedule is a callFunction (no type).
    let mut dressed = json!({
        "source": "aws.events",
        "detail-type": "Scheduled Event",
        "detail": { "type": "wxpay_reconcile" },
    });
    dressed["userInfo"] = json!({ "appId": wxpay_sim::DEFAULT_APPID, "openId": "o_user" });
    let answer = wxpay_shared::runtime::handle_raw_event(&h.env.app, dressed).await;
    assert_ne!(answer["code"], 0, "{answer}");
    assert!(answer["data"]["runs"].is_null(), "{answer}");

    // The CloudBase timer calls over HTTP with the secret and asks for the same catch-up.
    let (status, body) = h
        .call_trusted(json!({ "type": "wxpay_reconcile", "catchUp": true }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["runs"].as_array().map(Vec::len), Some(3));

    for bad in [
        json!({ "type": "wxpay_reconcile", "billDate": "2024-13-01" }),
        json!({ "type": "wxpay_reconcile", "billDate": "2099-01-01" }),
        json!({ "type": "wxpay_reconcile", "dryrun": true }),
    ] {
        let (status, body) = h.call_trusted(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

async fn a_bill_whose_hash_does_not_match_changes_nothing(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    h.sim.serve_bills_early(true);
    let lost = h.create_order("o_lost", "premium").await;
    h.sim.mark_paid_silently(&lost).await.unwrap();
    h.sim.break_bill_hash(true);
    let today = beijing_today();
    let (status, body) = h.call_trusted(reconcile(&today, false)).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (502, Some(50220)),
        "{body}"
    );
    assert!(body["msg"].as_str().unwrap().contains("SHA1"), "{body}");
    assert_eq!(h.order(&lost).await.status, OrderStatus::Pending);
    assert_eq!(h.backend.deliveries_for(&lost), 0);
    assert!(h
        .store
        .reconciliation_items(&today)
        .await
        .unwrap()
        .is_empty());
}

async fn a_payment_the_bill_does_not_list_is_flagged(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    h.sim.serve_bills_early(true);
    let listed = h.create_paid_order("o_listed", "premium").await;
    let unlisted = h.create_paid_order("o_unlisted", "premium").await;
    h.sim.drop_from_bill(&unlisted);
    let today = beijing_today();
    let (status, body) = h.call_trusted(reconcile(&today, false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        kinds(&body["data"]),
        vec![("missing_from_bill".into(), unlisted.clone(), false, false)]
    );
    assert_eq!(body["data"]["payments"], 1);
    assert_eq!(h.order(&unlisted).await.status, OrderStatus::Paid);
    assert_eq!(h.order(&listed).await.status, OrderStatus::Paid);
}

// The bills below are the simulator's, in the layout of WeChat Pay's "交易账单详细说明"
// (https://pay.weixin.qq.com/docs/merchant/products/bill-download/format-trade.html): a
// REFUND row with 0.00 in 应结订单金额 and 订单金额, fees to five decimals (0.18000 for
// 29.90), a refund's fee negative, other apps' rows on the same merchant id.

async fn a_day_with_other_apps_and_json_in_attach_is_matched(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    h.sim.serve_bills_early(true);
    // JSON with commas in attach: WeChat Pay prints it as given, commas and all.
    let attach = r#"{"plan":"gold","seats":[1,2,3]}"#;
    let (status, body) = h
        .call_as(
            "o_json",
            json!({ "type": "wxpay_order", "packageType": "premium", "attach": attach }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let json_order = body["data"]["outTradeNo"].as_str().unwrap().to_string();
    h.sim.pay(&json_order).await.unwrap();
    // A refund whose result arrived as WeChat Pay notified it.
    let refunded = h.create_paid_order("o_refund", "premium").await;
    let refund_no = h.start_refund(&refunded, Some(1000)).await;
    h.sim
        .complete_refund(&refund_no, RefundOutcome::Success)
        .await
        .unwrap();
    assert_eq!(h.refund_status(&refund_no).await, RefundStatus::Success);
    // The merchant id's other app (and an old function's orders) in the same bill.
    h.sim
        .pay_in_other_app("wx0ther0app000001", "legacy_0001", 5000);
    h.sim
        .pay_in_other_app("wx0ther0app000001", "legacy_0002", 1200);

    let today = beijing_today();
    let file = String::from_utf8(h.sim.trade_bill_file(today.parse_date()).unwrap()).unwrap();
    assert!(file.contains(attach), "{file}");
    assert!(file.contains("`0.18000,"), "a fee of 29.90: {file}");
    assert!(file.contains("`-0.06000,"), "a refund's fee: {file}");
    assert!(file.contains("`REFUND,`OTHERS,`CNY,`0.00,`0.00,"), "{file}");

    let (status, body) = h.call_trusted(reconcile(&today, false)).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(d["status"], "matched", "{body}");
    assert_eq!(d["findings"], json!([]));
    assert_eq!(d["otherApps"], json!({ "count": 2, "amount": 6200 }));
    assert_eq!(
        (d["payments"].as_i64(), d["refunds"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(d["billRows"], 5);
    assert_eq!(d["refundTotal"], 1000);
    assert!(h
        .store
        .reconciliation_items(&today)
        .await
        .unwrap()
        .is_empty());
}

async fn a_refund_row_of_zero_order_amounts_with_a_coupon_is_synced(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    h.sim.serve_bills_early(true);
    let order = h.create_paid_order("o_coupon", "premium").await;
    let refund_no = h.start_refund(&order, Some(2000)).await;
    // 5.00 of it went back to a coupon: 退款金额 15.00, 申请退款金额 20.00.
    h.sim.refund_partly_to_coupon(&refund_no, 500);
    h.sim
        .complete_refund_silently(&refund_no, RefundOutcome::Success)
        .unwrap();
    let today = beijing_today();
    let file = String::from_utf8(h.sim.trade_bill_file(today.parse_date()).unwrap()).unwrap();
    let row = file.lines().find(|l| l.contains("`REFUND,")).unwrap();
    assert!(row.contains("`0.00,`0.00,"), "{row}");
    assert!(row.contains(&format!("`{refund_no},`15.00,")), "{row}");
    assert!(row.ends_with("`0.60%,`0.00,`20.00,`"), "{row}");

    let (status, body) = h.call_trusted(reconcile(&today, false)).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(
        kinds(d),
        vec![("synced_refund".into(), order.clone(), true, false)],
        "{body}"
    );
    assert!(d["findings"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("1500 fen settled"));
    assert_eq!(d["refundTotal"], 1500, "退款总金额 is what settled");
    assert_eq!(h.refund_status(&refund_no).await, RefundStatus::Success);
    assert_eq!(h.order(&order).await.refunded_amount, 2000, "what we asked");
}

async fn an_attach_with_a_backtick_is_refused_before_wechat_pay_is_asked(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    let (status, body) = h
        .call_as(
            "o_tick",
            json!({ "type": "wxpay_order", "packageType": "premium", "attach": "a,`SUCCESS" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("`attach`"), "{body}");
    assert_eq!(
        h.sim.request_count("/v3/pay"),
        0,
        "WeChat Pay was not asked"
    );
}

trait ParseDate {
    fn parse_date(&self) -> time::Date;
}

impl ParseDate for String {
    fn parse_date(&self) -> time::Date {
        time::Date::parse(
            self,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .unwrap()
    }
}

/// `wxpay_reconcile` for `bill_date` through the router, in an invocation whose deadline is
/// `within` from now.
async fn reconcile_within(h: &Harness, bill_date: &str, within: std::time::Duration) -> Value {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-internal-secret", common::SECRET.parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    let req = wxpay_shared::runtime::HttpRequest {
        method: http::Method::POST,
        path: "/pay".into(),
        headers,
        body: bytes::Bytes::from(reconcile(bill_date, false).to_string()),
        source_ip: None,
        transport: wxpay_shared::identity::Transport::Listener,
    };
    let deadline = tokio::time::Instant::now() + within;
    let resp = wxpay_shared::deadline::scope(
        deadline,
        wxpay_shared::runtime::handle_http(&h.env.app, req),
    )
    .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    serde_json::from_str(resp.body.as_deref().unwrap()).unwrap()
}

async fn a_day_cut_off_at_its_deadline_goes_on_from_its_checkpoint(kind: StoreKind) {
    let Some(h) = Harness::start(kind).await else {
        return;
    };
    h.sim.serve_bills_early(true);
    // Early in the bill: a payment we never heard of. Last in it: a refund completed
    // without telling us. Between them, more rows than one batch (the other app's).
    let lost = h.create_order("o_lost", "premium").await;
    h.sim.mark_paid_silently(&lost).await.unwrap();
    let refunded = h.create_paid_order("o_refund", "premium").await;
    let refund_no = h.start_refund(&refunded, Some(1000)).await;
    h.sim
        .complete_refund_silently(&refund_no, RefundOutcome::Success)
        .unwrap();
    for i in 0..1100 {
        h.sim
            .pay_in_other_app("wx0ther0app000001", &format!("legacy_{i:04}"), 100);
    }
    let today = beijing_today();

    // A deadline inside the 3 s the handler keeps back (plus the answer's margin): time to
    // stop is already there, so the call does its one batch and stops.
    let cut = std::time::Duration::from_millis(3_250);
    let body = reconcile_within(&h, &today, cut).await;
    let d = &body["data"];
    assert_eq!(d["status"], "in_progress", "{body}");
    assert_eq!(
        (d["rowsDone"].as_i64(), d["billRows"].as_i64()),
        (Some(500), Some(1103))
    );
    assert_eq!(
        h.order(&lost).await.status,
        OrderStatus::Paid,
        "repaired in the first call"
    );
    assert_eq!(h.backend.deliveries_for(&lost), 1);
    assert_eq!(h.refund_status(&refund_no).await, RefundStatus::Processing);
    assert!(h.store.get_reconciliation(&today).await.unwrap().is_none());

    // The next call goes on from line 501, not from the start.
    let body = reconcile_within(&h, &today, std::time::Duration::from_secs(30)).await;
    let d = &body["data"];
    assert_eq!(d["status"], "discrepancies", "{body}");
    assert!(d["rowsDone"].is_null(), "{body}");
    assert_eq!(d["otherApps"], json!({ "count": 1100, "amount": 110_000 }));
    assert_eq!(
        (d["payments"].as_i64(), d["refunds"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        (d["repaired"].as_i64(), d["flagged"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        kinds(d),
        vec![("synced_refund".into(), refunded.clone(), true, false)],
        "only what this call found is listed"
    );
    assert_eq!(d["findingsTotal"], 2);
    assert_eq!(h.refund_status(&refund_no).await, RefundStatus::Success);
    // Every repair once, every finding once.
    assert_eq!(h.backend.deliveries_for(&lost), 1);
    let items = h.store.reconciliation_items(&today).await.unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    let stored = h.store.get_reconciliation(&today).await.unwrap().unwrap();
    assert_eq!((stored.repaired, stored.flagged), (2, 2));
}
