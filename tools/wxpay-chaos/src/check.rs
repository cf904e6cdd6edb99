//! The invariants, checked at the end against WeChat Pay's own ledger (the simulator's)
//! and the store's rows, and the story of every order that breaks one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use crate::store::{num, text, Store};
use crate::world::{clip, World, GRACE, SECRET};

#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: u8,
    pub about: String,
    pub detail: String,
}

struct StoreOrder {
    status: String,
    amount: i64,
    refunded: i64,
    reserved: i64,
}

struct StoreRefund {
    out_trade_no: String,
    amount: i64,
    status: String,
}

pub async fn check(w: &World, store: &Store, secrets: &[String]) -> Result<Vec<Violation>, String> {
    let mut v = Vec::new();
    let mut flag = |invariant: u8, about: &str, detail: String| {
        v.push(Violation {
            invariant,
            about: about.to_string(),
            detail,
        })
    };
    let orders: HashMap<String, StoreOrder> = store
        .rows(
            "SELECT CAST(out_trade_no AS {T}), status, CAST(amount AS {T}), \
             CAST(COALESCE(refunded_amount, 0) AS {T}), CAST(COALESCE(refund_reserved, 0) AS {T}) \
             FROM orders",
        )
        .await?
        .iter()
        .map(|r| {
            (
                text(&r[0]),
                StoreOrder {
                    status: text(&r[1]),
                    amount: num(&r[2]),
                    refunded: num(&r[3]),
                    reserved: num(&r[4]),
                },
            )
        })
        .collect();
    let refunds: HashMap<String, StoreRefund> = store
        .rows("SELECT CAST(out_refund_no AS {T}), CAST(out_trade_no AS {T}), CAST(amount AS {T}), status FROM refunds")
        .await?
        .iter()
        .map(|r| {
            (text(&r[0]), StoreRefund { out_trade_no: text(&r[1]), amount: num(&r[2]), status: text(&r[3]) })
        })
        .collect();
    let payment_logs: HashMap<String, i64> = store
        .rows(
            "SELECT CAST(out_trade_no AS {T}), CAST(COUNT(*) AS {T}) FROM payment_logs \
             WHERE event_type = 'TRANSACTION.SUCCESS' AND amount_total IS NOT NULL GROUP BY out_trade_no",
        )
        .await?
        .iter()
        .map(|r| (text(&r[0]), num(&r[1])))
        .collect();
    let sim_orders: BTreeMap<String, wxpay_sim::SimOrder> = w
        .sim
        .orders()
        .into_iter()
        .map(|o| (o.out_trade_no.clone(), o))
        .collect();
    let sim_refunds = w.sim.refunds();
    // Payment deliveries only: other events (refunds) may share the endpoint.
    let mut heard: HashMap<String, Vec<Value>> = HashMap::new();
    for d in w.backend.deliveries() {
        let event = d.payload["event"].as_str().unwrap_or("payment");
        if event != "payment" {
            continue;
        }
        if let Some(no) = d.payload["outTradeNo"].as_str() {
            heard
                .entry(no.to_string())
                .or_default()
                .push(d.payload.clone());
        }
    }

    println!(
        "  checked: {} orders in the store ({} paid), {} refunds, {} payment deliveries heard, {} calls timed",
        orders.len(),
        orders.values().filter(|o| matches!(o.status.as_str(), "paid" | "refunded")).count(),
        refunds.len(),
        heard.values().map(Vec::len).sum::<usize>(),
        w.calls.lock().unwrap_or_else(|e| e.into_inner()).len(),
    );

    // 1. Paid at WeChat Pay <=> paid in the store.
    for (no, o) in &sim_orders {
        let paid_there = o.trade_state == "SUCCESS" || o.trade_state == "REFUND";
        let here = orders.get(no).map(|s| s.status.as_str());
        let paid_here = matches!(here, Some("paid" | "refunded"));
        if paid_there != paid_here {
            flag(
                1,
                no,
                format!("WeChat Pay shows {}, the store {:?}", o.trade_state, here),
            );
        }
    }
    for (no, o) in &orders {
        if !sim_orders.contains_key(no) && matches!(o.status.as_str(), "paid" | "refunded") {
            flag(
                1,
                no,
                format!("paid in the store ({}) but unknown to WeChat Pay", o.status),
            );
        }
    }

    // 2. One payment log row; the backend heard the payment, always with its amount.
    for (no, o) in &orders {
        let paid_here = matches!(o.status.as_str(), "paid" | "refunded");
        let logs = payment_logs.get(no).copied().unwrap_or(0);
        if paid_here && logs != 1 {
            flag(2, no, format!("{logs} payment log rows for a paid order"));
        }
        let got = heard.get(no).map(Vec::as_slice).unwrap_or(&[]);
        if paid_here && got.is_empty() {
            flag(2, no, "paid, but the backend never heard of it".into());
        }
        if !paid_here && !got.is_empty() {
            flag(
                2,
                no,
                format!(
                    "the backend heard a payment of an order that is {}",
                    o.status
                ),
            );
        }
        for d in got {
            if d["amount"].as_i64() != Some(o.amount) {
                flag(
                    2,
                    no,
                    format!(
                        "the backend heard amount {} for an order of {}",
                        d["amount"], o.amount
                    ),
                );
            }
        }
    }

    // 3. Refunds: WeChat Pay's accepted refunds are the store's, never more than paid, and
    // never one we did not ask for.
    let asked: BTreeSet<String> = w
        .refunds_asked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|r| r.1.clone())
        .collect();
    let mut sim_by_order: BTreeMap<String, i64> = BTreeMap::new();
    for r in &sim_refunds {
        if !asked.contains(&r.out_refund_no) {
            flag(
                3,
                &r.out_trade_no,
                format!(
                    "WeChat Pay holds refund {} nobody asked for",
                    r.out_refund_no
                ),
            );
        }
        if r.status != "CLOSED" {
            *sim_by_order.entry(r.out_trade_no.clone()).or_default() += r.amount_refund;
        }
        let want = r.status.to_ascii_lowercase();
        match refunds.get(&r.out_refund_no) {
            None => flag(
                3,
                &r.out_trade_no,
                format!(
                    "refund {} ({}) accepted by WeChat Pay is not in the store",
                    r.out_refund_no, r.status
                ),
            ),
            Some(s)
                if s.status != want
                    || s.amount != r.amount_refund
                    || s.out_trade_no != r.out_trade_no =>
            {
                flag(
                    3,
                    &r.out_trade_no,
                    format!(
                        "refund {}: WeChat Pay {} {} fen, the store {} {} fen",
                        r.out_refund_no, r.status, r.amount_refund, s.status, s.amount
                    ),
                )
            }
            Some(_) => {}
        }
    }
    for (no, total) in &sim_by_order {
        let paid = sim_orders.get(no).map_or(0, |o| o.amount_total);
        if *total > paid {
            flag(
                3,
                no,
                format!("WeChat Pay refunded {total} fen of {paid} paid"),
            );
        }
    }
    let known: BTreeSet<&str> = sim_refunds
        .iter()
        .map(|r| r.out_refund_no.as_str())
        .collect();
    let mut books: HashMap<&str, (i64, i64)> = HashMap::new();
    for (rno, s) in &refunds {
        if s.status != "failed" && !known.contains(rno.as_str()) {
            flag(
                3,
                &s.out_trade_no,
                format!(
                    "the store shows refund {rno} {} but WeChat Pay never accepted it",
                    s.status
                ),
            );
        }
        let e = books.entry(s.out_trade_no.as_str()).or_default();
        match s.status.as_str() {
            "success" => e.0 += s.amount,
            "processing" | "abnormal" => e.1 += s.amount,
            _ => {}
        }
    }
    for (no, o) in &orders {
        let (succeeded, in_flight) = books.get(no.as_str()).copied().unwrap_or_default();
        if o.refunded != succeeded || o.reserved != in_flight {
            flag(
                3,
                no,
                format!(
                    "order row says refunded {} reserved {}, its refunds {} succeeded and {} in flight",
                    o.refunded, o.reserved, succeeded, in_flight
                ),
            );
        }
    }

    // 4. The outbox drained, no lease held.
    for r in store
        .rows(
            "SELECT CAST(out_trade_no AS {T}), status, CAST(attempts AS {T}), CAST(locked_until AS {T}), last_error \
             FROM notify_outbox WHERE status <> 'delivered' OR locked_until IS NOT NULL",
        )
        .await?
    {
        flag(4, &text(&r[0]), format!("outbox row {} after {} attempts, lease {:?}, last error {:?}", text(&r[1]), text(&r[2]), r[3], r[4]));
    }

    // 5. Every call answered before its deadline plus 200 ms.
    let calls = w.calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let slowest = calls
        .iter()
        .filter(|c| !c.interrupted)
        .max_by_key(|c| c.elapsed);
    if let Some(c) = slowest {
        println!(
            "  slowest call not cut by the harness: {} in {} ms (deadline {} ms); {} calls cut by a kill or freeze",
            c.what,
            c.elapsed.as_millis(),
            c.limit.as_millis(),
            calls.iter().filter(|c| c.interrupted).count()
        );
    }
    for inst in &w.fleet.instances {
        for crash in inst
            .crashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            flag(5, "-", crash.clone());
        }
    }
    for c in &calls {
        if c.interrupted {
            continue;
        }
        if c.status == 0 || c.elapsed > c.limit + GRACE {
            flag(
                5,
                c.about.as_deref().unwrap_or("-"),
                format!(
                    "{} on instance {} answered {} after {} ms (deadline {} ms){}",
                    c.what,
                    c.instance + 1,
                    c.status,
                    c.elapsed.as_millis(),
                    c.limit.as_millis(),
                    c.failure
                        .as_deref()
                        .map(|f| format!(": {}", clip(f, 200)))
                        .unwrap_or_default()
                ),
            );
        }
    }

    // 6. No log line holds a secret.
    for inst in &w.fleet.instances {
        let log = std::fs::read_to_string(&inst.log).unwrap_or_default();
        for (n, line) in log.lines().enumerate() {
            if let Some(s) = secrets.iter().find(|s| line.contains(s.as_str())) {
                flag(
                    6,
                    "-",
                    format!(
                        "{}:{}: holds a secret ({}…): {}",
                        inst.log.display(),
                        n + 1,
                        &s[..4],
                        clip(line, 200)
                    ),
                );
            }
        }
    }
    Ok(v)
}

