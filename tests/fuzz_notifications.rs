//! Property tests of the notification parsers — headers, envelope, decrypted resource — on
//! each store: nothing panics, every answer is 204 or a FAIL body (never a 500 WeChat Pay
//! would retry forever), and only a genuine payment that matches its order in every field
//! changes the order; only a genuine refund that matches changes what was refunded.

mod common;
mod props;

use common::{Harness, StoreKind};
use proptest::prelude::*;
use serde_json::{json, Value};
use wxpay_shared::store::{OrderStatus, RefundStatus};
use wxpay_sim::{NotificationEvent, SignedNotification};

const SIGNATURE_CASES: u32 = 150;
const TRANSACTION_CASES: u32 = 120;
const REFUND_CASES: u32 = 80;

both_stores!(
    a_tampered_signature_or_envelope_changes_nothing,
    only_a_matching_payment_pays_the_order,
    only_a_matching_refund_changes_what_was_refunded,
);

fn run(
    kind: StoreKind,
    property: impl FnOnce(&tokio::runtime::Runtime, &Harness) + Send + 'static,
) {
    // The harness needs a runtime of its own: proptest calls the property synchronously.
    std::thread::spawn(move || {
        let rt = props::runtime();
        if let Some(h) = rt.block_on(Harness::start(kind)) {
            property(&rt, &h);
        }
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn genuine_transaction(h: &Harness, out_trade_no: &str, total: i64) -> Value {
    let c = h.sim.config();
    json!({
        "mchid": c.mchid, "appid": c.appid, "out_trade_no": out_trade_no,
        "transaction_id": "4200000000202612020000000001", "trade_type": "JSAPI",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
        "success_time": "2026-12-02T10:00:00+08:00", "payer": { "openid": "o_fuzz" },
        "amount": { "total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY" }
    })
}

fn transaction_notification(h: &Harness, plaintext: Value) -> SignedNotification {
    h.sim.notification(NotificationEvent {
        event_type: "TRANSACTION.SUCCESS".into(),
        original_type: "transaction".into(),
        plaintext,
    })
}

async fn deliver(h: &Harness, n: &SignedNotification) -> (u16, String) {
    let outcome = h.sim.deliver(n, &h.pay_url()).await.expect("delivered");
    (outcome.status, outcome.body)
}

/// One change to a genuine notification on the wire.
#[derive(Debug, Clone)]
enum Tamper {
    Header(&'static str, String),
    Drop(&'static str),
    /// A new body; `true` re-signs it with the platform key (a valid signature over junk).
    Body(String, bool),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    let header = prop::sample::select(vec![
        "Wechatpay-Timestamp",
        "Wechatpay-Nonce",
        "Wechatpay-Serial",
        "Wechatpay-Signature",
    ]);
    let body = prop_oneof![
        props::json_value().prop_map(|v| v.to_string()),
        "\\PC{0,200}",
        props::json_value().prop_map(|v| {
            json!({ "id": "EV-1", "event_type": "TRANSACTION.SUCCESS", "resource": v }).to_string()
        }),
    ];
    prop_oneof![
        (header.clone(), "[ -~]{0,80}").prop_map(|(h, v)| Tamper::Header(h, v)),
        header.prop_map(Tamper::Drop),
        (body, any::<bool>()).prop_map(|(b, resign)| Tamper::Body(b, resign)),
    ]
}

async fn a_tampered_signature_or_envelope_changes_nothing(kind: StoreKind) {
    run(kind, |rt, h| {
        let no = rt.block_on(h.create_order("o_fuzz", "premium"));
        let genuine = transaction_notification(h, genuine_transaction(h, &no, 2990));
        let strategy = prop::collection::vec(tamper(), 1..4);
        props::runner(SIGNATURE_CASES)
            .run(&strategy, |tampers| {
                let mut n = genuine.clone();
                for t in tampers {
                    n = match t {
                        Tamper::Header(name, value) => n.with_header(name, value),
                        Tamper::Drop(name) => n.without_header(name),
                        Tamper::Body(body, false) => n.with_body(body),
                        Tamper::Body(body, true) => {
                            let mut n = n.with_body(body);
                            n.resign();
                            n
                        }
                    };
                }
                let (status, body) = rt.block_on(deliver(h, &n));
                // Without its signature header it is not a notification but a call.
                let body = (!body.is_empty()).then_some(body.as_str());
                props::check_any_answer(status, body)?;
                prop_assert!(status != 204, "a tampered notification was handled");
                let order = rt.block_on(h.order(&no));
                prop_assert_eq!(order.status, OrderStatus::Pending, "answered {}", status);
                Ok(())
            })
            .unwrap();
    });
}

/// How one field of a genuine resource is presented.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Genuine,
    Missing,
    OtherCase,
    TrailingSpace,
    Unknown,
    Huge,
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        1 => Just(Field::Genuine),
        1 => Just(Field::Missing),
        2 => Just(Field::OtherCase),
        2 => Just(Field::TrailingSpace),
        1 => Just(Field::Unknown),
        1 => Just(Field::Huge),
    ]
}

fn present(value: &str, how: Field, unknown: &str) -> Option<Value> {
    match how {
        Field::Genuine => Some(json!(value)),
        Field::Missing => None,
        Field::OtherCase => Some(json!(swap_case(value))),
        Field::TrailingSpace => Some(json!(format!("{value} "))),
        Field::Unknown => Some(json!(unknown)),
        Field::Huge => Some(json!("9".repeat(5000))),
    }
}

/// Every letter in the other case; a string with no letters gains one.
fn swap_case(s: &str) -> String {
    let swapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    if swapped == s {
        format!("{s}a")
    } else {
        swapped
    }
}

#[derive(Debug, Clone)]
struct TransactionCase {
    mchid: Field,
    appid: Field,
    out_trade_no: Field,
    transaction_id: Field,
    /// The genuine total plus this (0 is genuine).
    total_delta: i64,
    trade_state: &'static str,
}

/// One way a resource departs from the genuine one.
#[derive(Debug, Clone)]
enum Deviation {
    Mchid(Field),
    Appid(Field),
    OutTradeNo(Field),
    TransactionId(Field),
    Total(i64),
    State(&'static str),
}

fn deviation() -> impl Strategy<Value = Deviation> {
    let delta = prop::sample::select(vec![1i64, -1, -3000, 1_000_000_000_000_000]);
    let state = prop::sample::select(vec!["NOTPAY", "REFUND", "success", "PAYERROR"]);
    prop_oneof![
        1 => field().prop_map(Deviation::Mchid),
        1 => field().prop_map(Deviation::Appid),
        3 => field().prop_map(Deviation::OutTradeNo),
        1 => field().prop_map(Deviation::TransactionId),
        1 => delta.prop_map(Deviation::Total),
        1 => state.prop_map(Deviation::State),
    ]
}

/// Mostly one departure at a time (the telling cases), sometimes none, sometimes two.
fn transaction_case() -> impl Strategy<Value = TransactionCase> {
    prop::collection::vec(deviation(), 0..3).prop_map(|deviations| {
        let mut case = TransactionCase {
            mchid: Field::Genuine,
            appid: Field::Genuine,
            out_trade_no: Field::Genuine,
            transaction_id: Field::Genuine,
            total_delta: 0,
            trade_state: "SUCCESS",
        };
        for d in deviations {
            match d {
                Deviation::Mchid(f) => case.mchid = f,
                Deviation::Appid(f) => case.appid = f,
                Deviation::OutTradeNo(f) => case.out_trade_no = f,
                Deviation::TransactionId(f) => case.transaction_id = f,
                Deviation::Total(d) => case.total_delta = d,
                Deviation::State(s) => case.trade_state = s,
            }
        }
        case
    })
}

impl TransactionCase {
    fn genuine(&self) -> bool {
        self.mchid == Field::Genuine
            && self.appid == Field::Genuine
            && self.out_trade_no == Field::Genuine
            // Any transaction_id of the documented format is as good as another.
            && matches!(self.transaction_id, Field::Genuine | Field::OtherCase | Field::Unknown)
            && self.total_delta == 0
            // A refunded transaction was paid first.
            && self.money_moved()
    }

    fn money_moved(&self) -> bool {
        matches!(self.trade_state, "SUCCESS" | "REFUND")
    }
}

async fn only_a_matching_payment_pays_the_order(kind: StoreKind) {
    run(kind, |rt, h| {
        props::runner(TRANSACTION_CASES)
            .run(&transaction_case(), |case| {
                let no = rt.block_on(h.create_order("o_fuzz", "premium"));
                let c = h.sim.config();
                let mut plain = genuine_transaction(h, &no, 2990 + case.total_delta);
                let fields = [
                    ("mchid", present(&c.mchid, case.mchid, "1900000999")),
                    ("appid", present(&c.appid, case.appid, "wx0000000000000000")),
                    (
                        "out_trade_no",
                        present(&no, case.out_trade_no, "WX20261202000000NotAnOrder000000"),
                    ),
                    (
                        "transaction_id",
                        present(
                            "4200000000202612020000000001",
                            case.transaction_id,
                            "4200000000202612029999999999",
                        ),
                    ),
                ];
                for (name, value) in fields {
                    match value {
                        Some(v) => plain[name] = v,
                        None => {
                            plain.as_object_mut().unwrap().remove(name);
                        }
                    }
                }
                plain["trade_state"] = json!(case.trade_state);
                let (status, body) = rt.block_on(deliver(h, &transaction_notification(h, plain)));
                props::check_notify_answer(status, &body)?;
                let order = rt.block_on(h.order(&no));
                let paid = matches!(order.status, OrderStatus::Paid | OrderStatus::Refunded);
                prop_assert_eq!(paid, case.genuine(), "answered {} {}", status, body);
                if paid {
                    // A payment already refunded at WeChat Pay is recorded refunded.
                    prop_assert_eq!(
                        order.status == OrderStatus::Refunded,
                        case.trade_state == "REFUND"
                    );
                }
                if case.money_moved() {
                    prop_assert_eq!(status == 204, paid, "{}", body);
                }
                Ok(())
            })
            .unwrap();
    });
}

/// A refund resource's departures from the genuine `REFUND.SUCCESS` of a 100-fen refund.
#[derive(Debug, Clone)]
struct RefundCase {
    mchid: Field,
    out_trade_no: Field,
    transaction_id: Field,
    out_refund_no: Field,
    /// `amount.refund` is 100 plus this.
    refund_delta: i64,
    /// `amount.total` is the paid 2,990 plus this.
    total_delta: i64,
    refund_status: &'static str,
}

#[derive(Debug, Clone)]
enum RefundDeviation {
    Mchid(Field),
    OutTradeNo(Field),
    TransactionId(Field),
    OutRefundNo(Field),
    Refund(i64),
    Total(i64),
    Status(&'static str),
}

fn refund_case() -> impl Strategy<Value = RefundCase> {
    let refund = prop::sample::select(vec![
        1i64,
        -1,
        -101,
        -100_100,
        2890,
        2891,
        1_000_000_000_000_000,
    ]);
    let total = prop::sample::select(vec![1i64, -1, -2990]);
    let status = prop::sample::select(vec!["CLOSED", "ABNORMAL", "PROCESSING", "success"]);
    let deviation = prop_oneof![
        1 => field().prop_map(RefundDeviation::Mchid),
        2 => field().prop_map(RefundDeviation::OutTradeNo),
        1 => field().prop_map(RefundDeviation::TransactionId),
        2 => field().prop_map(RefundDeviation::OutRefundNo),
        2 => refund.prop_map(RefundDeviation::Refund),
        1 => total.prop_map(RefundDeviation::Total),
        1 => status.prop_map(RefundDeviation::Status),
    ];
    prop::collection::vec(deviation, 0..3).prop_map(|deviations| {
        let mut case = RefundCase {
            mchid: Field::Genuine,
            out_trade_no: Field::Genuine,
            transaction_id: Field::Genuine,
            out_refund_no: Field::Genuine,
            refund_delta: 0,
            total_delta: 0,
            refund_status: "SUCCESS",
        };
        for d in deviations {
            match d {
                RefundDeviation::Mchid(f) => case.mchid = f,
                RefundDeviation::OutTradeNo(f) => case.out_trade_no = f,
                RefundDeviation::TransactionId(f) => case.transaction_id = f,
                RefundDeviation::OutRefundNo(f) => case.out_refund_no = f,
                RefundDeviation::Refund(d) => case.refund_delta = d,
                RefundDeviation::Total(d) => case.total_delta = d,
                RefundDeviation::Status(s) => case.refund_status = s,
            }
        }
        case
    })
}

impl RefundCase {
    /// What the order's `refunded_amount` must be after the notification: the refund we
    /// hold when everything matches it; a refund we do not hold (another number, made in
    /// the merchant portal) when it fits beside the 100 fen still in flight; else nothing.
    fn refunded(&self) -> i64 {
        let amount = 100 + self.refund_delta;
        let order_matches = self.mchid == Field::Genuine
            && self.out_trade_no == Field::Genuine
            && self.transaction_id == Field::Genuine
            && self.total_delta == 0
            && self.refund_status == "SUCCESS";
        if !order_matches {
            return 0;
        }
        match self.out_refund_no {
            Field::Genuine if self.refund_delta == 0 => 100,
            // Byte for byte, another case is another refund number.
            Field::Unknown | Field::OtherCase if (1..=2890).contains(&amount) => amount,
            _ => 0,
        }
    }
}

async fn only_a_matching_refund_changes_what_was_refunded(kind: StoreKind) {
    run(kind, |rt, h| {
        props::runner(REFUND_CASES)
            .run(&refund_case(), |case| {
                let no = rt.block_on(h.create_paid_order("o_fuzz", "premium"));
                let refund_no = rt.block_on(h.start_refund(&no, Some(100)));
                let sim_order = h.sim.order(&no).expect("paid at the simulator");
                let transaction_id = sim_order.transaction_id.clone().unwrap_or_default();
                let c = h.sim.config();
                let unknown_refund = format!("PORTAL{}", &no[no.len() - 20..]);
                let amount = 100 + case.refund_delta;
                let mut plain = json!({
                    "refund_id": "50300000002026120200000000001",
                    "refund_status": case.refund_status,
                    "success_time": "2026-12-02T12:00:00+08:00",
                    "user_received_account": "支付用户零钱",
                    "amount": {
                        "total": 2990 + case.total_delta, "refund": amount,
                        "payer_total": 2990, "payer_refund": amount
                    }
                });
                let fields = [
                    ("mchid", present(&c.mchid, case.mchid, "1900000999")),
                    (
                        "out_trade_no",
                        present(&no, case.out_trade_no, "WX20261202000000NotAnOrder000000"),
                    ),
                    (
                        "transaction_id",
                        present(
                            &transaction_id,
                            case.transaction_id,
                            "4200000000202612029999999999",
                        ),
                    ),
                    (
                        "out_refund_no",
                        present(&refund_no, case.out_refund_no, &unknown_refund),
                    ),
                ];
                for (name, value) in fields {
                    if let Some(v) = value {
                        plain[name] = v;
                    }
                }
                let n = h.sim.notification(NotificationEvent {
                    event_type: "REFUND.SUCCESS".into(),
                    original_type: "refund".into(),
                    plaintext: plain,
                });
                let (status, body) = rt.block_on(deliver(h, &n));
                props::check_notify_answer(status, &body)?;
                let order = rt.block_on(h.order(&no));
                prop_assert_eq!(
                    order.refunded_amount,
                    case.refunded(),
                    "answered {} {}",
                    status,
                    body
                );
                let held = rt
                    .block_on(h.store.get_refund(&refund_no))
                    .unwrap()
                    .unwrap();
                prop_assert_eq!(held.amount, 100, "the refund we hold keeps its amount");
                if case.refunded() == 0 && case.refund_status == "SUCCESS" {
                    prop_assert!(
                        status >= 400,
                        "a refund that changed nothing was acknowledged: {}",
                        body
                    );
                    prop_assert_eq!(held.status, RefundStatus::Processing);
                }
                Ok(())
            })
            .unwrap();
    });
}
