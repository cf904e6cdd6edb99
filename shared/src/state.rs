//! Everything a function builds once per instance and keeps warm across invocations.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::HeaderMap;
use serde_json::Value;

use crate::call::{Call, NotifyAnswer};
use crate::certs::PlatformKeys;
use crate::client::WechatPayClient;
use crate::config::Config;
use crate::error::AppError;
use crate::miniprogram::MiniProgramClient;
use crate::outbox::Courier;
use crate::prices::Prices;
use crate::session::SessionTokens;
use crate::settlement::{Merchant, Settlement};
use crate::store::{self, Store, StoreError};

/// A handler for calls by `type`. Boxed, so that a table of them can name each one: the
/// table a binary is started with is then the only reference to its handlers, and the
/// linker leaves out every handler the binary does not serve.
pub type CallHandler =
    for<'a> fn(
        &'a App,
        &'a Call,
    ) -> Pin<Box<dyn Future<Output = Result<Value, AppError>> + Send + 'a>>;

/// The handler for WeChat Pay's signed notifications.
pub type NotificationHandler =
    for<'a> fn(
        &'a App,
        &'a HeaderMap,
        &'a [u8],
    ) -> Pin<Box<dyn Future<Output = NotifyAnswer> + Send + 'a>>;

/// One `type` a binary answers, and its handler.
pub struct Route {
    pub ty: &'static str,
    pub handler: CallHandler,
}

/// What one function binary serves (contract §5): the types it answers and, for the binaries
/// that receive them, WeChat Pay's notifications. The shape lives here, beside the state
/// that carries it; `handlers` fills in each binary's table, so nothing here reaches up
/// into the handlers.
pub struct Routes {
    /// In the order error messages list them.
    pub calls: &'static [Route],
    pub notifications: Option<NotificationHandler>,
}

impl Routes {
    pub fn types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.calls.iter().map(|r| r.ty)
    }

    pub(crate) fn handler(&self, ty: &str) -> Option<CallHandler> {
        self.calls.iter().find(|r| r.ty == ty).map(|r| r.handler)
    }
}

pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub wechat: WechatPayClient,
    /// The price list of `API_BASE_URL` (or `DEFAULT_PRICES` alone).
    pub prices: Prices,
    /// Verifies session tokens; `None` without `SESSION_SECRET`.
    pub sessions: Option<SessionTokens>,
    /// `jscode2session`, for `wxpay_login`.
    pub miniprogram: MiniProgramClient,
    /// One price list per `API_BASE_URL_<BUSINESSTYPE>`, each with its own warm cache:
    /// an order is priced by the backend that will be told it was paid.
    business_prices: BTreeMap<String, Prices>,
    /// The `type`s this binary serves, with their handlers.
    pub routes: &'static Routes,
    last_outbox_sweep: Mutex<Option<Instant>>,
}

impl App {
    /// Builds the state; touches no network (MySQL and TLS are set up on first use, and
    /// so is the schema check: see [`store::OnStart`]).
    pub fn new(config: Config, routes: &'static Routes) -> Result<App, StoreError> {
        let on_start = if config.migrate_on_start {
            store::OnStart::Migrate
        } else {
            store::OnStart::Check
        };
        let store = store::open_with(
            config.database_url.expose(),
            config.database_ca.as_ref(),
            on_start,
        )?;
        Ok(Self::with_store(config, store, routes))
    }

    pub fn with_store(config: Config, store: Arc<dyn Store>, routes: &'static Routes) -> App {
        let keys = Arc::new(PlatformKeys::new(
            config.platform_key.clone(),
            config.apiv3_key.clone(),
        ));
        let wechat = WechatPayClient::new(&config, keys);
        let prices_of = |backend: Option<String>| {
            Prices::new(
                backend,
                config.price_cache_ttl,
                config.default_prices.clone(),
            )
        };
        let prices = prices_of(config.api_base_url.clone());
        let business_prices = config
            .api_base_urls
            .iter()
            .map(|(business, url)| (business.clone(), prices_of(Some(url.clone()))))
            .collect();
        let sessions = config.login.session_secret.as_ref().map(|secret| {
            SessionTokens::new(
                secret.expose().as_bytes(),
                &config.appid,
                config.login.session_ttl,
            )
        });
        let miniprogram = MiniProgramClient::new(
            &config.login.api_base_url,
            &config.appid,
            config.wechatpay_timeout,
        );
        App {
            config: Arc::new(config),
            store,
            wechat,
            prices,
            sessions,
            miniprogram,
            business_prices,
            routes,
            last_outbox_sweep: Mutex::new(None),
        }
    }

    /// Whether this instance should look for due deliveries now; at most once per
    /// `OUTBOX_SWEEP_INTERVAL_SECS`, so a busy instance does not query the outbox on every
    /// notification.
    pub fn outbox_sweep_due(&self) -> bool {
        let mut last = self
            .last_outbox_sweep
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= self.config.outbox_sweep_interval);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// The price list of the backend an order of `business_type` will be reported to.
    /// Untrusted callers may only name a business type that has its own backend
    /// (`API_BASE_URL_<BUSINESSTYPE>`); trusted ones fall back to `API_BASE_URL`.
    pub fn prices_for(
        &self,
        business_type: Option<&str>,
        trusted: bool,
    ) -> Result<&Prices, AppError> {
        let Some(business) = business_type else {
            return Ok(&self.prices);
        };
        match self.business_prices.get(&business.to_ascii_uppercase()) {
            Some(prices) => Ok(prices),
            None if trusted => Ok(&self.prices),
            None => Err(AppError::invalid(format!(
                "field `businessType`: `{business}` has no backend here (API_BASE_URL_{} is not set)",
                business.to_ascii_uppercase()
            ))),
        }
    }

    /// Deliveries to the business backend from this instance.
    pub fn courier(&self) -> Courier<'_> {
        Courier::new(self.store.as_ref(), &self.config)
    }

    /// Settles this merchant's payments and refunds against the store, handing deliveries
    /// to `courier`.
    pub fn settlement<'a>(&'a self, courier: &'a Courier<'a>) -> Settlement<'a> {
        Settlement::new(
            self.store.as_ref(),
            Merchant {
                mchid: &self.config.mchid,
                appid: &self.config.appid,
            },
            courier,
        )
    }

    /// Whether this binary answers WeChat Pay notifications.
    pub fn serves_notifications(&self) -> bool {
        self.routes.notifications.is_some()
    }
}
