//! Healing, as operations would after an incident: faults off, every instance back,
//! refunds left in doubt asked again under their own numbers, WeChat Pay's notification
//! retries played out, the day reconciled, and the outbox swept until it is empty.

use std::time::{Duration, Instant};

use serde_json::json;
use wxpay_sim::{DeliveryState, RefundOutcome};

use crate::store::{text, Store};
use crate::world::Shared;

pub async fn heal(w: &Shared, store: &Store) -> Result<(), String> {
    w.sim.clear_faults();
    w.backend.set_delivery_fault(None);
    w.fleet.revive_all().await?;
    let healer = w.fleet.healer();

    // A refund the store holds `processing` that WeChat Pay never accepted is in doubt:
    // the contract's way out is the same request under the same outRefundNo.
    let processing: std::collections::HashSet<String> = store
        .rows("SELECT CAST(out_refund_no AS {T}) FROM refunds WHERE status = 'processing'")
        .await?
        .iter()
        .map(|r| text(&r[0]))
        .collect();
    let asked = w
        .refunds_asked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for (no, rno, amount) in asked {
        if !processing.contains(&rno) || w.sim.refund(&rno).is_some() {
            continue;
        }
        let mut body = json!({"type": "wxpay_refund", "outTradeNo": no, "outRefundNo": rno, "reason": "chaos"});
        if let Some(a) = amount {
            body["amount"] = json!(a);
        }
        for _ in 0..3 {
            let a = w.call(healer, Some(&no), body.clone()).await;
            if a.status != 503 && a.status != 504 && a.status != 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    // WeChat Pay ends every refund still processing, and tells.
    for r in w.sim.refunds() {
        if r.status == "PROCESSING" {
            let res = w
                .sim
                .complete_refund(&r.out_refund_no, RefundOutcome::Success)
                .await;
            w.note(
                &r.out_trade_no,
                format!(
                    "healing: refund {} SUCCESS at WeChat Pay: {}",
                    r.out_refund_no,
                    res.is_ok()
                ),
            );
        }
    }

    // WeChat Pay's retries, played out: what is still retrying is sent again now, until
    // every notification has been acknowledged (or its schedule is spent).
    let _ = w.sim.set_notification_retry_scale(0.0001);
    let started = Instant::now();
    loop {
        let pending: Vec<u64> = w
            .sim
            .notification_deliveries()
            .into_iter()
            .filter(|d| d.state == DeliveryState::Retrying)
            .map(|d| d.id)
            .collect();
        if pending.is_empty() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "healing: {} notification(s) still retrying after 60 s",
                pending.len()
            );
            break;
        }
        for id in pending {
            let _ = w.sim.retry_notification_now(id).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The day reconciled against WeChat Pay's bill (and yesterday's, should the campaign
    // have crossed midnight in Beijing).
    w.sim.serve_bills_early(true);
    let today = (time::OffsetDateTime::now_utc() + time::Duration::hours(8)).date();
    for date in [today.previous_day().unwrap_or(today), today] {
        let body = json!({"type": "wxpay_reconcile", "billDate": date.to_string(), "early": true});
        let a = w.call(healer, Some("reconciliation"), body).await;
        if !a.ok() {
            return Err(format!(
                "reconciliation of {date} failed: {} {}",
                a.status, a.body
            ));
        }
    }

    // The outbox swept until nothing is pending; a lease a killed instance held lapses
    // after 30 s, so this may wait that long.
    let started = Instant::now();
    loop {
        let a = w
            .call(
                healer,
                None,
                json!({"type": "wxpay_notify_retry", "all": true}),
            )
            .await;
        let left = store
            .rows("SELECT CAST(COUNT(*) AS {T}) FROM notify_outbox WHERE status <> 'delivered'")
            .await?;
        let left = left.first().and_then(|r| r[0].clone()).unwrap_or_default();
        if left == "0" {
            break;
        }
        if started.elapsed() > Duration::from_secs(50) {
            eprintln!(
                "healing: {left} outbox row(s) still pending after 50 s (last sweep: {})",
                a.body
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
