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

mod api;
mod auth;
pub mod bill;
mod bill_control;
mod control;
pub mod crypto;
pub mod keys;
mod login;
mod notify;
mod platform;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use notify::{NotificationEvent, NotifyOutcome, SignedNotification};
pub use platform::PlatformMode;
pub use state::{SimOrder, SimRefund};

use platform::{Identity, Platform};
use state::State;

/// Locks ignoring poisoning: a panicking test thread must not wedge every later request.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who the simulated WeChat Pay serves and how it behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub appid: String,
    pub mchid: String,
    /// 32 bytes; encrypts notification resources and `/v3/certificates`.
    pub apiv3_key: String,
    /// The merchant API certificate serial requests must name.
    pub merchant_serial_no: String,
    /// SPKI (or PKCS#1) PEM that verifies merchant request signatures.
    pub merchant_public_key_pem: String,
    pub mode: PlatformMode,
    /// Complete refunds automatically (SUCCESS + notification) after this delay.
    pub auto_refund_after: Option<Duration>,
    /// The mini-program's AppSecret, which `GET /sns/jscode2session` checks.
    pub app_secret: String,
    /// WeChat Pay answers `429 FREQUENCY_LIMITED` to a refund request for an order that had
    /// one less than this long ago ("同一笔订单多次退款的请求需相隔1分钟"). Tests shorten it.
    pub refund_frequency_window: Duration,
}

/// The merchant's app (mini-program) in a default configuration.
pub const DEFAULT_APPID: &str = "wx8888888888888888";

impl SimConfig {
    /// appid [`DEFAULT_APPID`], mchid `1900000001`, a random APIv3 key, certificates.
    pub fn for_merchant(keys: &keys::MerchantKeys) -> SimConfig {
        SimConfig {
            appid: DEFAULT_APPID.to_string(),
            mchid: "1900000001".to_string(),
            apiv3_key: crypto::random_alnum(32),
            merchant_serial_no: keys.serial_no.clone(),
            merchant_public_key_pem: keys.public_key_pem.clone(),
            mode: PlatformMode::Certificate,
            auto_refund_after: None,
            app_secret: crypto::random_from(b"0123456789abcdef", 32),
            refund_frequency_window: Duration::from_secs(60),
        }
    }
}

/// How a refund ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundOutcome {
    Success,
    Abnormal,
    Closed,
}

impl RefundOutcome {
    pub(crate) fn status(self) -> &'static str {
        match self {
            RefundOutcome::Success => "SUCCESS",
            RefundOutcome::Abnormal => "ABNORMAL",
            RefundOutcome::Closed => "CLOSED",
        }
    }
}

/// Misbehaviour to apply to the next merchant request(s) whose path starts with
/// `path_prefix` (query string excluded).
#[derive(Debug, Clone)]
pub struct Fault {
    pub path_prefix: String,
    /// How many matching requests it applies to.
    pub times: usize,
    pub kind: FaultKind,
}

impl Fault {
    pub fn new(path_prefix: impl Into<String>, times: usize, kind: FaultKind) -> Fault {
        Fault {
            path_prefix: path_prefix.into(),
            times,
            kind,
        }
    }
}

#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer `(status, code, message)` as a signed error body without touching state.
    Status(u16, String, String),
    /// Process the request, then hold the answer back this long.
    Delay(Duration),
    /// Process the request; the answer carries a well-formed signature that does not verify.
    BadSignature,
    /// Process the request; the answer has no `Wechatpay-*` signature headers.
    Unsigned,
    /// Process the request; the signature is a `WECHATPAY/SIGNTEST/...` probe.
    SignTestProbe,
    /// Process the request; the answer is signed as usual but its `Wechatpay-Signature-Type`
    /// names this algorithm instead (empty: the header is left out).
    SignatureType(String),
    /// Drop the connection without answering (the request is not processed).
    Disconnect,
}

impl FaultKind {
    pub fn status(status: u16, code: impl Into<String>, message: impl Into<String>) -> FaultKind {
        FaultKind::Status(status, code.into(), message.into())
    }
}

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

pub(crate) struct Inner {
    pub config: SimConfig,
    pub addr: SocketAddr,
    pub merchant_key: crypto::Verifier,
    pub platform: Mutex<Platform>,
    pub state: Mutex<State>,
    pub logins: Mutex<login::Logins>,
    pub http: reqwest::Client,
    pub shutdown: tokio::sync::Notify,
}

