//! The whole payment flow on one machine, for the local runner and the end-to-end tests:
//! the router (every type) in local HTTP mode, the WeChat Pay simulator, and a fake
//! business backend, wired with merchant keys from the simulator's stored test keys.

pub mod backend;
pub mod lambda_api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use wxpay_shared::config::Config;
use wxpay_shared::state::App;
use wxpay_shared::store::{self, Store};
use wxpay_sim::keys::MerchantKeys;
use wxpay_sim::{PlatformMode, SimConfig, Simulator};

pub use backend::FakeBackend;

/// How to set the environment up.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub router_addr: SocketAddr,
    pub sim_addr: SocketAddr,
    pub backend_addr: SocketAddr,
    /// `sqlite://PATH`, `sqlite::memory:` or `mysql://…`.
    pub database_url: String,
    pub mode: PlatformMode,
    /// Configure the simulator's WeChat Pay public key (`WECHAT_PUBLIC_KEY[_ID]`).
    pub configure_public_key: bool,
    pub auto_refund_after: Option<Duration>,
    /// The simulator's spacing between refund requests for one order (WeChat Pay: 60 s).
    pub refund_frequency_window: Duration,
    pub internal_secret: Option<String>,
    /// Extra or overriding product variables.
    pub extra_vars: Vec<(String, String)>,
    /// Print what the fake backend receives.
    pub verbose_backend: bool,
    /// Keys of its own (the runner) or the process-wide test merchant keys (tests).
    pub fresh_keys: bool,
}

impl LocalOptions {
    /// Everything on free loopback ports, in-memory SQLite.
    pub fn for_tests() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        LocalOptions {
            router_addr: any,
            sim_addr: any,
            backend_addr: any,
            database_url: "sqlite::memory:".into(),
            mode: PlatformMode::Certificate,
            configure_public_key: false,
            auto_refund_after: None,
            // Tests refund one order several times in a row; the rule has its own tests.
            refund_frequency_window: Duration::ZERO,
            internal_secret: Some("test-internal-secret-0123456789".into()),
            extra_vars: Vec::new(),
            verbose_backend: false,
            fresh_keys: false,
        }
    }
}

pub struct LocalEnv {
    pub sim: Simulator,
    pub backend: FakeBackend,
    pub app: Arc<App>,
    pub store: Arc<dyn Store>,
    pub router_url: String,
    pub keys: MerchantKeys,
    pub vars: Vec<(String, String)>,
}

impl LocalEnv {
    pub async fn start(opts: LocalOptions) -> Result<LocalEnv, String> {
        let keys = if opts.fresh_keys {
            MerchantKeys::generate()
        } else {
            MerchantKeys::shared_test().clone()
        };
        let mut sim_config = SimConfig::for_merchant(&keys);
        sim_config.mode = opts.mode;
        sim_config.auto_refund_after = opts.auto_refund_after;
        sim_config.refund_frequency_window = opts.refund_frequency_window;
        let sim = Simulator::start_on(sim_config, opts.sim_addr)
            .await
            .map_err(|e| format!("simulator: {e}"))?;
        let backend = FakeBackend::start(
            opts.backend_addr,
            opts.internal_secret.clone(),
            opts.verbose_backend,
        )
        .await
        .map_err(|e| format!("backend: {e}"))?;
        let listener = tokio::net::TcpListener::bind(opts.router_addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", opts.router_addr))?;
        let router_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let router_url = format!("http://{router_addr}");

        let sc = sim.config();
        let mut vars: Vec<(String, String)> = vec![
            ("WECHAT_APPID".into(), sc.appid.clone()),
            ("WECHAT_MCHID".into(), sc.mchid.clone()),
            ("WECHAT_SERIAL_NO".into(), keys.serial_no.clone()),
            ("WECHAT_PRIVATE_KEY".into(), keys.private_key_pem.clone()),
            ("WECHAT_APIV3_KEY".into(), sc.apiv3_key.clone()),
            ("WECHAT_NOTIFY_URL".into(), format!("{router_url}/pay")),
            ("WECHATPAY_BASE_URL".into(), sim.base_url()),
            ("API_BASE_URL".into(), backend.url()),
            ("DATABASE_URL".into(), opts.database_url.clone()),
            // wxpay_login: the simulator also plays api.weixin.qq.com's jscode2session.
            ("WECHAT_API_BASE_URL".into(), sim.base_url()),
            ("WECHAT_APP_SECRET".into(), sc.app_secret.clone()),
            ("SESSION_SECRET".into(), wxpay_sim::crypto::random_alnum(48)),
            // Local runs apply the schema themselves: a function binary started with these
            // variables (the Lambda tests, a second instance) migrates a fresh database.
            ("MIGRATE_ON_START".into(), "true".into()),
        ];
        if let Some(secret) = &opts.internal_secret {
            vars.push(("INTERNAL_API_SECRET".into(), secret.clone()));
        }
        if opts.configure_public_key {
            let id = sim
                .public_key_id()
                .ok_or("the simulator has no public key in this mode")?;
            vars.push(("WECHAT_PUBLIC_KEY".into(), sim.platform_public_key_pem()));
            vars.push(("WECHAT_PUBLIC_KEY_ID".into(), id));
        }
        for (k, v) in &opts.extra_vars {
            vars.retain(|(name, _)| name != k);
            vars.push((k.clone(), v.clone()));
        }
        let config = Config::from_vars(vars.clone()).map_err(|e| e.to_string())?;
        let store = store::open_with_ca(&opts.database_url, config.database_ca.as_ref())
            .map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        let app = Arc::new(App::with_store(
            config,
            store.clone(),
            wxpay_shared::handlers::ALL_TYPES,
        ));
        let served = app.clone();
        tokio::spawn(wxpay_shared::runtime::serve(served, listener));
        Ok(LocalEnv {
            sim,
            backend,
            app,
            store,
            router_url,
            keys,
            vars,
        })
    }
}
