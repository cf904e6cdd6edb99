//! Unit tests of `reconcile.rs`.

use super::rows::bill_time_rfc3339;
use super::*;
use time::macros::{date, datetime};

#[test]
fn yesterday_and_the_day_are_beijing_time() {
    // 23:30 UTC is already the next morning in Beijing.
    assert_eq!(
        yesterday(datetime!(2024-05-01 23:30 UTC)),
        date!(2024 - 05 - 01)
    );
    assert_eq!(
        yesterday(datetime!(2024-05-01 15:59 UTC)),
        date!(2024 - 04 - 30)
    );
    let (from, to) = day_bounds(date!(2024 - 05 - 01));
    assert_eq!(from, datetime!(2024-04-30 16:00 UTC));
    assert_eq!(to, datetime!(2024-05-01 16:00 UTC));
    assert_eq!(
        ready_at(date!(2024 - 05 - 01)),
        datetime!(2024-05-02 02:00 UTC)
    );
}

#[test]
fn bill_times_become_rfc3339_at_plus_eight() {
    assert_eq!(
        bill_time_rfc3339("2024-05-01 10:00:00").as_deref(),
        Some("2024-05-01T10:00:00+08:00")
    );
    assert_eq!(bill_time_rfc3339("yesterday"), None);
}
