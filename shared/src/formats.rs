//! WeChat Pay's documented formats for the fields we store or act on, checked on every
//! decrypted notification resource and every query answer before anything else reads it.
//!
//! A signature only says WeChat Pay (or whoever holds its key) sent the bytes; it says
//! nothing about their shape. A `transaction_id` of 5,000 characters would not fit its
//! column and fail the write on every retry; a negative `amount.refund` would be added to
//! an order's refunds. So a value outside its documented format is refused up front, as a
//! mismatch, and never reaches the store.
//!
//! The limits are those of the APIv3 references: 支付成功回调通知 / 查询订单
//! (`transaction_id string[1,32]`, `out_trade_no string[6,32]`, `mchid string[1,32]`,
//! `appid string[1,32]`, `trade_state string[1,32]` of an enumeration, `payer.openid
//! string[1,128]`, `success_time string[1,64]` RFC 3339, `amount.total int`) and
//! 退款结果通知 / 查询单笔退款 (`refund_id string[1,32]`, `out_refund_no string[1,64]`,
//! `refund_status` / `status` of an enumeration, `amount.refund` and `amount.total` int,
//! `refund` never above `total`).

use crate::api::{RefundInfo, Transaction};

/// A field outside WeChat Pay's documented format. Names the field, never echoes the value
/// (it may be huge or carry control characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` is not {rule}")]
pub struct FormatError {
    pub field: &'static str,
    pub rule: &'static str,
}

/// `trade_state` values of the APIv3 query and notification.
const TRADE_STATES: &[&str] = &[
    "SUCCESS",
    "REFUND",
    "NOTPAY",
    "CLOSED",
    "REVOKED",
    "USERPAYING",
    "PAYERROR",
    "ACCEPT",
];

/// `status` (query) and `refund_status` (notification) values.
const REFUND_STATES: &[&str] = &["SUCCESS", "CLOSED", "PROCESSING", "ABNORMAL"];

/// The largest amount WeChat Pay takes for one order, in fen, with room to spare: anything
/// larger is not an amount we could have charged.
const MAX_FEN: i64 = 100_000_000_000;

type Check = Result<(), FormatError>;

fn ascii(
    field: &'static str,
    rule: &'static str,
    value: Option<&str>,
    len: std::ops::RangeInclusive<usize>,
    extra: &[u8],
) -> Check {
    let Some(v) = value else { return Ok(()) };
    let ok = len.contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    ok.then_some(()).ok_or(FormatError { field, rule })
}

fn one_of(field: &'static str, rule: &'static str, value: Option<&str>, set: &[&str]) -> Check {
    match value {
        Some(v) if !set.contains(&v) => Err(FormatError { field, rule }),
        _ => Ok(()),
    }
}

fn time(field: &'static str, value: Option<&str>) -> Check {
    match value {
        Some(v) if v.len() > 64 || crate::util::parse_wechat_time(v).is_none() => {
            Err(FormatError {
                field,
                rule: "an RFC 3339 time",
            })
        }
        _ => Ok(()),
    }
}

fn fen(field: &'static str, value: Option<i64>, min: i64) -> Check {
    match value {
        Some(v) if !(min..=MAX_FEN).contains(&v) => Err(FormatError {
            field,
            rule: "a plausible whole number of fen",
        }),
        _ => Ok(()),
    }
}

/// Fields shared by payments and refunds.
fn order_ids(
    mchid: Option<&str>,
    out_trade_no: Option<&str>,
    transaction_id: Option<&str>,
) -> Check {
    ascii("mchid", "1-32 letters or digits", mchid, 1..=32, b"")?;
    ascii(
        "out_trade_no",
        "6-32 characters of [0-9A-Za-z_-|*]",
        out_trade_no,
        6..=32,
        b"_-|*",
    )?;
    ascii(
        "transaction_id",
        "1-32 letters or digits",
        transaction_id,
        1..=32,
        b"",
    )
}

