//! Sending notifications the way WeChat Pay does: built, encrypted and signed, POSTed to
//! the merchant, every attempt recorded, and what was not acknowledged sent again on
//! WeChat Pay's schedule ([`crate::deliveries`]) until it is, or the schedule is spent.

use std::time::{Duration, Instant};

use crate::crypto;
use crate::deliveries::{
    acknowledges, clip, parse_scale, wait_after, Attempt, DeliveryState, NotificationDelivery,
    ANSWER_WITHIN,
};
use crate::error::SimError;
use crate::model::SimOrder;
use crate::notify::{summary_for, NotificationEvent, NotifyOutcome, SignedNotification};
use crate::sim::{lock, Simulator};

/// Why a notification cannot be sent again now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryRefused {
    NoSuchNotification(u64),
    /// The merchant answered 200 or 204 already.
    AlreadyAcknowledged(u64),
    /// An attempt is on its way.
    InFlight(u64),
}

impl std::fmt::Display for RetryRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryRefused::NoSuchNotification(id) => write!(f, "no notification {id}"),
            RetryRefused::AlreadyAcknowledged(id) => {
                write!(f, "notification {id} was acknowledged already")
            }
            RetryRefused::InFlight(id) => write!(f, "notification {id} has an attempt on its way"),
        }
    }
}

impl std::error::Error for RetryRefused {}

/// A failed POST in words a developer can act on.
fn describe(url: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("POST {url}: no answer within {} s", ANSWER_WITHIN.as_secs())
    } else if e.is_connect() {
        format!("POST {url}: cannot connect ({e})")
    } else {
        format!("POST {url}: {e}")
    }
}

impl Simulator {
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
            "summary": summary_for(&event.event_type),
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

