//! Business metrics as CloudWatch Embedded Metric Format lines (contract §14), through the
//! `metrics` facade and the `metrics_cloudwatch_embedded` recorder: namespace `WxPay`, one
//! JSON line per metric set, written to stdout at the end of each invocation, before its
//! answer (a frozen sandbox loses nothing). Lambda's log turns the lines into metrics.
//!
//! Only counts, amounts in fen, durations and a closed set of reasons are recorded: never an
//! openid, an order or refund number, a caller's text or a secret.

use std::io::Write;
use std::sync::OnceLock;

use metrics::{counter, histogram};
use metrics_cloudwatch_embedded::Collector;

pub const NAMESPACE: &str = "WxPay";

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

/// Why a WeChat Pay notification was not acknowledged: the `Reason` dimension of
/// `NotificationsRefused`, from its HTTP answer, never from anything the sender wrote.
pub fn refusal_reason(status: u16) -> &'static str {
    match status {
        400 => "malformed",
        401 => "signature",
        404 => "unknown_order",
        409 => "mismatch",
        413 => "too_large",
        500..=599 => "unavailable",
        _ => "other",
    }
}

/// `METRICS`: `emf` writes the lines, `off` does not; unset, they are on under Lambda
/// (`AWS_LAMBDA_RUNTIME_API`) and off elsewhere.
pub fn enabled(vars: &[(String, String)]) -> Result<bool, String> {
    let get = |name: &str| {
        vars.iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_ascii_lowercase())
    };
    match get("METRICS").as_deref() {
        Some("emf") => Ok(true),
        Some("off") => Ok(false),
        Some(_) => Err("METRICS must be `emf` or `off`".into()),
        None => Ok(get("AWS_LAMBDA_RUNTIME_API").is_some()),
    }
}

/// Installs the recorder, once per process. Without it every metric is a no-op.
pub fn install() -> Result<(), String> {
    if COLLECTOR.get().is_some() {
        return Ok(());
    }
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .init()
        .map_err(|e| format!("metrics: {e}"))?;
    let _ = COLLECTOR.set(collector);
    Ok(())
}

/// Writes what was recorded since the last flush to stdout, as whole lines in one write so
/// that no log line lands inside one.
pub fn flush() {
    let Some(collector) = COLLECTOR.get() else {
        return;
    };
    let mut lines = Vec::new();
    if collector.flush(&mut lines).is_ok() && !lines.is_empty() {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&lines);
        let _ = out.flush();
    }
}

pub fn order_created() {
    counter!("OrdersCreated").increment(1);
}

/// A payment recorded now (not a duplicate), with what was paid.
pub fn payment_recorded(amount_fen: i64) {
    counter!("PaymentsRecorded").increment(1);
    histogram!("PaymentAmountFen").record(amount_fen.max(0) as f64);
}

pub fn refund_requested() {
    counter!("RefundsRequested").increment(1);
}

pub fn refund_succeeded() {
    counter!("RefundsSucceeded").increment(1);
}

pub fn notification_refused(status: u16) {
    counter!("NotificationsRefused", "Reason" => refusal_reason(status)).increment(1);
}

pub fn delivery_failed() {
    counter!("DeliveriesFailed").increment(1);
}

/// Age of the oldest pending backend delivery, by the database's clock.
pub fn outbox_oldest_pending(secs: i64) {
    histogram!("OutboxOldestPendingSeconds").record(secs.max(0) as f64);
}

pub fn reconciliation_discrepancies(flagged: u64) {
    counter!("ReconciliationDiscrepancies").increment(flagged);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_on_under_lambda_or_when_asked() {
        let v = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(enabled(&v(&[])), Ok(false));
        assert_eq!(
            enabled(&v(&[("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")])),
            Ok(true)
        );
        assert_eq!(enabled(&v(&[("METRICS", "EMF")])), Ok(true));
        assert_eq!(
            enabled(&v(&[("AWS_LAMBDA_RUNTIME_API", "x"), ("METRICS", "off")])),
            Ok(false)
        );
        assert!(enabled(&v(&[("METRICS", "prometheus")])).is_err());
    }

    #[test]
    fn refusal_reasons_are_a_closed_set() {
        let reasons: std::collections::BTreeSet<&str> = (100..600).map(refusal_reason).collect();
        assert_eq!(reasons.len(), 7, "{reasons:?}");
    }
}
