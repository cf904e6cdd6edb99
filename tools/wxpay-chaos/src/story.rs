//! The orders' stories: each worker draws from its own seeded stream what happens to one
//! order after another: every trade type, payments with lost, duplicated, delayed and
//! reordered notifications, queries, closes, failed payments, and full and partial
//! refunds, retried concurrently under the same `outRefundNo`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wxpay_sim::RefundOutcome;

use crate::rng::Rng;
use crate::world::{Shared, World};

const TRADE_TYPES: &[&str] = &["JSAPI", "NATIVE", "H5", "APP"];

/// Runs stories until `stop`; `worker` picks the stream.
pub async fn worker(w: Shared, worker: u64, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let mut rng = Rng::fork(w.seed, (worker << 32) | n);
        one_order(&w, &mut rng, worker, n).await;
        n += 1;
    }
}

fn instance(w: &World, rng: &mut Rng) -> usize {
    rng.range(0, w.fleet.workers() as u64 - 1) as usize
}

async fn one_order(w: &Shared, rng: &mut Rng, worker: u64, n: u64) {
    let trade_type = *rng.pick(TRADE_TYPES);
    let amount = if rng.chance(30) {
        rng.range(1, 99) as i64
    } else {
        rng.range(100, 50_000) as i64
    };
    let mut body = json!({
        "type": "wxpay_order",
        "packageType": "basic",
        "tradeType": trade_type,
        "amount": amount,
        "description": "chaos campaign",
        "userId": format!("u{worker}-{n}"),
    });
    match trade_type {
        "JSAPI" => body["openid"] = json!(format!("o_chaos_{worker}_{n}")),
        "H5" => body["clientIp"] = json!("203.0.113.7"),
        _ => {}
    }
    w.counters.orders.fetch_add(1, Ordering::Relaxed);
    let i = instance(w, rng);
    let answer = w.call(i, None, body.clone()).await;
    let Some(no) = answer.body["data"]["outTradeNo"]
        .as_str()
        .map(str::to_string)
    else {
        // Not answered: WeChat Pay may still hold a prepay for it; the checks find it
        // through the simulator's ledger.
        return;
    };
    w.answered_orders
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(no.clone());
    w.note(
        &no,
        format!(
            "created {trade_type} {amount} fen on instance {}: {}",
            i + 1,
            answer.status
        ),
    );

    let fate = rng.range(0, 99);
    if fate < 10 {
        return; // left unpaid
    }
    if fate < 20 {
        let i = instance(w, rng);
        w.counters.closes.fetch_add(1, Ordering::Relaxed);
        let close = w.call(
            i,
            Some(&no),
            json!({"type": "wxpay_close_order", "outTradeNo": no}),
        );
        if rng.chance(25) {
            // The payer pays while the close is on its way: whichever WeChat Pay takes
            // first wins, and the store must follow WeChat Pay.
            let mut payer = Rng::fork(w.seed, rng.next());
            tokio::join!(close, pay(w, &mut payer, &no));
        } else {
            close.await;
        }
        return;
    }
    if fate < 25 {
        let r = w.sim.fail_payment(&no);
        w.note(&no, format!("payment failed at WeChat Pay: {}", r.is_ok()));
        return;
    }
    pay(w, rng, &no).await;
    if rng.chance(40) {
        let i = instance(w, rng);
        w.counters.queries.fetch_add(1, Ordering::Relaxed);
        w.call(
            i,
            Some(&no),
            json!({"type": "wxpay_query_order_by_out_trade_no", "outTradeNo": no}),
        )
        .await;
    }
    if rng.chance(55) {
        refunds(w, rng, &no, amount).await;
    }
}

/// The payer pays; the notification is sent (and retried), lost, or duplicated and
/// delayed to other instances.
async fn pay(w: &Shared, rng: &mut Rng, no: &str) {
    let paid = w
        .sim
        .order(no)
        .is_some_and(|o| o.trade_state == "SUCCESS" || o.trade_state == "REFUND");
    if paid {
        w.note(
            no,
            "already paid at WeChat Pay (its notification came early)",
        );
        return;
    }
    w.counters.payments.fetch_add(1, Ordering::Relaxed);
    if rng.chance(15) {
        let r = w.sim.mark_paid_silently(no).await;
        w.note(
            no,
            format!("paid at WeChat Pay, notification lost: {:?}", r.is_ok()),
        );
        return;
    }
    let r = w.sim.pay(no).await;
    w.note(
        no,
        format!(
            "paid at WeChat Pay; first notification: {}",
            match &r {
                Ok(o) => format!("answered {}", o.status),
                Err(e) => format!("{e}"),
            }
        ),
    );
    if rng.chance(30) {
        // Duplicates, to other instances, some late.
        let copies = rng.range(1, 3);
        for _ in 0..copies {
            let (w2, no2) = (w.clone(), no.to_string());
            let i = instance(w, rng);
            let delay = Duration::from_millis(rng.range(0, 3000));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Some(n) = w2.sim.build_transaction_notification(&no2) {
                    w2.notify(i, &no2, &n).await;
                }
            });
        }
    }
}

