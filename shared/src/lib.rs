//! The library every wxpay function binary is built from. "Contract §N" in comments is a
//! section of `docs/CONTRACT.md`.
//!
//! Domain logic (`handlers`) sees typed requests and a [`store::Store`]; the `runtime`
//! adapter at the edge turns Lambda events, raw `callFunction` events and local HTTP into
//! those requests and the result envelope back into each shape.

pub mod api;
pub mod call;
pub mod certs;
pub mod client;
pub mod config;
pub mod crypto;
pub mod deadline;
pub mod error;
pub mod formats;
pub mod handlers;
pub mod identity;
pub mod invocation;
pub mod logging;
pub mod metric;
pub mod miniprogram;
pub mod notify;
pub mod outbox;
pub mod planted;
pub mod price_list;
pub mod prices;
pub mod reconcile;
pub mod runtime;
pub mod secrets;
pub mod session;
pub mod settlement;
pub mod state;
pub mod store;
pub mod tradebill;
pub mod util;
