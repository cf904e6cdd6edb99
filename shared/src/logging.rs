//! The log: one event is one line, whatever a caller or WeChat Pay put in a field.
//!
//! Messages and fields carry text from outside (an unknown `type`, an `out_trade_no`, a
//! WeChat Pay error message). Written as it came, a `\n` in it would start a line that
//! looks like ours — `… INFO order paid out_trade_no=…` — and a NUL or an ANSI escape
//! could hide or rewrite what an operator sees. So every field, the message included, is
//! written with its control characters (and Unicode line/paragraph separators) escaped,
//! at the one place fields become text, instead of trusting every log site to remember.
//!
//! `LOG_FORMAT=json` writes each event as one JSON object instead (see [`json`]), with the
//! fields of the invocation it belongs to ([`crate::invocation`]) beside its own; JSON's
//! string escaping keeps every value on its line.

mod json;

use std::fmt;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{debug_fn, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// Writes `text` with every character that could break or disguise a log line escaped
/// (`\n` → `\\n`, NUL → `\\u{0}`, ESC → `\\u{1b}`, U+2028 → `\\u{2028}`).
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            write!(out, "{}", c.escape_default())?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

/// `message` as text, other fields as `name=value`, separated by spaces: the default
/// layout, with every value escaped.
pub fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    debug_fn(
        |w: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn fmt::Debug| {
            let text = format!("{value:?}");
            if field.name() != "message" {
                write!(w, "{}=", field.name())?;
            }
            write_escaped(w, &text)
        },
    )
    .delimited(" ")
}

pub use json::{JsonFields, JsonLines};

/// The most of an error message a log line quotes.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// `text`, or its first `max` bytes (cut at a character) and how many more there were. An
/// error message can quote what a caller sent (an unknown `type`, a path, a field's value)
/// and one request must not write a line of any length it likes.
pub fn shortened(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let end = text.floor_char_boundary(max);
    format!("{}… ({} more bytes)", &text[..end], text.len() - end).into()
}