impl Transaction {
    /// Checks every field this service stores or compares.
    pub fn check_format(&self) -> Check {
        order_ids(
            self.mchid.as_deref(),
            self.out_trade_no.as_deref(),
            self.transaction_id.as_deref(),
        )?;
        ascii(
            "appid",
            "1-32 letters or digits",
            self.appid.as_deref(),
            1..=32,
            b"",
        )?;
        one_of(
            "trade_state",
            "a documented trade_state",
            self.trade_state.as_deref(),
            TRADE_STATES,
        )?;
        let openid = self.payer.as_ref().and_then(|p| p.openid.as_deref());
        ascii(
            "payer.openid",
            "1-128 characters of [0-9A-Za-z_-]",
            openid,
            1..=128,
            b"_-",
        )?;
        time("success_time", self.success_time.as_deref())?;
        let amount = self.amount.as_ref();
        fen("amount.total", amount.and_then(|a| a.total), 1)?;
        fen("amount.payer_total", amount.and_then(|a| a.payer_total), 0)
    }
}

impl RefundInfo {
    /// Checks every field this service stores or compares.
    pub fn check_format(&self) -> Check {
        order_ids(
            self.mchid.as_deref(),
            self.out_trade_no.as_deref(),
            self.transaction_id.as_deref(),
        )?;
        ascii(
            "out_refund_no",
            "1-64 characters of [0-9A-Za-z_-|*@]",
            self.out_refund_no.as_deref(),
            1..=64,
            b"_-|*@",
        )?;
        ascii(
            "refund_id",
            "1-32 letters or digits",
            self.refund_id.as_deref(),
            1..=32,
            b"",
        )?;
        let rule = "a documented refund status";
        one_of("status", rule, self.status.as_deref(), REFUND_STATES)?;
        one_of(
            "refund_status",
            rule,
            self.refund_status.as_deref(),
            REFUND_STATES,
        )?;
        time("success_time", self.success_time.as_deref())?;
        let amount = self.amount.as_ref();
        let (total, refund) = (amount.and_then(|a| a.total), amount.and_then(|a| a.refund));
        fen("amount.total", total, 1)?;
        fen("amount.refund", refund, 1)?;
        if let (Some(total), Some(refund)) = (total, refund) {
            if refund > total {
                return Err(FormatError {
                    field: "amount.refund",
                    rule: "at most amount.total",
                });
            }
        }
        Ok(())
    }
}

