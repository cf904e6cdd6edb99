//! `LOG_FORMAT=json`: each event is one JSON object on one line — `timestamp`, `level`,
//! `message`, the event's own fields, and the fields of every span it happened in (the
//! invocation's `request_id`, `type`, `outTradeNo`, …), all at the top level, so a log
//! service can search `outTradeNo` without knowing which span set it. An inner span's
//! field wins over an outer one's of the same name, and the event's own over both.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats span fields as a JSON object (the text the subscriber keeps for each span).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

/// Formats an event as one JSON line, its spans' fields flattened into it.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// Collects fields into a JSON object: numbers and booleans stay typed, everything else is
/// its `Display`/`Debug` text.
struct Collect<'a>(&'a mut Map<String, Value>);

impl Collect<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for Collect<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut map = Map::new();
        fields.record(&mut Collect(&mut map));
        write!(writer, "{}", Value::Object(map))
    }

    /// A field recorded later (`Span::record`) joins the span's object instead of being
    /// appended after it as text.
    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut map = object(&current.fields);
        fields.record(&mut Collect(&mut map));
        current.fields = Value::Object(map).to_string();
        Ok(())
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc();
        let timestamp = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| now.unix_timestamp().to_string());
        line.insert("timestamp".into(), Value::from(timestamp));
        line.insert(
            "level".into(),
            Value::from(event.metadata().level().as_str()),
        );
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<JsonFields>>() {
                    line.extend(object(&fields.fields));
                }
            }
        }
        event.record(&mut Collect(&mut line));
        writeln!(
            writer,
            "{}",
            line_breaks_escaped(&Value::Object(line).to_string())
        )
    }
}

/// serde_json escapes only what JSON requires (`"`, `\\`, U+0000–U+001F). DEL, the C1
/// controls (U+0085 NEL among them) and U+2028/U+2029 stay raw, and a viewer or a
/// JavaScript reader may break the line there or act on them. None of them is JSON
/// syntax, so they only ever sit inside a string, where `\uXXXX` is the same value:
/// escaped, a caller's text cannot start or disguise a line here either (the text
/// layout escapes the same characters, [`super::write_escaped`]).
fn line_breaks_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            let _ = fmt::Write::write_fmt(&mut out, format_args!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::logging::Captured;

    use serde_json::Value;

    fn lines_of(emit: impl FnOnce()) -> Vec<Value> {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber =
            super::super::json_subscriber(tracing::Level::INFO, move || sink.clone()).finish();
        tracing::subscriber::with_default(subscriber, emit);
        out.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn span_fields_sit_beside_the_events_own_and_inner_spans_win() {
        let lines = lines_of(|| {
            let outer = tracing::error_span!(
                "invocation",
                request_id = "r-1",
                "type" = "wxpay_notify_retry",
                outTradeNo = tracing::field::Empty
            );
            let _o = outer.enter();
            outer.record("outTradeNo", "WX_OUTER");
            tracing::info!(n = 3, ok = true, "before");
            let inner = tracing::error_span!("delivery", outTradeNo = "WX_INNER");
            let _i = inner.enter();
            tracing::warn!(error = %"backend answered HTTP 500", "delivery failed");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first = &lines[0];
        assert_eq!(first["message"], "before");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["request_id"], "r-1");
        assert_eq!(first["type"], "wxpay_notify_retry");
        assert_eq!(first["outTradeNo"], "WX_OUTER");
        assert_eq!(
            (first["n"].as_i64(), first["ok"].as_bool()),
            (Some(3), Some(true))
        );
        assert!(first["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        let second = &lines[1];
        assert_eq!(second["outTradeNo"], "WX_INNER");
        assert_eq!(second["request_id"], "r-1");
        assert_eq!(second["error"], "backend answered HTTP 500");
    }

    #[test]
    fn a_forged_line_stays_inside_its_string() {
        let forged = "x\n{\"level\":\"ERROR\",\"message\":\"PAYMENT MISMATCH\"}\r\0\u{1b}[2K";
        let lines = lines_of(|| {
            tracing::info!(out_trade_no = %forged, "request refused: unknown type `{}`", forged);
        });
        assert_eq!(lines.len(), 1, "one event, one line: {lines:?}");
        assert_eq!(lines[0]["out_trade_no"], forged);
    }

    #[test]
    fn unicode_line_breaks_and_c1_controls_are_escaped_not_raw() {
        let forged = "x\u{2028}{\"level\":\"ERROR\"}\u{2029}\u{85}\u{9b}2K\u{7f}";
        let out = Captured::default();
        let sink = out.clone();
        let subscriber =
            super::super::json_subscriber(tracing::Level::INFO, move || sink.clone()).finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::error_span!("invocation", outTradeNo = %forged);
            let _in = span.enter();
            tracing::info!(problem = %forged, "unknown type `{}`", forged);
        });
        let text = out.text();
        for c in ['\u{2028}', '\u{2029}', '\u{85}', '\u{9b}', '\u{7f}'] {
            assert!(!text.contains(c), "raw U+{:04X} in {text:?}", u32::from(c));
        }
        assert_eq!(text.lines().count(), 1, "{text:?}");
        let line: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["problem"], forged, "the same value, escaped");
        assert_eq!(line["outTradeNo"], forged);
        assert_eq!(line["message"], format!("unknown type `{forged}`"));
    }
}
