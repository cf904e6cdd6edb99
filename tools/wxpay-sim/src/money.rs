//! Amounts as people read them. Money is fen (integers) everywhere; this only formats.

/// `12.34` from fen, sign included (refund fees are negative).
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let f = fen.unsigned_abs();
    format!("{sign}{}.{:02}", f / 100, f % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_is_exact_and_signed() {
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(1), "0.01");
        assert_eq!(yuan(2990), "29.90");
        assert_eq!(yuan(-6), "-0.06");
        assert_eq!(yuan(100_000_000), "1000000.00");
        assert_eq!(yuan(i64::MIN), "-92233720368547758.08");
    }
}
