//! Every notification WeChat Pay sent, each attempt with what the merchant answered, and
//! WeChat Pay's retry schedule.
//!
//! From the documentation of 支付结果通知 / 退款结果通知: the merchant must answer within
//! 5 seconds; a notification not acknowledged is sent again "15s/15s/30s/3m/10m/20m/30m/30m/
//! 30m/60m/3h/3h/3h/6h/6h - 总计 24h4m", and only HTTP 200 or 204 acknowledge it
//! ("接收成功：HTTP应答状态码需返回200或204"; a failure is 4XX or 5XX).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::notify::SignedNotification;

/// The waits after the 1st, 2nd, … failed attempt; after the 16th attempt WeChat Pay gives up.
pub const RETRY_SCHEDULE: [Duration; 15] = [
    Duration::from_secs(15),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(3 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(20 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(6 * 3600),
];

/// How long WeChat Pay waits for the merchant's answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// How much of an answer is kept.
pub const ANSWER_KEPT: usize = 200;

/// Whether WeChat Pay takes this status as "received".
pub fn acknowledges(status: u16) -> bool {
    status == 200 || status == 204
}

/// The wait after attempt `attempts` failed, scaled; `None` once the schedule is spent.
pub fn wait_after(attempts: usize, scale: f64) -> Option<Duration> {
    let base = RETRY_SCHEDULE.get(attempts.checked_sub(1)?)?;
    Some(base.mul_f64(scale))
}

/// Reads `SIM_RETRY_SCALE`: a positive factor on every wait (0.01 plays 15 s as 150 ms).
pub fn parse_scale(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 1000.0)
        .ok_or_else(|| {
            format!("SIM_RETRY_SCALE must be a number above 0 (0.01 plays the schedule 100 times faster), not `{text}`")
        })
}

/// One try at delivering a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1 for the first.
    pub number: usize,
    /// When it was sent (RFC 3339, +08:00).
    pub at: String,
    /// The merchant's HTTP status; `None` when there was no answer.
    pub status: Option<u16>,
    /// The first 200 bytes of the answer's body.
    pub answer: String,
    /// Why there was no answer (refused connection, no answer within 5 s, …).
    pub error: Option<String>,
    pub acknowledged: bool,
    pub took_ms: u64,
    /// When the next attempt is due after this one (RFC 3339); `None`: none is.
    pub next_retry_at: Option<String>,
}

/// Where a notification chain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryState {
    /// Not acknowledged yet; another attempt is scheduled.
    Retrying,
    /// An attempt was answered 200 or 204.
    Acknowledged,
    /// Every scheduled attempt failed.
    GaveUp,
}

/// One notification and its attempts, as the console and the control API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationDelivery {
    /// Names it in `POST /sim/notifications/{id}/retry`.
    pub id: u64,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, …
    pub event_type: String,
    /// The `out_trade_no` (payments) or `out_refund_no` (refunds) it is about.
    pub about: String,
    pub url: String,
    pub state: DeliveryState,
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due (RFC 3339), while `Retrying`.
    pub next_retry_at: Option<String>,
}

/// A chain as kept: the public view and what sending it again needs.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub view: NotificationDelivery,
    pub notification: SignedNotification,
    /// When the scheduler sends the next attempt.
    pub due: Option<Instant>,
    /// An attempt is on the wire: nobody else starts one.
    pub in_flight: bool,
}

/// Every chain, by id.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    chains: BTreeMap<u64, Chain>,
    next_id: u64,
}

impl Deliveries {
    /// Opens a chain for a notification about to be sent for the first time; its id.
    pub fn open(&mut self, event_type: &str, about: &str, url: &str, n: SignedNotification) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.chains.insert(
            id,
            Chain {
                view: NotificationDelivery {
                    id,
                    event_type: event_type.to_string(),
                    about: about.to_string(),
                    url: url.to_string(),
                    state: DeliveryState::Retrying,
                    attempts: Vec::new(),
                    next_retry_at: None,
                },
                notification: n,
                due: None,
                in_flight: true,
            },
        );
        id
    }

    pub fn get(&self, id: u64) -> Option<&Chain> {
        self.chains.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Chain> {
        self.chains.get_mut(&id)
    }

    /// Oldest first.
    pub fn all(&self) -> impl Iterator<Item = &NotificationDelivery> {
        self.chains.values().map(|c| &c.view)
    }

    /// The chains about one `out_trade_no` or `out_refund_no`, oldest first.
    pub fn about<'a>(&'a self, number: &'a str) -> impl Iterator<Item = &'a NotificationDelivery> {
        self.all().filter(move |d| d.about == number)
    }
}

/// The first [`ANSWER_KEPT`] bytes of `body`, cut at a character boundary.
pub fn clip(body: &str) -> String {
    body[..body.floor_char_boundary(ANSWER_KEPT)].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_wechat_pays_and_scales() {
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert_eq!(total, Duration::from_secs(24 * 3600 + 4 * 60), "总计 24h4m");
        assert_eq!(wait_after(1, 1.0), Some(Duration::from_secs(15)));
        assert_eq!(wait_after(4, 1.0), Some(Duration::from_secs(180)));
        assert_eq!(wait_after(15, 1.0), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(wait_after(16, 1.0), None, "16 attempts, then it gives up");
        assert_eq!(wait_after(0, 1.0), None);
        assert_eq!(wait_after(1, 0.01), Some(Duration::from_millis(150)));
    }

    #[test]
    fn only_200_and_204_acknowledge() {
        assert!(acknowledges(200) && acknowledges(204));
        for s in [201, 202, 301, 400, 404, 500, 503] {
            assert!(!acknowledges(s), "{s}");
        }
    }

    #[test]
    fn the_scale_must_be_a_positive_number() {
        assert_eq!(parse_scale("0.01"), Ok(0.01));
        assert_eq!(parse_scale(" 1 "), Ok(1.0));
        for bad in ["0", "-1", "fast", "NaN", "inf", ""] {
            let e = parse_scale(bad).unwrap_err();
            assert!(e.contains("SIM_RETRY_SCALE"), "{e}");
        }
    }

    #[test]
    fn answers_are_clipped_at_a_character_boundary() {
        assert_eq!(clip("204"), "204");
        let long = "错".repeat(100); // 300 bytes
        let c = clip(&long);
        assert!(c.len() <= ANSWER_KEPT && c.len() > ANSWER_KEPT - 3);
        assert!(long.starts_with(&c));
    }
}
