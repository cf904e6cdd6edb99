//! What tests make the bill say instead of the truth, and the files waiting for download.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long a `download_url` stays valid ("URL有效期30s").
pub(crate) const DOWNLOAD_TTL: Duration = Duration::from_secs(30);

/// Differences between what the simulator knows and what its bill says, for tests.
#[derive(Debug, Clone, Default)]
pub(crate) struct BillTamper {
    /// `out_trade_no` (payment rows) or `out_refund_no` (refund rows) left out of the bill.
    pub dropped: HashSet<String>,
    /// The amount (fen) the bill shows instead, by `out_trade_no` or `out_refund_no`.
    pub amounts: HashMap<String, i64>,
    /// Answer a `hash_value` that does not match the file.
    pub wrong_hash: bool,
    /// Serve bills for any date up to today, without waiting for 10:00 the next day.
    pub early: bool,
    /// Fen of a refund (by `out_refund_no`) that went back to a coupon: the bill's 退款金额
    /// is the refund less this, its 申请退款金额 the whole refund.
    pub coupon_refunds: HashMap<String, i64>,
    /// Payments to the same merchant id from its other apps, which its bill lists too.
    pub other_apps: Vec<OtherAppPayment>,
    /// A whole file served as a day's bill instead of the one the simulator would write
    /// (benchmarks: a million rows without a million simulated orders).
    pub files: HashMap<time::Date, std::sync::Arc<Vec<u8>>>,
}

/// A payment another app of the merchant took (公众账号ID is not ours).
#[derive(Debug, Clone)]
pub struct OtherAppPayment {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub fen: i64,
    /// RFC 3339, like `SimOrder::success_time`.
    pub success_time: String,
}

/// A generated bill waiting to be downloaded.
#[derive(Debug, Clone)]
pub(crate) struct PendingDownload {
    pub file: Vec<u8>,
    pub issued: Instant,
}

/// The bill's state beside the orders and refunds it lists.
#[derive(Debug, Default)]
pub(crate) struct BillDesk {
    pub tamper: BillTamper,
    /// Bill files by download token.
    pub downloads: HashMap<String, PendingDownload>,
}

impl BillDesk {
    /// Leaves the payment (`out_trade_no`) or refund (`out_refund_no`) out of every bill.
    pub fn drop_row(&mut self, number: &str) {
        self.tamper.dropped.insert(number.to_string());
    }

    /// Bills show `fen` for this payment or refund.
    pub fn alter_amount(&mut self, number: &str, fen: i64) {
        self.tamper.amounts.insert(number.to_string(), fen);
    }

    /// Forgets every drop, altered amount and broken hash (serving early stays as it is).
    pub fn reset(&mut self) {
        let early = self.tamper.early;
        self.tamper = BillTamper {
            early,
            ..BillTamper::default()
        };
    }

    /// Keeps `file` for `DOWNLOAD_TTL` under a new token; forgets expired ones.
    pub fn offer(&mut self, token: String, file: Vec<u8>) {
        self.downloads
            .retain(|_, d| d.issued.elapsed() < DOWNLOAD_TTL);
        self.downloads.insert(
            token,
            PendingDownload {
                file,
                issued: Instant::now(),
            },
        );
    }
}
