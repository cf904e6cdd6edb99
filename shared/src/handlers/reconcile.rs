//! `wxpay_reconcile`: trusted callers and schedules reconcile one day's trade bill.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use time::Date;

use super::Call;
use crate::client::{BillDownloadError, ClientError, MAX_BILL_BYTES};
use crate::error::AppError;
use crate::reconcile::{ready_at, yesterday, BillFile, ReconcileError, Reconciler};
use crate::settlement::SettleError;
use crate::state::App;
use crate::store::ItemKey;
use crate::util::now_utc;

/// WeChat Pay's answers for a bill that does not exist (yet).
const NOT_READY_CODES: &[&str] = &["NO_STATEMENT_EXIST", "STATEMENT_CREATING"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReconcileRequest {
    /// `yyyy-MM-dd`, Beijing time; default yesterday.
    #[serde(default)]
    bill_date: Option<String>,
    #[serde(default)]
    dry_run: bool,
    /// Ask WeChat Pay before 10:00 Beijing time the next day (it answers whether the bill
    /// exists; the simulator can serve today's at once).
    #[serde(default)]
    early: bool,
    /// Without `billDate`: yesterday and the days before it still without a result, as a
    /// schedule does (for timers that call over HTTP with the internal secret).
    #[serde(default)]
    catch_up: bool,
    /// With `billDate`: a page of the date's recorded items instead of a run, after the
    /// `next` of the page before (`{}` for the first page).
    #[serde(default)]
    items_after: Option<ItemsAfter>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ItemsAfter {
    Key(ItemKey),
    Start(serde_json::Map<String, Value>),
}

/// Items in one page.
const ITEMS_PAGE: usize = 100;

/// A page of `date`'s items; `next` is the cursor for the page after it, `null` at the end.
async fn items_page(app: &App, date: Date, after: ItemsAfter) -> Result<Value, AppError> {
    let after = match after {
        ItemsAfter::Key(k) => Some(k),
        ItemsAfter::Start(m) if m.is_empty() => None,
        ItemsAfter::Start(_) => {
            return Err(AppError::invalid(
                "field `itemsAfter`: `{}` or the `next` of the page before",
            ))
        }
    };
    let items = app
        .store
        .reconciliation_items_page(&date.to_string(), after.as_ref(), ITEMS_PAGE)
        .await?;
    let next = match items.last() {
        Some(last) if items.len() == ITEMS_PAGE => serde_json::to_value(ItemKey::of(last))
            .map_err(|e| AppError::Internal(e.to_string()))?,
        _ => Value::Null,
    };
    Ok(serde_json::json!({ "billDate": date.to_string(), "items": items, "next": next }))
}

fn parse_date(text: &str) -> Result<Date, AppError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, format)
        .map_err(|_| AppError::invalid(format!("field `billDate`: `{text}` is not yyyy-MM-dd")))
}

fn not_ready(date: Date, reason: String) -> Value {
    serde_json::json!({
        "billDate": date.to_string(),
        "status": "not_ready",
        "message": format!(
            "no trade bill for {date} yet ({reason}); WeChat Pay makes a day's bill after 10:00 Beijing time the next day (and none for a day without payments or refunds); the next scheduled run tries again"
        ),
    })
}

/// Days a schedule looks back for a bill it could not reconcile yet (not ready, or a run
/// that failed): the next tick tries them again.
const CATCH_UP_DAYS: i64 = 3;

/// Kept back from a call's deadline when a reconciliation decides to stop: the batch in
/// hand, the checkpoint and the answer fit in it.
const STOP_RESERVE: Duration = Duration::from_secs(3);

/// When a day given `share` of what is left of the call stops and answers `in_progress`:
/// `None` outside an invocation (a tool runs to the end).
fn stop_at(share: u32) -> Option<std::time::Instant> {
    let by = crate::deadline::answer_by()?.into_std();
    let now = std::time::Instant::now();
    let left = by
        .saturating_duration_since(now)
        .saturating_sub(STOP_RESERVE);
    Some(now + left / share.max(1))
}

