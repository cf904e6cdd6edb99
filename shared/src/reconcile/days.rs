//! The bill's day: Beijing time, and when WeChat Pay has its bill ready.

use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// WeChat Pay starts the bill at 09:00 the next day and advises fetching it after 10:00.
pub const BILL_READY_HOUR: u8 = 10;

pub fn beijing() -> UtcOffset {
    UtcOffset::from_hms(8, 0, 0).unwrap_or(UtcOffset::UTC)
}

/// Yesterday in Asia/Shanghai: the default bill date.
pub fn yesterday(now: OffsetDateTime) -> Date {
    let today = now.to_offset(beijing()).date();
    today.previous_day().unwrap_or(today)
}

/// `[00:00, 24:00)` of `date` in Beijing time: the bill's day.
pub fn day_bounds(date: Date) -> (OffsetDateTime, OffsetDateTime) {
    let start = date.midnight().assume_offset(beijing());
    (start, start + time::Duration::days(1))
}

/// When WeChat Pay advises fetching `date`'s bill: 10:00 Beijing time the next day.
pub fn ready_at(date: Date) -> OffsetDateTime {
    let at = Time::from_hms(BILL_READY_HOUR, 0, 0).unwrap_or(Time::MIDNIGHT);
    PrimitiveDateTime::new(date, at).assume_offset(beijing()) + time::Duration::days(1)
}
