//! One span per invocation, so that every line an invocation writes — a WeChat Pay retry, a
//! failed backend delivery, a store error — carries the platform's request id, the call's
//! `type` and, once known, its `outTradeNo`; and one summary line when it ends, with its
//! outcome and how long it took (contract §13).
//!
//! The edges ([`crate::runtime`]) open the span; whoever learns a field records it on the
//! current span with the `record_*` functions here, which do nothing outside an invocation.
//! Each field is recorded once on any path: the text layout appends a field recorded
//! again instead of replacing it.

use std::future::Future;
use std::time::Instant;

use http::HeaderMap;
use tracing::field::{display, Empty};
use tracing::{Instrument, Level, Span};

use crate::util::{is_valid_reference, random_alnum};

/// `type` of a signed WeChat Pay notification, before its body says which kind it is.
pub const NOTIFICATION: &str = "notification";
/// `type` of a health check.
pub const HEALTH_CHECK: &str = "healthz";

/// Headers that carry the platform's request id in front of local HTTP, most specific
/// first: the SCF web function's, API Gateway's (Tencent), then the common convention.
const REQUEST_ID_HEADERS: &[&str] = &["x-scf-request-id", "x-api-requestid", "x-request-id"];

/// An invocation in progress: its span and when it started.
pub struct Invocation {
    span: Span,
    started: Instant,
    quiet: bool,
}

impl Invocation {
    /// Opens the span of the invocation the platform knows as `request_id`.
    pub fn start(request_id: &str) -> Self {
        // ERROR, the highest level, so that the span is never filtered out: its fields must
        // reach the warnings and errors even when RUST_LOG asks for nothing else.
        let span = tracing::span!(
            Level::ERROR,
            "invocation",
            request_id = %request_id,
            "type" = Empty,
            event_type = Empty,
            outTradeNo = Empty,
            outcome = Empty,
            code = Empty,
            status = Empty,
        );
        Invocation {
            span,
            started: Instant::now(),
            quiet: false,
        }
    }

    /// The request id in local HTTP `headers` ([`request_id`]).
    pub fn from_headers(headers: &HeaderMap, platform: bool) -> Self {
        Self::start(&request_id(headers, platform))
    }

    /// Summarised at DEBUG instead of INFO: health checks come every few seconds.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Runs `work` inside the span, then writes the summary line.
    pub async fn run<T>(self, work: impl Future<Output = T>) -> T {
        let answer = work.instrument(self.span.clone()).await;
        let elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let _in = self.span.enter();
        if self.quiet {
            tracing::debug!(elapsed_ms, "invocation finished");
        } else {
            tracing::info!(elapsed_ms, "invocation finished");
        }
        // The invocation's metrics go out before its answer: a sandbox frozen after the
        // answer would otherwise hold them until it thaws, or forever.
        crate::metric::flush();
        answer
    }
}

/// The id of this request in local HTTP `headers`. Where the platform sets the headers
/// (`platform`), the first usable one is its id. Elsewhere a caller of the listener chose
/// it: kept so the caller can find its lines, but as `caller-<id>-<random>`, so it can
/// never pass for, or be mixed into, another invocation's story. Anything longer or
/// stranger than a request id is replaced by a fresh one rather than logged.
pub fn request_id(headers: &HeaderMap, platform: bool) -> String {
    let given = REQUEST_ID_HEADERS
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .map(str::trim)
        .find(|id| usable_request_id(id));
    match given {
        Some(id) if platform => id.to_string(),
        Some(id) => format!("caller-{id}-{}", random_alnum(8)),
        None => random_alnum(20),
    }
}

fn usable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Every `type` the product defines. Names only: reaching for a binary's handler table
/// (`handlers::ALL_TYPES`) here would link every handler into every binary, and tie the
/// edge's span to the handlers it runs.
const KNOWN_TYPES: &[&str] = {
    use crate::call::*;
    &[
        ORDER,
        ORDER_CALLBACK,
        QUERY_BY_OUT_TRADE_NO,
        QUERY_BY_TRANSACTION_ID,
        CLOSE_ORDER,
        REFUND,
        REFUND_QUERY,
        REFUND_CALLBACK,
        NOTIFY_RETRY,
        LOGIN,
        ORDER_LIST,
        STATS,
        RECONCILE,
        NOTIFICATION,
        HEALTH_CHECK,
    ]
};

/// Records the call's `type`: one this product defines, or `unknown`. A caller's invented
/// type is in the refusal's message already; the field stays a short, known value.
pub fn record_type(ty: &str) {
    let known = KNOWN_TYPES
        .iter()
        .copied()
        .find(|t| *t == ty)
        .unwrap_or("unknown");
    Span::current().record("type", display(known));
}

/// Records the order the invocation is about, if `out_trade_no` is a valid merchant
/// reference (anything else came from a caller and is not ours to index).
pub fn record_out_trade_no(out_trade_no: &str) {
    if is_valid_reference(out_trade_no) {
        Span::current().record("outTradeNo", display(out_trade_no));
    }
}