pub async fn reconcile(app: &App, call: &Call) -> Result<Value, AppError> {
    if !call.caller.scheduled {
        call.require_trusted("wxpay_reconcile")?;
    }
    let req: ReconcileRequest = call.parse()?;
    let now = now_utc();
    let today = now.to_offset(crate::reconcile::beijing()).date();
    let date = match req.bill_date.as_deref() {
        Some(text) => parse_date(text.trim())?,
        None if call.caller.scheduled || req.catch_up => return catch_up(app, now).await,
        None => yesterday(now),
    };
    if date > today {
        return Err(AppError::invalid(format!(
            "field `billDate`: {date} is in the future (today is {today} in Beijing)"
        )));
    }
    if let Some(after) = req.items_after {
        if req.bill_date.is_none() {
            return Err(AppError::invalid("field `itemsAfter` needs `billDate`"));
        }
        return items_page(app, date, after).await;
    }
    one_day(app, date, req.dry_run, req.early, stop_at(1)).await
}

/// A timer: yesterday, and each of the days before it that has no stored result yet.
async fn catch_up(app: &App, now: time::OffsetDateTime) -> Result<Value, AppError> {
    let last = yesterday(now);
    let mut runs = Vec::new();
    for back in (0..CATCH_UP_DAYS).rev() {
        let date = last - time::Duration::days(back);
        // Each day gets its share of what is left, so a day too large for one call goes on
        // from its checkpoint next tick without keeping the later days from their turn.
        let share = u32::try_from(back + 1).unwrap_or(1);
        if date != last
            && app
                .store
                .get_reconciliation(&date.to_string())
                .await?
                .is_some()
        {
            continue;
        }
        // One day's failure (a corrupt bill, WeChat Pay down) does not hide the others.
        let run = one_day(app, date, false, false, stop_at(share))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(bill_date = %date, "reconciliation failed: {e}");
                serde_json::json!({
                    "billDate": date.to_string(),
                    "status": "failed",
                    "message": e.public_message(),
                })
            });
        runs.push(run);
    }
    Ok(serde_json::json!({ "runs": runs }))
}

async fn one_day(
    app: &App,
    date: Date,
    dry_run: bool,
    early: bool,
    stop_at: Option<std::time::Instant>,
) -> Result<Value, AppError> {
    let now = now_utc();
    if !early && now < ready_at(date) {
        return Ok(not_ready(date, format!("it is before {}", ready_at(date))));
    }
    let answer = match app.wechat.trade_bill(&date.to_string()).await {
        Ok(a) => a,
        Err(ClientError::Api { code, message, .. }) if NOT_READY_CODES.contains(&code.as_str()) => {
            // NO_STATEMENT_EXIST also means "nothing happened that day"; WeChat Pay does not
            // tell the two apart, so the day is tried again until it drops out of the window.
            return Ok(not_ready(
                date,
                format!("WeChat Pay answered {code}: {message}"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let spool = app
        .wechat
        .download_trade_bill(&answer, MAX_BILL_BYTES)
        .await
        .map_err(|e| match e {
            BillDownloadError::Client(e) => AppError::WechatPay(e),
            other => AppError::BadBill(other.to_string()),
        })?;
    let courier = app.courier();
    let settlement = app.settlement(&courier);
    let reconciler = Reconciler {
        store: app.store.as_ref(),
        settlement: &settlement,
        mchid: &app.config.mchid,
        appid: &app.config.appid,
    };
    let outcome = reconciler
        .run(
            date,
            BillFile {
                hash: &answer.hash_value,
                open: || spool.open(),
            },
            dry_run,
            stop_at,
        )
        .await
        .map_err(|e| match e {
            ReconcileError::Settle(SettleError::Store(e)) => AppError::Store(e),
            ReconcileError::Settle(SettleError::Mismatch(m)) => AppError::Internal(m.to_string()),
            ReconcileError::Bill(e) => AppError::BadBill(e.to_string()),
        })?;
    tracing::info!(
        bill_date = %outcome.bill_date,
        status = outcome.status,
        repaired = outcome.repaired,
        flagged = outcome.flagged,
        dry_run = outcome.dry_run,
        "reconciliation"
    );
    // `flagged` counts every call of a day continued from a checkpoint: told once, at the end.
    if !outcome.dry_run && outcome.status != "in_progress" {
        crate::metric::reconciliation_discrepancies(outcome.flagged.max(0) as u64);
    }
    serde_json::to_value(outcome).map_err(|e| AppError::Internal(e.to_string()))
}
