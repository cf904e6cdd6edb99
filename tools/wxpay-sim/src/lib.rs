//! A WeChat Pay API v3 simulator for testing merchant code end to end.
//!
//! It verifies merchant request signatures exactly as WeChat Pay does, signs every
//! response and notification with its own platform certificate and/or WeChat Pay public
//! key, keeps order and refund state, and sends encrypted notifications to the merchant's
//! `notify_url`. It is written independently of the product so that the two cannot share
//! a misunderstanding of the protocol.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wxpay_sim::{keys::MerchantKeys, SimConfig, Simulator};
//! let keys = MerchantKeys::shared_test();
//! let sim = Simulator::start(SimConfig::for_merchant(keys)).await?;
//! // point the product at sim.base_url(), create an order, then:
//! let outcome = sim.pay("ORDER123456").await?;
//! assert_eq!(outcome.status, 204);
//! # Ok(()) }
//! ```

//! The modules import one way only, from the resources at the top down to plain data:
//!
//! - the server (`server`) dispatches to the merchant API (`api`), the control API
//!   (`control`) and the console and cashier (`console`);
//! - the resources: `payments`, `refunds`, `notifications` (sent and retried), the trade
//!   bill ([`bill`], which knows neither the server nor the [`Simulator`]);
//! - the running simulator (`sim`), what it remembers (`state`, `model`, `deliveries`) and
//!   the primitives below ([`crypto`], [`keys`], `platform`, …).
//!
//! `tests/layers.rs` checks that no module imports one that imports it back.

mod api;
mod auth;
pub mod bill;
mod config;
mod console;
mod control;
pub mod crypto;
mod deliveries;
mod error;
mod faults;
mod fields;
mod guard;
pub mod keys;
mod login;
mod model;
mod money;
mod notifications;
mod notify;
mod payments;
mod platform;
mod refunds;
mod reply;
mod respond;
mod server;
mod sim;
mod state;

pub use config::{SimConfig, DEFAULT_APPID};
/// The control API's routes, one a line.
pub use control::ROUTES as CONTROL_API_ROUTES;
pub use deliveries::{Attempt, DeliveryState, NotificationDelivery, ANSWER_WITHIN, RETRY_SCHEDULE};
pub use error::SimError;
pub use faults::{Fault, FaultKind};
pub use model::{RefundOutcome, SimOrder, SimRefund};
pub use notifications::RetryRefused;
pub use notify::{NotificationEvent, NotifyOutcome, SignedNotification};
pub use platform::PlatformMode;
pub use sim::Simulator;
