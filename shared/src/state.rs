//! Everything a function builds once per instance and keeps warm across invocations.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::certs::PlatformKeys;
use crate::client::WechatPayClient;
use crate::config::Config;
use crate::handlers::Routes;
use crate::prices::Prices;
use crate::store::{self, Store, StoreError};

pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub wechat: WechatPayClient,
    pub prices: Prices,
    /// The `type`s this binary serves, with their handlers.
    pub routes: &'static Routes,
    last_outbox_sweep: Mutex<Option<Instant>>,
}

impl App {
    /// Builds the state; touches no network (MySQL and TLS are set up on first use).
    pub fn new(config: Config, routes: &'static Routes) -> Result<App, StoreError> {
        let store = store::open(config.database_url.expose())?;
        Ok(Self::with_store(config, store, routes))
    }

    pub fn with_store(config: Config, store: Arc<dyn Store>, routes: &'static Routes) -> App {
        let keys = Arc::new(PlatformKeys::new(
            config.platform_key.clone(),
            config.apiv3_key.clone(),
        ));
        let wechat = WechatPayClient::new(&config, keys);
        let prices = Prices::new(
            config.api_base_url.clone(),
            config.price_cache_ttl,
            config.default_prices.clone(),
        );
        App {
            config: Arc::new(config),
            store,
            wechat,
            prices,
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

    /// Whether this binary answers WeChat Pay notifications.
    pub fn serves_notifications(&self) -> bool {
        self.routes.notifications.is_some()
    }
}
