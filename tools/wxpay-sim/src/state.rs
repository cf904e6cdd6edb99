//! What the simulated WeChat Pay remembers: orders, refunds, traffic, pending faults, the
//! trade bill's tampering and every notification it sent.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::bill::BillDesk;
use crate::deliveries::Deliveries;
use crate::faults::{Fault, FaultKind};
use crate::model::{SimOrder, SimRefund};

#[derive(Debug, Default)]
pub(crate) struct State {
    pub orders: BTreeMap<String, SimOrder>,
    pub refunds: BTreeMap<String, SimRefund>,
    /// Merchant requests per exact path (query excluded).
    pub hits: HashMap<String, usize>,
    pub faults: Vec<Fault>,
    /// When each order last had a refund request, for `FREQUENCY_LIMITED`.
    pub last_refund_request: HashMap<String, Instant>,
    /// Fen the merchant can refund from; `None`: unlimited.
    pub merchant_balance: Option<i64>,
    /// The trade bill's tampering and pending downloads.
    pub bill: BillDesk,
    /// Every notification sent, with its attempts.
    pub deliveries: Deliveries,
    /// `out_trade_no`s and `out_refund_no`s in the order they were created.
    pub order_seq: Vec<String>,
    pub refund_seq: Vec<String>,
}

impl State {
    pub fn insert_order(&mut self, order: SimOrder) {
        self.order_seq.push(order.out_trade_no.clone());
        self.orders.insert(order.out_trade_no.clone(), order);
    }

    pub fn insert_refund(&mut self, refund: SimRefund) {
        self.refund_seq.push(refund.out_refund_no.clone());
        self.refunds.insert(refund.out_refund_no.clone(), refund);
    }

    /// Orders, newest first.
    pub fn orders_newest_first(&self) -> impl Iterator<Item = &SimOrder> {
        self.order_seq
            .iter()
            .rev()
            .filter_map(|n| self.orders.get(n))
    }

    /// Refunds, newest first.
    pub fn refunds_newest_first(&self) -> impl Iterator<Item = &SimRefund> {
        self.refund_seq
            .iter()
            .rev()
            .filter_map(|n| self.refunds.get(n))
    }

    pub fn order_by_transaction_id(&self, transaction_id: &str) -> Option<&SimOrder> {
        self.orders
            .values()
            .find(|o| o.transaction_id.as_deref() == Some(transaction_id))
    }

    /// Fen already committed to refunds of this order: every refund not CLOSED.
    pub fn refunded_total(&self, out_trade_no: &str) -> i64 {
        self.refunds
            .values()
            .filter(|r| r.out_trade_no == out_trade_no && r.status != "CLOSED")
            .map(|r| r.amount_refund)
            .sum()
    }

    /// A paid order shows REFUND while any refund of it is not closed.
    pub fn sync_refund_state(&mut self, out_trade_no: &str) {
        let refunding = self
            .refunds
            .values()
            .any(|r| r.out_trade_no == out_trade_no && r.status != "CLOSED");
        if let Some(o) = self.orders.get_mut(out_trade_no) {
            if o.is_paid() {
                o.trade_state = if refunding { "REFUND" } else { "SUCCESS" }.to_string();
            }
        }
    }

    /// Takes the fault for this path, if one is armed, counting one use.
    pub fn take_fault(&mut self, path: &str) -> Option<FaultKind> {
        let idx = self
            .faults
            .iter()
            .position(|f| f.times > 0 && path.starts_with(&f.path_prefix))?;
        let fault = &mut self.faults[idx];
        fault.times -= 1;
        let kind = fault.kind.clone();
        if fault.times == 0 {
            self.faults.remove(idx);
        }
        Some(kind)
    }
}
