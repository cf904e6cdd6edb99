//! Prices as text becomes them: yuan to fen exactly, and the `NAME=YUAN,…` list of
//! `DEFAULT_PRICES`. Below both the configuration that reads them and the price cache
//! (`prices`) that fetches them, so neither reaches through the other.

use std::collections::BTreeMap;

/// Largest amount a single order may carry: 10,000 yuan.
pub const MAX_AMOUNT_FEN: i64 = 1_000_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PriceError {
    #[error("`{0}` is not an amount in yuan with at most two decimals")]
    NotYuan(String),
    #[error("`{0}` is outside 0.01–10000 yuan")]
    OutOfRange(String),
    #[error("entry `{0}` is not NAME=YUAN")]
    BadEntry(String),
}

/// Package name → price in fen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceList(BTreeMap<String, i64>);

impl PriceList {
    pub(crate) fn from_map(map: BTreeMap<String, i64>) -> Self {
        PriceList(map)
    }
    pub fn get(&self, package: &str) -> Option<i64> {
        self.0.get(package).copied()
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// Converts a decimal yuan string to fen without going through floating point.
pub fn yuan_to_fen(text: &str) -> Result<i64, PriceError> {
    let t = text.trim();
    let bad = || PriceError::NotYuan(t.to_string());
    let (int_part, frac_part) = match t.split_once('.') {
        Some((i, f)) => (i, f),
        None => (t, ""),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if !frac_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // "29.90" is fine; "0.015" is not a whole number of fen.
    let frac = frac_part.trim_end_matches('0');
    if frac.len() > 2 || int_part.len() > 9 {
        return Err(bad());
    }
    let yuan: i64 = int_part.parse().map_err(|_| bad())?;
    let mut fen_digits = frac.to_string();
    while fen_digits.len() < 2 {
        fen_digits.push('0');
    }
    let fen: i64 = fen_digits.parse().map_err(|_| bad())?;
    let total = yuan * 100 + fen;
    if !(1..=MAX_AMOUNT_FEN).contains(&total) {
        return Err(PriceError::OutOfRange(t.to_string()));
    }
    Ok(total)
}

/// Parses `DEFAULT_PRICES`: `basic=0.01,premium=29.9`.
pub fn parse_price_list(text: &str) -> Result<PriceList, PriceError> {
    let mut map = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, value) = entry
            .split_once('=')
            .ok_or_else(|| PriceError::BadEntry(entry.to_string()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(PriceError::BadEntry(entry.to_string()));
        }
        map.insert(name.to_string(), yuan_to_fen(value)?);
    }
    Ok(PriceList(map))
}