/// Records a verified notification's `event_type` (`TRANSACTION.SUCCESS`, `REFUND.ABNORMAL`,
/// …), if it looks like one.
pub fn record_event_type(event_type: &str) {
    let plausible = (1..=64).contains(&event_type.len())
        && event_type
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
    if plausible {
        Span::current().record("event_type", display(event_type));
    }
}

/// Records how the invocation was answered: `ok` or what went wrong (an [`AppError`]
/// kind, or `fail` for a refused notification), with the HTTP status and envelope code.
///
/// [`AppError`]: crate::error::AppError
pub fn record_outcome(outcome: &str, status: u16, code: Option<i32>) {
    let span = Span::current();
    span.record("outcome", display(outcome));
    span.record("status", status);
    if let Some(code) = code {
        span.record("code", code);
    }
}

/// A span for delivering one outbox row, inside whatever invocation sends it (a
/// notification, or a retry sweep that sends many orders' rows).
pub fn delivery_span(id: i64, out_trade_no: &str) -> Span {
    // ERROR for the same reason as the invocation's span.
    tracing::span!(
        Level::ERROR,
        "delivery",
        delivery = id,
        outTradeNo = %out_trade_no
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::Captured;

    /// What an invocation that refunds `WX…` by a retried WeChat Pay call writes.
    fn invocation_log(json: bool) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let work = async {
            record_type(crate::call::REFUND);
            record_out_trade_no("WX20261202000000abc");
            tracing::warn!("WeChat Pay HTTP 500; retrying once");
            record_outcome("ok", 200, Some(0));
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let level = tracing::Level::INFO;
        if json {
            let subscriber = crate::logging::json_subscriber(level, move || sink.clone());
            tracing::subscriber::with_default(subscriber.finish(), || {
                rt.block_on(Invocation::start("req-1").run(work))
            });
        } else {
            let subscriber = crate::logging::subscriber(level, move || sink.clone());
            tracing::subscriber::with_default(subscriber.finish(), || {
                rt.block_on(Invocation::start("req-1").run(work))
            });
        }
        out.text()
    }

    #[test]
    fn the_text_layout_names_the_invocation_on_every_line() {
        let log = invocation_log(false);
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        let fields = "invocation{request_id=req-1 type=wxpay_refund outTradeNo=WX20261202000000abc";
        assert!(lines[0].contains(fields), "{log}");
        assert!(
            lines[0].ends_with("WeChat Pay HTTP 500; retrying once"),
            "{log}"
        );
        assert!(lines[1].contains("outcome=ok status=200 code=0}"), "{log}");
        assert!(
            lines[1].contains("invocation finished elapsed_ms="),
            "{log}"
        );
    }

    #[test]
    fn the_json_layout_ends_with_a_summary_of_the_invocation() {
        let log = invocation_log(true);
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert_eq!(lines[0]["outTradeNo"], "WX20261202000000abc");
        assert_eq!(lines[0]["level"], "WARN");
        let summary = &lines[1];
        assert_eq!(summary["request_id"], "req-1");
        assert_eq!(summary["type"], "wxpay_refund");
        assert_eq!(summary["outTradeNo"], "WX20261202000000abc");
        assert_eq!(
            (summary["outcome"].as_str(), summary["code"].as_i64()),
            (Some("ok"), Some(0))
        );
        assert!(summary["elapsed_ms"].is_u64(), "{summary}");
    }

    #[test]
    fn every_routed_type_is_known() {
        for ty in crate::handlers::ALL_TYPES.types() {
            assert!(KNOWN_TYPES.contains(&ty), "{ty} is logged as unknown");
        }
    }

    #[test]
    fn a_request_id_comes_from_the_platform_or_is_made_up() {
        let mut headers = HeaderMap::new();
        let fresh = request_id(&headers, true);
        assert_eq!(fresh.len(), 20);
        assert_ne!(fresh, request_id(&headers, true), "one per invocation");

        headers.insert("x-request-id", "from-a-proxy".parse().unwrap());
        assert_eq!(request_id(&headers, true), "from-a-proxy");
        headers.insert("x-scf-request-id", "b1c2-d3".parse().unwrap());
        assert_eq!(request_id(&headers, true), "b1c2-d3", "the platform's wins");

        let mut forged = HeaderMap::new();
        forged.insert("x-request-id", "a\"b c".parse().unwrap());
        assert_ne!(request_id(&forged, true), "a\"b c");
        forged.insert("x-request-id", "x".repeat(129).parse().unwrap());
        assert_eq!(request_id(&forged, true).len(), 20);
    }

    #[test]
    fn a_request_id_a_caller_chose_is_never_taken_for_the_platforms() {
        let mut headers = HeaderMap::new();
        headers.insert("x-scf-request-id", "b1c2-d3".parse().unwrap());
        let first = request_id(&headers, false);
        let second = request_id(&headers, false);
        assert!(first.starts_with("caller-b1c2-d3-"), "{first}");
        assert_eq!(first.len(), "caller-b1c2-d3-".len() + 8);
        assert_ne!(first, second, "two calls with one id are two stories");
        let mut forged = HeaderMap::new();
        forged.insert("x-request-id", "a\"b c".parse().unwrap());
        assert_eq!(request_id(&forged, false).len(), 20);
    }
}