/// The secrets no log may show: the APIv3 key, the internal secret, the merchant key.
pub fn secrets(apiv3_key: &str, private_key_pem: &str) -> Vec<String> {
    let mut s = vec![
        apiv3_key.to_string(),
        SECRET.to_string(),
        "BEGIN PRIVATE KEY".to_string(),
    ];
    s.extend(
        private_key_pem
            .lines()
            .filter(|l| l.len() >= 40 && !l.starts_with("-----"))
            .map(|l| l[..40].to_string()),
    );
    s
}

/// Everything known about one order: the harness's requests and answers, WeChat Pay's
/// ledger, the store's rows, the backend's deliveries and the instances' log lines.
pub async fn story(w: &World, store: &Store, no: &str) -> String {
    let mut out = vec![format!("---- the story of {no}")];
    out.extend(w.story(no).into_iter().map(|l| format!("  harness {l}")));
    out.push(format!("  WeChat Pay order: {}", json!(w.sim.order(no))));
    for r in w.sim.refunds().iter().filter(|r| r.out_trade_no == no) {
        out.push(format!("  WeChat Pay refund: {}", json!(r)));
    }
    for d in w.sim.notification_deliveries_for(no) {
        out.push(format!(
            "  WeChat Pay notification {} {:?}, {} attempt(s)",
            d.event_type,
            d.state,
            d.attempts.len()
        ));
    }
    let safe: String = no
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    for (table, cols) in [
        ("orders", "status, CAST(amount AS {T}), CAST(refunded_amount AS {T}), CAST(refund_reserved AS {T}), CAST(transaction_id AS {T})"),
        ("refunds", "CAST(out_refund_no AS {T}), CAST(amount AS {T}), status"),
        ("payment_logs", "type, event_type, CAST(amount_total AS {T}), detail"),
        ("notify_outbox", "status, CAST(attempts AS {T}), CAST(locked_until AS {T}), last_error"),
    ] {
        let sql = format!("SELECT {cols} FROM {table} WHERE out_trade_no = '{safe}'");
        for r in store.rows(&sql).await.unwrap_or_default() {
            out.push(format!("  store {table}: {:?}", r));
        }
    }
    for d in w
        .backend
        .deliveries()
        .iter()
        .filter(|d| d.payload["outTradeNo"] == no)
    {
        out.push(format!("  backend heard: {}", d.payload));
    }
    for inst in &w.fleet.instances {
        let log = std::fs::read_to_string(&inst.log).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains(no)).take(30) {
            out.push(format!(
                "  {}: {}",
                inst.log
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or("log"),
                clip(line, 400)
            ));
        }
    }
    out.join("\n")
}