async fn refunds(w: &Shared, rng: &mut Rng, no: &str, paid: i64) {
    let count = rng.range(1, 3);
    let mut left = paid;
    for k in 0..count {
        if left <= 0 {
            break;
        }
        let full = k == count - 1 && rng.chance(40);
        let amount = if full {
            None
        } else {
            Some(rng.range(1, left as u64) as i64)
        };
        let out_refund_no = format!("RFC{}{:x}", w.seed % 100_000, rng.next() & 0xffff_ffff_ffff);
        w.refunds_asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((no.to_string(), out_refund_no.clone(), amount));
        let mut body = json!({
            "type": "wxpay_refund",
            "outTradeNo": no,
            "outRefundNo": out_refund_no,
            "reason": "chaos",
        });
        if let Some(a) = amount {
            body["amount"] = json!(a);
        }
        // The same refund asked of several instances at once, as an impatient client does.
        let tries = rng.range(1, 3);
        let mut calls = Vec::new();
        for _ in 0..tries {
            let (w2, no2, b) = (w.clone(), no.to_string(), body.clone());
            let i = instance(w, rng);
            w.counters.refunds.fetch_add(1, Ordering::Relaxed);
            calls.push(tokio::spawn(async move { w2.call(i, Some(&no2), b).await }));
        }
        let mut accepted = false;
        for c in calls {
            if let Ok(a) = c.await {
                accepted |= a.ok();
            }
        }
        if !accepted && rng.chance(60) {
            // A retry with the same number resolves a refund left in doubt.
            tokio::time::sleep(Duration::from_millis(rng.range(100, 1500))).await;
            let i = instance(w, rng);
            w.counters.refunds.fetch_add(1, Ordering::Relaxed);
            accepted = w.call(i, Some(no), body.clone()).await.ok();
        }
        let Some(r) = w.sim.refund(&out_refund_no) else {
            continue;
        };
        left -= r.amount_refund;
        if accepted || rng.chance(50) {
            finish_refund(w, rng, no, &out_refund_no).await;
        }
    }
}

/// WeChat Pay ends the refund: mostly success, sometimes abnormal or closed, sometimes
/// without a notification, sometimes with a copy delivered late to another instance.
async fn finish_refund(w: &Shared, rng: &mut Rng, no: &str, out_refund_no: &str) {
    let roll = rng.range(0, 99);
    let outcome = match roll {
        0..=79 => RefundOutcome::Success,
        80..=89 => RefundOutcome::Abnormal,
        _ => RefundOutcome::Closed,
    };
    if roll < 10 {
        // Only a success may go unnotified: the day's reconciliation finds it.
        let r = w
            .sim
            .complete_refund_silently(out_refund_no, RefundOutcome::Success);
        w.note(
            no,
            format!(
                "refund {out_refund_no} SUCCESS at WeChat Pay, notification lost: {}",
                r.is_ok()
            ),
        );
        return;
    }
    if roll > 95 {
        w.note(
            no,
            format!("refund {out_refund_no} left PROCESSING at WeChat Pay"),
        );
        return;
    }
    let r = w.sim.complete_refund(out_refund_no, outcome).await;
    w.note(
        no,
        format!(
            "refund {out_refund_no} {outcome:?} at WeChat Pay; notification: {}",
            match &r {
                Ok(o) => format!("answered {}", o.status),
                Err(e) => format!("{e}"),
            }
        ),
    );
    if rng.chance(25) {
        let (w2, no2, rno) = (w.clone(), no.to_string(), out_refund_no.to_string());
        let i = instance(w, rng);
        let delay = Duration::from_millis(rng.range(200, 4000));
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(n) = w2.sim.build_refund_notification(&rno) {
                w2.notify(i, &no2, &n).await;
            }
        });
    }
}

/// Pays orders WeChat Pay has prepaid but whose answer the harness has not seen yet: a
/// payment notification arriving before the prepay answer (armed by the fault schedule
/// together with a held prepay answer).
pub async fn early_payer(w: Shared, armed: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let mut armed_since: Option<std::time::Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !armed.load(Ordering::SeqCst) {
            armed_since = None;
            continue;
        }
        // The held answer may have been a query's: give up after a few seconds.
        if armed_since
            .get_or_insert_with(std::time::Instant::now)
            .elapsed()
            > Duration::from_secs(3)
        {
            armed.store(false, Ordering::SeqCst);
            continue;
        }
        let answered = w
            .answered_orders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let recent = time::OffsetDateTime::now_utc() - time::Duration::seconds(3);
        let early = w.sim.orders().into_iter().find(|o| {
            o.trade_state == "NOTPAY"
                && !answered.contains(&o.out_trade_no)
                && wxpay_sim::crypto::parse_time(&o.create_time).is_some_and(|t| t >= recent)
        });
        if let Some(o) = early {
            armed.store(false, Ordering::SeqCst);
            let r = w.sim.pay(&o.out_trade_no).await;
            w.note(
                &o.out_trade_no,
                format!(
                    "paid before its prepay answer reached the caller; notification: {}",
                    match &r {
                        Ok(a) => format!("answered {}", a.status),
                        Err(e) => format!("{e}"),
                    }
                ),
            );
        }
    }
}