/// How events are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `name=value` text, one event a line ([`subscriber`]); the default.
    #[default]
    Text,
    /// One JSON object a line ([`json_subscriber`]), for log services that index fields.
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT`'s value: unset or empty is text; anything but `text`/`json` is refused,
    /// in the words start-up uses for every other bad setting.
    pub fn parse(value: Option<&str>) -> Result<LogFormat, String> {
        let value = value.map(str::trim).unwrap_or_default();
        if value.is_empty() || value.eq_ignore_ascii_case("text") {
            Ok(LogFormat::Text)
        } else if value.eq_ignore_ascii_case("json") {
            Ok(LogFormat::Json)
        } else {
            let mut shown = String::new();
            let _ = write_escaped(&mut shown, value);
            Err(format!(
                "invalid configuration:\n  - LOG_FORMAT must be `text` or `json` (got `{shown}`)"
            ))
        }
    }

    pub fn from_env() -> Result<LogFormat, String> {
        match std::env::var("LOG_FORMAT") {
            Ok(v) => Self::parse(Some(&v)),
            Err(std::env::VarError::NotPresent) => Ok(LogFormat::Text),
            Err(std::env::VarError::NotUnicode(_)) => Self::parse(Some("(not UTF-8)")),
        }
    }
}

/// Installs the process's subscriber: `RUST_LOG` level (a plain level such as `debug`;
/// default `info`), stderr, no colours, in the `LOG_FORMAT` layout. Runs before the rest
/// of the configuration is read, so it refuses a bad `LOG_FORMAT` itself: start-up must
/// stop rather than log in a layout the operator's log service cannot parse.
pub fn init() -> Result<(), String> {
    let format = LogFormat::from_env()?;
    let level = level(std::env::var("RUST_LOG").ok().as_deref());
    // Already installed (a test, or a runner that started the functions in-process): keep it.
    let _ = match format {
        LogFormat::Text => subscriber(level, std::io::stderr).try_init(),
        LogFormat::Json => json_subscriber(level, std::io::stderr).try_init(),
    };
    Ok(())
}

/// `RUST_LOG`'s level: a plain level, `info` when unset or not one, and never more than
/// `debug`. At TRACE the Lambda runtime logs each event whole ("raw JSON event received
/// from Lambda"): the caller's `Authorization` and `X-Internal-Secret` headers, a raw
/// event's `internalSecret` and `sessionToken` — secrets no line may carry (contract §13).
pub fn level(rust_log: Option<&str>) -> tracing::Level {
    rust_log
        .and_then(|v| v.trim().parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO)
        .min(tracing::Level::DEBUG)
}

/// The subscriber [`init`] installs, writing to `writer` (tests capture it).
pub fn subscriber<W>(
    level: tracing::Level,
    writer: W,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    impl for<'w> FormatFields<'w> + Send + Sync + 'static,
    tracing_subscriber::fmt::format::Format,
    tracing::level_filters::LevelFilter,
    W,
>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false)
        .with_writer(writer)
        .fmt_fields(escaped_fields())
}

/// The `LOG_FORMAT=json` subscriber [`init`] installs, writing to `writer`.
pub fn json_subscriber<W>(
    level: tracing::Level,
    writer: W,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    JsonFields,
    JsonLines,
    tracing::level_filters::LevelFilter,
    W,
>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(writer)
        .fmt_fields(JsonFields)
        .event_format(JsonLines)
}

/// A log written to memory, for the unit tests of the layouts and the invocation span.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Captured {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8(bytes).expect("the log is UTF-8")
    }
}

#[cfg(test)]
impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(emit: impl FnOnce()) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = subscriber(tracing::Level::INFO, move || sink.clone()).finish();
        tracing::subscriber::with_default(subscriber, emit);
        out.text()
    }

    const FORGED: &str =
        "x\n2026-12-02T00:00:00.000000Z  INFO order paid out_trade_no=WXFORGED\0\u{1b}[2K\r\u{2028}";

    #[test]
    fn a_caller_cannot_start_a_line_of_its_own() {
        let log = log_of(|| {
            tracing::info!("request refused: unknown type `{}`", FORGED);
            tracing::warn!(out_trade_no = %FORGED, kind = ?FORGED, "notification failed");
            tracing::error!(problem = FORGED, "PAYMENT MISMATCH");
        });
        assert_eq!(log.lines().count(), 3, "one event, one line:\n{log}");
        assert!(!log.contains('\0') && !log.contains('\r') && !log.contains('\u{1b}'));
        assert!(!log.contains('\u{2028}'));
        for line in log.lines() {
            assert!(
                !line.starts_with("2026-12-02T00:00:00"),
                "forged line: {line}"
            );
        }
        assert!(log.contains("x\\n2026-12-02T00:00:00.000000Z  INFO order paid"));
    }

    #[test]
    fn log_format_is_text_json_or_refused_by_name() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some(" ")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("text")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some(" JSON ")), Ok(LogFormat::Json));
        let refused = LogFormat::parse(Some("x\u{1b}ml")).unwrap_err();
        assert!(refused.contains("LOG_FORMAT"), "{refused}");
        assert!(refused.contains("`x\\u{1b}ml`"), "shown escaped: {refused}");
    }

    #[test]
    fn long_messages_are_shortened_at_a_character() {
        assert_eq!(shortened("short", 8), "short");
        let long = format!("a{}", "支".repeat(1000));
        let cut = shortened(&long, 5);
        assert_eq!(cut, "a支… (2997 more bytes)");
    }

    #[test]
    fn rust_log_goes_no_further_than_debug() {
        use tracing::Level;
        assert_eq!(level(None), Level::INFO);
        assert_eq!(level(Some("verbose")), Level::INFO);
        assert_eq!(level(Some("warn")), Level::WARN);
        assert_eq!(level(Some("debug")), Level::DEBUG);
        assert_eq!(
            level(Some("trace")),
            Level::DEBUG,
            "TRACE logs whole events"
        );
        assert_eq!(level(Some("TRACE")), Level::DEBUG);
    }

    #[test]
    fn ordinary_fields_read_as_before() {
        let log = log_of(|| tracing::info!(out_trade_no = %"WX123", changed = true, "order paid"));
        assert!(
            log.trim_end()
                .ends_with("order paid out_trade_no=WX123 changed=true"),
            "{log}"
        );
    }
}
