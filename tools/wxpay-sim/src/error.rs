//! What can go wrong when a test drives the simulator directly.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    OrderNotFound(String),
    RefundNotFound(String),
    /// The order or refund is not in a state that allows this (e.g. paying a paid order).
    InvalidState(String),
    /// The state changed but there is no notify_url to tell (refund created without one).
    NoNotifyUrl(String),
    /// The state changed but the notification could not be delivered.
    Delivery(String),
    Crypto(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::OrderNotFound(n) => write!(f, "no order with out_trade_no {n}"),
            SimError::RefundNotFound(n) => write!(f, "no refund with out_refund_no {n}"),
            SimError::InvalidState(m) => write!(f, "invalid state: {m}"),
            SimError::NoNotifyUrl(n) => write!(f, "{n} has no notify_url to notify"),
            SimError::Delivery(m) => write!(f, "notification delivery failed: {m}"),
            SimError::Crypto(m) => write!(f, "crypto error: {m}"),
        }
    }
}

impl std::error::Error for SimError {}