    pub(crate) fn transaction_notification(&self, order: &SimOrder) -> SignedNotification {
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

    /// POSTs the notification to `url` exactly as built, once. What the merchant did not
    /// answer within 5 s counts as no answer, as at WeChat Pay.
    pub async fn deliver(
        &self,
        n: &SignedNotification,
        url: &str,
    ) -> Result<NotifyOutcome, SimError> {
        let mut req = self.inner.http.post(url).timeout(ANSWER_WITHIN);
        for (k, v) in &n.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req
            .body(n.body.clone())
            .send()
            .await
            .map_err(|e| SimError::Delivery(describe(url, &e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| SimError::Delivery(format!("reading the answer of {url}: {e}")))?;
        Ok(NotifyOutcome { status, body })
    }

    /// WeChat Pay sends `n` to `url` about `about` (an `out_trade_no` or `out_refund_no`):
    /// the first attempt now, whose outcome this returns, then — unless the merchant
    /// answered 200 or 204 — again on WeChat Pay's schedule, in the background.
    pub(crate) async fn send_with_retries(
        &self,
        n: SignedNotification,
        event_type: &str,
        about: &str,
        url: &str,
    ) -> Result<NotifyOutcome, SimError> {
        let id = lock(&self.inner.state)
            .deliveries
            .open(event_type, about, url, n.clone());
        let (_, result) = self.attempt(id, &n, url).await;
        self.keep_retrying(id);
        result
    }

    /// Sends one attempt of chain `id` (claimed by the caller), records it and when the
    /// next is due.
    async fn attempt(
        &self,
        id: u64,
        n: &SignedNotification,
        url: &str,
    ) -> (Attempt, Result<NotifyOutcome, SimError>) {
        let at = crypto::now_cst();
        let started = Instant::now();
        let result = self.deliver(n, url).await;
        let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let scale = self.notification_retry_scale();
        let acknowledged = matches!(&result, Ok(o) if acknowledges(o.status));
        let mut attempt = Attempt {
            number: 0,
            at: crypto::format_time(at),
            status: result.as_ref().ok().map(|o| o.status),
            answer: result.as_ref().map(|o| clip(&o.body)).unwrap_or_default(),
            error: result.as_ref().err().map(|e| e.to_string()),
            acknowledged,
            took_ms,
            next_retry_at: None,
        };
        let mut st = lock(&self.inner.state);
        // Chains are never removed.
        let Some(chain) = st.deliveries.get_mut(id) else {
            return (attempt, result);
        };
        attempt.number = chain.view.attempts.len() + 1;
        let wait = if acknowledged {
            None
        } else {
            wait_after(attempt.number, scale)
        };
        let next_at = wait.map(|w| crypto::format_time(crypto::now_cst() + w));
        attempt.next_retry_at = next_at.clone();
        chain.view.attempts.push(attempt.clone());
        chain.view.state = match (acknowledged, wait) {
            (true, _) => DeliveryState::Acknowledged,
            (false, Some(_)) => DeliveryState::Retrying,
            (false, None) => DeliveryState::GaveUp,
        };
        chain.view.next_retry_at = next_at;
        chain.due = wait.map(|w| Instant::now() + w);
        chain.in_flight = false;
        (attempt, result)
    }

    /// Sends chain `id`'s attempts when they fall due, until one is acknowledged or the
    /// schedule is spent. "Retry now" in between only moves the next due time later.
    fn keep_retrying(&self, id: u64) {
        let sim = self.clone();
        tokio::spawn(async move {
            loop {
                let due = {
                    let st = lock(&sim.inner.state);
                    match st.deliveries.get(id) {
                        Some(c) if c.view.state == DeliveryState::Retrying => c.due,
                        _ => None,
                    }
                };
                let Some(due) = due else { return };
                tokio::time::sleep_until(due.into()).await;
                let claimed = {
                    let mut st = lock(&sim.inner.state);
                    match st.deliveries.get_mut(id) {
                        Some(c) if !c.in_flight && c.due.is_some_and(|d| d <= Instant::now()) => {
                            c.in_flight = true;
                            Some((c.notification.refreshed(), c.view.url.clone()))
                        }
                        Some(_) => None,
                        None => return,
                    }
                };
                match claimed {
                    Some((n, url)) => {
                        let _ = sim.attempt(id, &n, &url).await;
                    }
                    // A "retry now" is on the wire; look again once it has landed.
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
    }

    /// Sends notification `id` again at once ("Retry now"), freshly signed. If it fails,
    /// the schedule goes on from the next wait; after the schedule was spent, this is one
    /// more attempt. Returns the attempt.
    pub async fn retry_notification_now(&self, id: u64) -> Result<Attempt, RetryRefused> {
        let (n, url) = {
            let mut st = lock(&self.inner.state);
            let chain = st
                .deliveries
                .get_mut(id)
                .ok_or(RetryRefused::NoSuchNotification(id))?;
            if chain.view.state == DeliveryState::Acknowledged {
                return Err(RetryRefused::AlreadyAcknowledged(id));
            }
            if chain.in_flight {
                return Err(RetryRefused::InFlight(id));
            }
            chain.in_flight = true;
            (chain.notification.refreshed(), chain.view.url.clone())
        };
        Ok(self.attempt(id, &n, &url).await.0)
    }

    /// Every notification sent (by [`Simulator::pay`], [`Simulator::complete_refund`], the
    /// console and the control API), oldest first, with its attempts.
    pub fn notification_deliveries(&self) -> Vec<NotificationDelivery> {
        lock(&self.inner.state).deliveries.all().cloned().collect()
    }

    /// The notifications about one `out_trade_no` or `out_refund_no`, oldest first.
    pub fn notification_deliveries_for(&self, number: &str) -> Vec<NotificationDelivery> {
        lock(&self.inner.state)
            .deliveries
            .about(number)
            .cloned()
            .collect()
    }

    /// The factor on every wait of the retry schedule (`SIM_RETRY_SCALE`, default 1).
    pub fn notification_retry_scale(&self) -> f64 {
        *lock(&self.inner.retry_scale)
    }

    /// Plays the retry schedule faster (0.01: 15 s becomes 150 ms) or slower, from the next
    /// wait on. Refuses anything but a positive number.
    pub fn set_notification_retry_scale(&self, scale: f64) -> Result<(), String> {
        let scale = parse_scale(&scale.to_string())?;
        *lock(&self.inner.retry_scale) = scale;
        Ok(())
    }
}
