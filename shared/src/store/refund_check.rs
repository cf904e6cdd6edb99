//! Whether a verified refund result — a `REFUND.*` notification or a refund answer — is
//! one we may record. A signature says WeChat Pay sent it, not that it is about the refund
//! and order we hold: a negative or inflated `amount.refund`, another order's payment, or a
//! refund nobody could have made must change nothing. The dialects run this inside the
//! transaction that writes the result, and write a refund we did not know with an update of
//! its order guarded by "it still fits", so two results cannot both fit what remains.

use super::rules::{paid_total, reserve_reported, Refusal};
use super::{Order, Refund, RefundMismatch, RefundResult};

/// Whether a verified refund result matches what we hold. For a refund we know: the same
/// order, that order's payment and paid total, and the refund's own amount. For one we do
/// not (made in the merchant portal): a paid order of ours, its payment and paid total,
/// and an amount from 1 fen to what remains beside refunds made and in flight.
pub fn check_result(
    order: Option<&Order>,
    known: Option<&Refund>,
    result: &RefundResult,
) -> Result<(), RefundMismatch> {
    if let Some(known) = known {
        if known.out_trade_no != result.out_trade_no {
            return Err(RefundMismatch::OtherOrder {
                out_refund_no: result.out_refund_no.clone(),
                stored: known.out_trade_no.clone(),
                got: result.out_trade_no.clone(),
            });
        }
    }
    let order = order.ok_or_else(|| RefundMismatch::UnknownOrder(result.out_trade_no.clone()))?;
    if order.transaction_id.is_none() || order.transaction_id != result.transaction_id {
        return Err(RefundMismatch::Transaction {
            expected: order.transaction_id.clone(),
            got: result.transaction_id.clone(),
        });
    }
    if result.order_total != paid_total(order) {
        return Err(RefundMismatch::Total {
            expected: paid_total(order),
            got: result.order_total,
        });
    }
    match known {
        Some(known) if known.amount != result.amount => Err(RefundMismatch::Amount {
            expected: known.amount,
            got: result.amount,
        }),
        Some(_) => Ok(()),
        None => match reserve_reported(order, result.amount) {
            Ok(_) => Ok(()),
            Err(Refusal::NotRefundable(status)) => {
                Err(RefundMismatch::NotRefundable(status.as_str()))
            }
            Err(Refusal::Exceeds {
                requested,
                remaining,
            }) => Err(RefundMismatch::Exceeds {
                requested,
                remaining,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rules::tests::{order, refund, result};
    use crate::store::{OrderStatus, RefundStatus};

    #[test]
    fn a_result_must_match_the_refund_and_order_we_hold() {
        use RefundStatus::*;
        let mut paid = order(OrderStatus::Paid, 1000, Some(1000), 0);
        paid.transaction_id = Some("TX1".into());
        paid.refund_reserved = 100;
        let known = refund("WX1", Processing);
        let ok = result("WX1", Success);
        assert_eq!(check_result(Some(&paid), Some(&known), &ok), Ok(()));
        let spoilt = |f: fn(&mut RefundResult)| {
            let mut r = result("WX1", Success);
            f(&mut r);
            check_result(Some(&paid), Some(&known), &r)
        };
        assert!(matches!(
            spoilt(|r| r.amount = 2990),
            Err(RefundMismatch::Amount { .. })
        ));
        assert!(matches!(
            spoilt(|r| r.amount = -100),
            Err(RefundMismatch::Amount { .. })
        ));
        assert!(matches!(
            spoilt(|r| r.order_total = 999),
            Err(RefundMismatch::Total { .. })
        ));
        assert!(matches!(
            spoilt(|r| r.transaction_id = Some("tx1".into())),
            Err(RefundMismatch::Transaction { .. })
        ));
        assert!(matches!(
            spoilt(|r| r.out_trade_no = "wx1".into()),
            Err(RefundMismatch::OtherOrder { .. })
        ));
        assert!(matches!(
            check_result(None, None, &ok),
            Err(RefundMismatch::UnknownOrder(_))
        ));
        // Unknown (portal) refunds: a paid order, 1 fen up to what remains beside 100 in flight.
        let portal = |amount: i64| {
            let mut r = result("WX1", Success);
            r.amount = amount;
            check_result(Some(&paid), None, &r)
        };
        assert_eq!(portal(900), Ok(()));
        for amount in [901, 0, -100_000, 1_000_000_000_000_000] {
            assert!(
                matches!(portal(amount), Err(RefundMismatch::Exceeds { .. })),
                "{amount}"
            );
        }
        let pending = order(OrderStatus::Pending, 1000, None, 0);
        assert!(matches!(
            check_result(Some(&pending), None, &ok),
            Err(RefundMismatch::Transaction { .. })
        ));
        // Refunded in full: nothing remains for a refund we did not know.
        let mut refunded = order(OrderStatus::Refunded, 1000, Some(1000), 1000);
        refunded.transaction_id = Some("TX1".into());
        assert!(matches!(
            check_result(Some(&refunded), None, &ok),
            Err(RefundMismatch::Exceeds { remaining: 0, .. })
        ));
        // Recorded refunded because WeChat Pay reported the payment refunded before we knew
        // of its refunds: those refunds, when they come, still fit what was paid.
        refunded.refunded_amount = 0;
        let mut whole = result("WX1", Success);
        whole.amount = 1000;
        assert_eq!(check_result(Some(&refunded), None, &whole), Ok(()));
        whole.amount = 1001;
        assert!(check_result(Some(&refunded), None, &whole).is_err());
        let closed = order(OrderStatus::Closed, 1000, Some(1000), 0);
        let mut closed = closed;
        closed.transaction_id = Some("TX1".into());
        assert!(matches!(
            check_result(Some(&closed), None, &ok),
            Err(RefundMismatch::NotRefundable("closed"))
        ));
    }
}
