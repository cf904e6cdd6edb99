//! The price list (contract §8): fetched from the business backend, kept in warm memory for
//! `PRICE_CACHE_TTL_SECS`, falling back to the last good list, then to `DEFAULT_PRICES`.
//! Prices arrive in yuan and are converted to fen exactly (29.9 → 2990, never 2989).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use crate::price_list::{parse_price_list, yuan_to_fen, PriceError, PriceList, MAX_AMOUNT_FEN};

#[derive(Deserialize)]
struct PricesEnvelope {
    success: bool,
    data: Option<PricesData>,
}

#[derive(Deserialize)]
struct PricesData {
    packages: BTreeMap<String, serde_json::Number>,
}

/// Parses the backend's answer. A package with an unusable price is left out (and logged)
/// rather than poisoning the whole list.
fn parse_backend_prices(body: &[u8]) -> Result<PriceList, String> {
    let env: PricesEnvelope =
        serde_json::from_slice(body).map_err(|e| format!("not a price list: {e}"))?;
    let data = env
        .data
        .filter(|_| env.success)
        .ok_or("backend answered success=false")?;
    let mut map = BTreeMap::new();
    for (name, number) in data.packages {
        // serde_json prints the shortest decimal that round-trips, i.e. what the backend sent.
        match yuan_to_fen(&number.to_string()) {
            Ok(fen) => {
                map.insert(name, fen);
            }
            Err(e) => tracing::warn!(package = %name, "ignoring price from backend: {e}"),
        }
    }
    if map.is_empty() {
        return Err("backend price list has no usable package".into());
    }
    Ok(PriceList::from_map(map))
}

struct Cached {
    list: Option<PriceList>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// The warm price cache.
pub struct Prices {
    backend: Option<String>,
    ttl: Duration,
    defaults: PriceList,
    cache: Mutex<Cached>,
    refresh: tokio::sync::Mutex<()>,
}

/// How long to leave a failing backend alone before asking again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

impl Prices {
    pub fn new(backend: Option<String>, ttl: Duration, defaults: PriceList) -> Self {
        Prices {
            backend,
            ttl,
            defaults,
            cache: Mutex::new(Cached {
                list: None,
                fetched_at: None,
                last_attempt: None,
            }),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<PriceList> {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let fresh = c
            .fetched_at
            .is_some_and(|t| now.duration_since(t) < self.ttl);
        let resting = c
            .last_attempt
            .is_some_and(|t| now.duration_since(t) < RETRY_AFTER_FAILURE.min(self.ttl));
        if fresh || resting || self.backend.is_none() {
            Some(c.list.clone().unwrap_or_else(|| self.defaults.clone()))
        } else {
            None
        }
    }

    /// The current list. Never fails: a broken backend means the last good list, or the
    /// defaults.
    pub async fn current(&self, http: &reqwest::Client) -> PriceList {
        if let Some(list) = self.fresh() {
            return list;
        }
        // One refresh at a time; the others wait and then read what it found.
        let _guard = self.refresh.lock().await;
        if let Some(list) = self.fresh() {
            return list;
        }
        let Some(base) = &self.backend else {
            return self.defaults.clone();
        };
        let url = format!("{base}/api/prices/current");
        let fetched = async {
            let resp = http
                .get(&url)
                .timeout(crate::deadline::budget(FETCH_TIMEOUT))
                .send()
                .await
                .map_err(|e| format!("request failed: {}", e.without_url()))?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status().as_u16()));
            }
            let body = crate::client::read_capped(resp, crate::client::MAX_ANSWER_BYTES)
                .await
                .map_err(|e| match e {
                    crate::client::BodyError::Read(e) => {
                        format!("reading body: {}", e.without_url())
                    }
                    too_large => too_large.to_string(),
                })?;
            parse_backend_prices(&body)
        }
        .await;
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        c.last_attempt = Some(now);
        match fetched {
            Ok(list) => {
                c.list = Some(list.clone());
                c.fetched_at = Some(now);
                list
            }
            Err(e) => {
                tracing::warn!(
                    "price list unavailable, using the last good one or DEFAULT_PRICES: {e}"
                );
                c.list.clone().unwrap_or_else(|| self.defaults.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_becomes_fen_exactly() {
        assert_eq!(yuan_to_fen("29.9"), Ok(2990));
        assert_eq!(yuan_to_fen("0.01"), Ok(1));
        assert_eq!(yuan_to_fen("19.99"), Ok(1999));
        assert_eq!(yuan_to_fen("0.29"), Ok(29));
        assert_eq!(yuan_to_fen("1.10"), Ok(110));
        assert_eq!(yuan_to_fen("10000"), Ok(1_000_000));
        // Every two-decimal price survives the f64 round trip serde_json makes.
        for fen in 1..=100_000i64 {
            let n = serde_json::Number::from_f64(fen as f64 / 100.0).unwrap();
            assert_eq!(yuan_to_fen(&n.to_string()), Ok(fen), "{n}");
        }
    }

    #[test]
    fn bad_prices_are_refused() {
        assert!(yuan_to_fen("0.015").is_err());
        assert!(yuan_to_fen("-1").is_err());
        assert!(yuan_to_fen("abc").is_err());
        assert!(yuan_to_fen("0").is_err());
        assert!(yuan_to_fen("10000.01").is_err());
        assert!(yuan_to_fen("1e3").is_err());
    }

    #[test]
    fn default_price_list_parses() {
        let list = parse_price_list("basic=0.01, premium=29.9").unwrap();
        assert_eq!(list.get("basic"), Some(1));
        assert_eq!(list.get("premium"), Some(2990));
        assert!(parse_price_list("basic").is_err());
        assert!(parse_price_list("=1").is_err());
    }

    #[test]
    fn backend_answer_parses_and_skips_bad_entries() {
        let body = br#"{"success":true,"data":{"packages":{"basic":0.01,"premium":29.9,"odd":0.001},"updatedAt":"x"}}"#;
        let list = parse_backend_prices(body).unwrap();
        assert_eq!(list.get("premium"), Some(2990));
        assert_eq!(list.get("odd"), None);
        assert!(parse_backend_prices(br#"{"success":false}"#).is_err());
        assert!(parse_backend_prices(b"<html>").is_err());
    }
}
