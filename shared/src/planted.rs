//! Bugs planted on purpose, to show that the chaos campaign (tools/wxpay-chaos) catches
//! what it claims to: `scripts/chaos-planted.sh BUG` builds the router with the
//! `planted-bugs` feature and runs a campaign with `WXPAY_PLANTED_BUG=BUG`. Without the
//! feature (every shipped and tested build) `bug` is `false` and compiles away.
//!
//! - `delivered-before-answer`: the outbox row is marked delivered before the backend
//!   answers, so a failed delivery is never retried;
//! - `unguarded-paid`: the paid transition also takes an order that is already paid, so a
//!   duplicate notification records the payment twice.

/// Whether the planted bug `name` is switched on in this process.
pub fn bug(name: &str) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        std::env::var("WXPAY_PLANTED_BUG").is_ok_and(|v| v == name)
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = name;
        false
    }
}
