//! The running simulator: what it holds, and the accessors every resource shares.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::Date;

use crate::bill;
use crate::config::SimConfig;
use crate::crypto;
use crate::error::SimError;
use crate::faults::{Fault, FaultKind};
use crate::login::Logins;
use crate::model::{SimOrder, SimRefund};
use crate::platform::{Identity, Platform};
use crate::state::State;

/// Locks ignoring poisoning: a panicking test thread must not wedge every later request.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Inner {
    pub config: SimConfig,
    pub addr: SocketAddr,
    pub merchant_key: crypto::Verifier,
    pub platform: Mutex<Platform>,
    pub state: Mutex<State>,
    pub logins: Mutex<Logins>,
    /// The factor on every wait of the notification retry schedule.
    pub retry_scale: Mutex<f64>,
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

impl Simulator {
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
    /// Its key is the next of the stored test keys (see [`crate::keys`]).
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

    // ---- the trade bill (everything else about it is in crate::bill) ----

    /// Day `date`'s ALL bill as the download would serve it now (tampering included).
    pub fn trade_bill_file(&self, date: Date) -> Option<Vec<u8>> {
        let st = lock(&self.inner.state);
        bill::file::render(&st.orders, &st.refunds, &st.bill.tamper, date)
    }

    /// Leaves the payment (`out_trade_no`) or refund (`out_refund_no`) out of every bill.
    pub fn drop_from_bill(&self, number: &str) {
        lock(&self.inner.state).bill.drop_row(number);
    }

    /// Bills show `fen` for this payment (`out_trade_no`) or refund (`out_refund_no`).
    pub fn alter_bill_amount(&self, number: &str, fen: i64) {
        lock(&self.inner.state).bill.alter_amount(number, fen);
    }

    /// `hash_value` no longer matches the file (a corrupted download).
    pub fn break_bill_hash(&self, on: bool) {
        lock(&self.inner.state).bill.tamper.wrong_hash = on;
    }

    /// Serves bills up to and including today at once, instead of after 10:00 Beijing time
    /// the next day (local runs and tests).
    pub fn serve_bills_early(&self, on: bool) {
        lock(&self.inner.state).bill.tamper.early = on;
    }

    /// `fen` of refund `out_refund_no` went back to a coupon: the bill's 退款金额 is that
    /// much less than its 申请退款金额.
    pub fn refund_partly_to_coupon(&self, out_refund_no: &str, fen: i64) {
        let mut st = lock(&self.inner.state);
        st.bill
            .tamper
            .coupon_refunds
            .insert(out_refund_no.to_string(), fen);
    }

    /// Another app of the same merchant (appid `appid`) took a payment of `fen` now: the
    /// merchant's bill lists it.
    pub fn pay_in_other_app(&self, appid: &str, out_trade_no: &str, fen: i64) {
        let payment = crate::bill::desk::OtherAppPayment {
            appid: appid.to_string(),
            mchid: self.config().mchid.clone(),
            out_trade_no: out_trade_no.to_string(),
            transaction_id: format!("42000{}", crypto::random_digits(23)),
            fen,
            success_time: crypto::format_time(crypto::now_cst()),
        };
        lock(&self.inner.state).bill.tamper.other_apps.push(payment);
    }

    /// Serves `file` as day `date`'s bill, as it is (benchmarks of a day's volume).
    pub fn serve_bill_file(&self, date: Date, file: Vec<u8>) {
        let mut st = lock(&self.inner.state);
        st.bill.tamper.files.insert(date, std::sync::Arc::new(file));
    }

    /// Forgets every drop, altered amount and broken hash.
    pub fn reset_bill(&self) {
        lock(&self.inner.state).bill.reset();
    }
}