/// A running simulator. Cheap to clone; every clone drives the same server.
#[derive(Clone)]
pub struct Simulator {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

fn invalid_input(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

impl Simulator {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        Simulator::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<Simulator> {
        if config.apiv3_key.len() != 32 {
            return Err(invalid_input(format!(
                "apiv3_key must be 32 bytes, it has {}",
                config.apiv3_key.len()
            )));
        }
        let merchant_key = crypto::Verifier::from_pem(&config.merchant_public_key_pem)
            .map_err(|e| invalid_input(format!("merchant_public_key_pem: {e}")))?;
        let mode = config.mode;
        // RSA generation takes a noticeable fraction of a second: keep it off the runtime.
        let platform = tokio::task::spawn_blocking(move || Platform::generate(mode))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sim = Simulator {
            inner: Arc::new(Inner {
                config,
                addr,
                merchant_key,
                platform: Mutex::new(platform),
                state: Mutex::new(State::default()),
                logins: Mutex::new(login::Logins::default()),
                http,
                shutdown: tokio::sync::Notify::new(),
            }),
        };
        tokio::spawn(server::serve(listener, sim.clone()));
        Ok(sim)
    }

    /// A `wx.login()` code for this openid, as the user's phone would get it: valid for five
    /// minutes, exchangeable once at `GET /sns/jscode2session`.
    pub fn login_code(&self, openid: &str) -> String {
        lock(&self.inner.logins).issue(openid, None)
    }

    /// A login code whose exchange fails with this WeChat `errcode` (e.g. 40226, 45011).
    pub fn failing_login_code(&self, openid: &str, errcode: i64) -> String {
        lock(&self.inner.logins).issue(openid, Some(errcode))
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// Stops accepting connections (connections already open finish their requests).
    pub fn shutdown(&self) {
        self.inner.shutdown.notify_one();
    }

    // ---- platform identities ----

    /// The key to verify WeChat Pay with: the WeChat Pay public key when there is one
    /// (PublicKey and Mixed modes), otherwise the newest platform certificate's key.
    pub fn platform_public_key_pem(&self) -> String {
        let p = lock(&self.inner.platform);
        p.public_key
            .as_ref()
            .or(p.certs.last())
            .map(|i| i.public_key_pem.clone())
            .unwrap_or_default()
    }

    /// `PUB_KEY_ID_...` in PublicKey and Mixed modes.
    pub fn public_key_id(&self) -> Option<String> {
        lock(&self.inner.platform)
            .public_key
            .as_ref()
            .map(|i| i.serial.clone())
    }

    /// The newest platform certificate's serial (40 upper-hex), in Certificate and Mixed modes.
    pub fn platform_cert_serial(&self) -> Option<String> {
        lock(&self.inner.platform)
            .certs
            .last()
            .map(|i| i.serial.clone())
    }

    /// The newest platform certificate (PEM), in Certificate and Mixed modes.
    pub fn platform_cert_pem(&self) -> Option<String> {
        lock(&self.inner.platform)
            .certs
            .last()
            .and_then(|i| i.cert.as_ref().map(|c| c.pem.clone()))
    }

    /// The newest platform certificate's public key (SPKI PEM).
    pub fn platform_cert_public_key_pem(&self) -> Option<String> {
        lock(&self.inner.platform)
            .certs
            .last()
            .map(|i| i.public_key_pem.clone())
    }

    /// Every platform certificate served, oldest first: (serial, PEM).
    pub fn platform_certificates(&self) -> Vec<(String, String)> {
        lock(&self.inner.platform)
            .certs
            .iter()
            .filter_map(|i| i.cert.as_ref().map(|c| (i.serial.clone(), c.pem.clone())))
            .collect()
    }

    /// The public key (SPKI PEM) behind a `Wechatpay-Serial` value.
    pub fn verifying_key_pem(&self, serial: &str) -> Option<String> {
        lock(&self.inner.platform)
            .find(serial)
            .map(|i| i.public_key_pem.clone())
    }

    /// Issues a new platform certificate: `/v3/certificates` serves both and the new one
    /// signs from now on, as when WeChat Pay rotates certificates. Returns its serial.
    /// Generates an RSA key, so it blocks for a moment.
    pub fn add_platform_certificate(&self) -> Result<String, SimError> {
        let id = Identity::new_certificate().map_err(SimError::Crypto)?;
        let serial = id.serial.clone();
        lock(&self.inner.platform).certs.push(Arc::new(id));
        Ok(serial)
    }

    // ---- state ----

    pub fn order(&self, out_trade_no: &str) -> Option<SimOrder> {
        lock(&self.inner.state).orders.get(out_trade_no).cloned()
    }

    pub fn orders(&self) -> Vec<SimOrder> {
        lock(&self.inner.state).orders.values().cloned().collect()
    }

    pub fn refund(&self, out_refund_no: &str) -> Option<SimRefund> {
        lock(&self.inner.state).refunds.get(out_refund_no).cloned()
    }

    pub fn refunds(&self) -> Vec<SimRefund> {
        lock(&self.inner.state).refunds.values().cloned().collect()
    }

    /// Merchant requests (control API excluded) whose path starts with `path_prefix`;
    /// `""` or `"/"` counts all of them.
    pub fn request_count(&self, path_prefix: &str) -> usize {
        lock(&self.inner.state)
            .hits
            .iter()
            .filter(|(p, _)| p.starts_with(path_prefix))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn inject_fault(&self, fault: Fault) {
        if fault.times > 0 {
            lock(&self.inner.state).faults.push(fault);
        }
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.state).faults.clear();
    }

    /// The next `times` refund API requests are processed (a refund is accepted), but
    /// answered only after `delay`: longer than the client waits, it has given up.
    pub fn answer_refunds_late(&self, delay: Duration, times: usize) {
        self.inject_fault(Fault::new(
            "/v3/refund/domestic/refunds",
            times,
            FaultKind::Delay(delay),
        ));
    }

    /// What the merchant's account can still pay refunds from, in fen; `None` (the start)
    /// is unlimited. A refund above it is refused `403 NOT_ENOUGH` (余额不足).
    pub fn set_merchant_balance(&self, fen: Option<i64>) {
        lock(&self.inner.state).merchant_balance = fen;
    }

    pub fn merchant_balance(&self) -> Option<i64> {
        lock(&self.inner.state).merchant_balance
    }

    // ---- payments ----

    pub(crate) fn mark_paid(&self, out_trade_no: &str) -> Result<SimOrder, SimError> {
        let mut st = lock(&self.inner.state);
        let order = st
            .orders
            .get_mut(out_trade_no)
            .ok_or_else(|| SimError::OrderNotFound(out_trade_no.to_string()))?;
        if order.trade_state != "NOTPAY" {
            return Err(SimError::InvalidState(format!(
                "order {out_trade_no} is {}, only NOTPAY orders can be paid",
                order.trade_state
            )));
        }
        let now = crypto::now_cst();
        if order.is_expired(now) {
            return Err(SimError::InvalidState(format!(
                "order {out_trade_no} expired at {}",
                order.time_expire.as_deref().unwrap_or_default()
            )));
        }
        order.trade_state = "SUCCESS".to_string();
        order.transaction_id = Some(format!(
            "4200000{}{}{}",
            crypto::random_digits(3),
            crypto::date_digits(now),
            crypto::random_digits(10)
        ));
        order.success_time = Some(crypto::format_time(now));
        if order.payer_openid.is_none() {
            order.payer_openid = Some(crypto::random_openid());
        }
        Ok(order.clone())
    }

    /// The user pays: the order becomes SUCCESS and `TRANSACTION.SUCCESS` goes to its
    /// notify_url. Returns what the receiver answered (the order stays paid even if the
    /// delivery fails).
    pub async fn pay(&self, out_trade_no: &str) -> Result<NotifyOutcome, SimError> {
        let order = self.mark_paid(out_trade_no)?;
        let n = self.transaction_notification(&order);
        self.deliver(&n, &order.notify_url).await
    }

    /// Paid at WeChat Pay, but the notification is lost.
    pub async fn mark_paid_silently(&self, out_trade_no: &str) -> Result<(), SimError> {
        self.mark_paid(out_trade_no).map(|_| ())
    }

    /// Ends a refund with `outcome` and sends the matching `REFUND.*` notification to the
    /// refund's notify_url. A PROCESSING or ABNORMAL refund can be completed.
    pub async fn complete_refund(
        &self,
        out_refund_no: &str,
        outcome: RefundOutcome,
    ) -> Result<NotifyOutcome, SimError> {
        let refund = self.finish_refund(out_refund_no, outcome)?;
        let Some(url) = refund.notify_url.clone() else {
            return Err(SimError::NoNotifyUrl(out_refund_no.to_string()));
        };
        let n = self.notification(NotificationEvent {
            event_type: format!("REFUND.{}", outcome.status()),
            original_type: "refund".to_string(),
            plaintext: refund.notification_json(),
        });
        self.deliver(&n, &url).await
    }

    /// Ends a refund with `outcome`, but the `REFUND.*` notification is lost.
    pub fn complete_refund_silently(
        &self,
        out_refund_no: &str,
        outcome: RefundOutcome,
    ) -> Result<SimRefund, SimError> {
        self.finish_refund(out_refund_no, outcome)
    }

    fn finish_refund(
        &self,
        out_refund_no: &str,
        outcome: RefundOutcome,
    ) -> Result<SimRefund, SimError> {
        let mut st = lock(&self.inner.state);
        let r = st
            .refunds
            .get_mut(out_refund_no)
            .ok_or_else(|| SimError::RefundNotFound(out_refund_no.to_string()))?;
        if r.status != "PROCESSING" && r.status != "ABNORMAL" {
            return Err(SimError::InvalidState(format!(
                "refund {out_refund_no} is already {}",
                r.status
            )));
        }
        r.status = outcome.status().to_string();
        if outcome == RefundOutcome::Success {
            r.success_time = Some(crypto::format_time(crypto::now_cst()));
        }
        let r = r.clone();
        st.sync_refund_state(&r.out_trade_no);
        Ok(r)
    }

    // ---- notifications ----

    /// Builds (without sending) a notification carrying `event.plaintext`, encrypted and
    /// signed as WeChat Pay does.
    pub fn notification(&self, event: NotificationEvent) -> SignedNotification {
        let nonce = crypto::nonce12();
        let plaintext = event.plaintext.to_string();
        // Only a key of the wrong length fails, and start() refuses those.
        let ciphertext = crypto::aes_gcm_encrypt(
            self.inner.config.apiv3_key.as_bytes(),
            &nonce,
            &event.original_type,
            plaintext.as_bytes(),
        )
        .expect("the APIv3 key was checked at start");
        let body = serde_json::json!({
            "id": crypto::uuid_like(),
            "create_time": crypto::format_time(crypto::now_cst()),
            "resource_type": "encrypt-resource",
            "event_type": event.event_type,
            "summary": notify::summary_for(&event.event_type),
            "resource": {
                "original_type": event.original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "associated_data": event.original_type,
                "nonce": nonce,
            },
        })
        .to_string();
        let identity = lock(&self.inner.platform).next_signer();
        SignedNotification::build(identity, body)
    }

    fn transaction_notification(&self, order: &SimOrder) -> SignedNotification {
        self.notification(NotificationEvent {
            event_type: "TRANSACTION.SUCCESS".to_string(),
            original_type: "transaction".to_string(),
            plaintext: order.transaction_json(Some("SUCCESS")),
        })
    }

    /// A fresh `TRANSACTION.SUCCESS` for a paid order (for duplicate-delivery tests).
    pub fn build_transaction_notification(&self, out_trade_no: &str) -> Option<SignedNotification> {
        let order = self.order(out_trade_no).filter(SimOrder::is_paid)?;
        Some(self.transaction_notification(&order))
    }

    /// A fresh `REFUND.*` notification for the refund's current status (not PROCESSING).
    pub fn build_refund_notification(&self, out_refund_no: &str) -> Option<SignedNotification> {
        let refund = self
            .refund(out_refund_no)
            .filter(|r| r.status != "PROCESSING")?;
        Some(self.notification(NotificationEvent {
            event_type: format!("REFUND.{}", refund.status),
            original_type: "refund".to_string(),
            plaintext: refund.notification_json(),
        }))
    }

    /// POSTs the notification to `url` exactly as built.
    pub async fn deliver(
        &self,
        n: &SignedNotification,
        url: &str,
    ) -> Result<NotifyOutcome, SimError> {
        let mut req = self.inner.http.post(url);
        for (k, v) in &n.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req
            .body(n.body.clone())
            .send()
            .await
            .map_err(|e| SimError::Delivery(format!("POST {url}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| SimError::Delivery(format!("reading the answer of {url}: {e}")))?;
        Ok(NotifyOutcome { status, body })
    }
}