impl RefundInfo {
    /// [`RefundInfo::check_format`], plus the fields a `REFUND.*` notification always
    /// carries (必填): without its `mchid` or `transaction_id` a refund result cannot be
    /// checked against the order, so it is not one.
    pub fn check_notification_format(&self) -> Check {
        let amount = self.amount.as_ref();
        let required: [(&'static str, bool); 8] = [
            ("mchid", self.mchid.is_some()),
            ("out_trade_no", self.out_trade_no.is_some()),
            ("transaction_id", self.transaction_id.is_some()),
            ("out_refund_no", self.out_refund_no.is_some()),
            ("refund_id", self.refund_id.is_some()),
            ("refund_status", self.refund_status.is_some()),
            ("amount.total", amount.and_then(|a| a.total).is_some()),
            ("amount.refund", amount.and_then(|a| a.refund).is_some()),
        ];
        if let Some((field, _)) = required.iter().find(|(_, present)| !present) {
            return Err(FormatError {
                field,
                rule: "present (the notification always carries it)",
            });
        }
        self.check_format()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Payer, RefundAmount, TransactionAmount};

    /// A field's name and a way to put it out of format.
    type Spoil<T> = (&'static str, fn(&mut T));

    fn paid() -> Transaction {
        Transaction {
            appid: Some("wxd678efh567hg6787".into()),
            mchid: Some("1230000109".into()),
            out_trade_no: Some("WX20261202000000abcdefABCDEF0123".into()),
            transaction_id: Some("4200000000202612020000000001".into()),
            trade_state: Some("SUCCESS".into()),
            success_time: Some("2026-12-02T10:34:56+08:00".into()),
            payer: Some(Payer {
                openid: Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
            }),
            amount: Some(TransactionAmount {
                total: Some(2990),
                payer_total: Some(2990),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn refunded() -> RefundInfo {
        RefundInfo {
            mchid: Some("1230000109".into()),
            out_trade_no: Some("WX20261202000000abcdefABCDEF0123".into()),
            transaction_id: Some("4200000000202612020000000001".into()),
            out_refund_no: Some("RF20261202000000abcdefABCDEF0123".into()),
            refund_id: Some("50000000382019052709732678859".into()),
            refund_status: Some("SUCCESS".into()),
            success_time: Some("2026-12-02T10:34:56+08:00".into()),
            amount: Some(RefundAmount {
                total: Some(2990),
                refund: Some(100),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn documented_values_pass() {
        assert_eq!(paid().check_format(), Ok(()));
        assert_eq!(refunded().check_format(), Ok(()));
        assert_eq!(Transaction::default().check_format(), Ok(()));
    }

    #[test]
    fn a_transaction_out_of_format_names_its_field() {
        let cases: Vec<Spoil<Transaction>> = vec![
            ("transaction_id", |t| {
                t.transaction_id = Some("4".repeat(5000))
            }),
            ("transaction_id", |t| {
                t.transaction_id = Some("42 00".into())
            }),
            ("transaction_id", |t| t.transaction_id = Some(String::new())),
            ("out_trade_no", |t| t.out_trade_no = Some("wx2026 ".into())),
            ("mchid", |t| t.mchid = Some("1230000109\n".into())),
            ("trade_state", |t| t.trade_state = Some("success".into())),
            ("trade_state", |t| t.trade_state = Some("X".repeat(300))),
            ("payer.openid", |t| {
                t.payer = Some(Payer {
                    openid: Some("o".repeat(129)),
                })
            }),
            ("success_time", |t| {
                t.success_time = Some("yesterday".into())
            }),
            ("amount.total", |t| {
                t.amount.as_mut().unwrap().total = Some(-1)
            }),
            ("amount.total", |t| {
                t.amount.as_mut().unwrap().total = Some(10_i64.pow(15))
            }),
        ];
        for (field, spoil) in cases {
            let mut t = paid();
            spoil(&mut t);
            assert_eq!(t.check_format().map_err(|e| e.field), Err(field));
        }
    }

    #[test]
    fn a_refund_out_of_format_names_its_field() {
        let cases: Vec<Spoil<RefundInfo>> = vec![
            ("amount.refund", |r| {
                r.amount.as_mut().unwrap().refund = Some(-100_000)
            }),
            ("amount.refund", |r| {
                r.amount.as_mut().unwrap().refund = Some(0)
            }),
            ("amount.refund", |r| {
                r.amount.as_mut().unwrap().refund = Some(10_i64.pow(15))
            }),
            ("amount.refund", |r| {
                r.amount.as_mut().unwrap().refund = Some(2991)
            }),
            ("out_refund_no", |r| {
                r.out_refund_no = Some("9".repeat(5000))
            }),
            ("refund_id", |r| r.refund_id = Some("5".repeat(33))),
            ("refund_status", |r| r.refund_status = Some("DONE".into())),
            ("status", |r| r.status = Some("".into())),
        ];
        let mut without_mchid = refunded();
        without_mchid.mchid = None;
        assert_eq!(
            without_mchid.check_format(),
            Ok(()),
            "query answers carry none"
        );
        assert_eq!(
            without_mchid
                .check_notification_format()
                .map_err(|e| e.field),
            Err("mchid")
        );
        assert_eq!(refunded().check_notification_format(), Ok(()));
        for (field, spoil) in cases {
            let mut r = refunded();
            spoil(&mut r);
            assert_eq!(r.check_format().map_err(|e| e.field), Err(field));
        }
    }
}
