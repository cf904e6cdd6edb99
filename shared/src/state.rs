//! Everything a function builds once per instance and keeps warm across invocations.

use std::sync::Arc;

use crate::certs::PlatformKeys;
use crate::client::WechatPayClient;
use crate::config::Config;
use crate::prices::Prices;
use crate::store::{self, Store, StoreError};

pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub wechat: WechatPayClient,
    pub prices: Prices,
    /// The `type`s this binary serves.
    pub types: &'static [&'static str],
}

impl App {
    /// Builds the state; touches no network (MySQL and TLS are set up on first use).
    pub fn new(config: Config, types: &'static [&'static str]) -> Result<App, StoreError> {
        let store = store::open(config.database_url.expose())?;
        Ok(Self::with_store(config, store, types))
    }

    pub fn with_store(
        config: Config,
        store: Arc<dyn Store>,
        types: &'static [&'static str],
    ) -> App {
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
            types,
        }
    }

    pub fn serves(&self, ty: &str) -> bool {
        self.types.contains(&ty)
    }

    /// Whether this binary answers WeChat Pay notifications.
    pub fn serves_notifications(&self) -> bool {
        self.serves(crate::handlers::ORDER_CALLBACK)
            || self.serves(crate::handlers::REFUND_CALLBACK)
    }
}
