//! The part of the console that refreshes itself: orders, refunds and their notifications.

use maud::{html, Markup, PreEscaped};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use qrcode::render::svg;
use qrcode::QrCode;

use crate::deliveries::{DeliveryState, NotificationDelivery};
use crate::model::{SimOrder, SimRefund};
use crate::money::yuan;
use crate::sim::{lock, Simulator};

/// More would make the page slow to fetch every two seconds.
const SHOWN: usize = 100;

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path segment of the control API.
fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The time of day of an RFC 3339 time, as the console shows it.
fn clock(rfc3339: &str) -> &str {
    rfc3339.get(11..19).unwrap_or(rfc3339)
}

/// The QR code a payer scans: an SVG of the `code_url`. Only `<svg>`, `<rect>` and `<path>`
/// with numbers: nothing of the URL is in the markup.
fn qr_svg(code_url: &str) -> Option<String> {
    let code = QrCode::new(code_url.as_bytes()).ok()?;
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(164, 164)
        .quiet_zone(true)
        .build();
    // Inline in HTML, the XML declaration is out of place.
    Some(match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    })
}

pub(super) fn live(sim: &Simulator) -> Markup {
    let (orders, order_count, refunds, refund_count, deliveries) = {
        let st = lock(&sim.inner.state);
        let orders: Vec<SimOrder> = st.orders_newest_first().take(SHOWN).cloned().collect();
        let refunds: Vec<SimRefund> = st.refunds_newest_first().take(SHOWN).cloned().collect();
        let deliveries: Vec<NotificationDelivery> = st.deliveries.all().cloned().collect();
        (
            orders,
            st.orders.len(),
            refunds,
            st.refunds.len(),
            deliveries,
        )
    };
    let about = |number: &str| -> Vec<&NotificationDelivery> {
        deliveries.iter().filter(|d| d.about == number).collect()
    };
    html! {
        h2 { "Orders" small { (order_count) " · newest first" @if order_count > SHOWN { " · the newest " (SHOWN) " shown" } } }
        @if orders.is_empty() {
            div.empty { "No orders yet. Create one through your app or the router (wxpay_order), and it appears here." }
        }
        @for o in &orders {
            (order_card(o, &about(&o.out_trade_no)))
        }
        h2 { "Refunds" small { (refund_count) } }
        @if refunds.is_empty() {
            div.empty { "No refunds yet." }
        }
        @for r in &refunds {
            (refund_card(r, &about(&r.out_refund_no)))
        }
    }
}

fn order_card(o: &SimOrder, chains: &[&NotificationDelivery]) -> Markup {
    let no = seg(&o.out_trade_no);
    html! {
        div.card.order data-out-trade-no=(o.out_trade_no) {
            div.row {
                div.grow {
                    div.title {
                        span.no { (o.out_trade_no) }
                        span class=(format!("badge state b-{}", o.trade_state)) { (o.trade_state) }
                        span.amount { "¥" (yuan(o.amount_total)) }
                        span.type { (o.trade_type) }
                    }
                    div.meta {
                        (o.description)
                        @if let Some(a) = o.attach.as_deref().filter(|a| !a.is_empty()) { " · attach " (a) }
                    }
                    div.meta {
                        "payer " (o.payer_openid.as_deref().unwrap_or("(not yet known)"))
                        " · created " (clock(&o.create_time))
                        @if let Some(t) = &o.transaction_id { " · transaction " (t) }
                        @if o.trade_type == "JSAPI" || o.trade_type == "APP" { " · prepay " (o.prepay_id) }
                    }
                    @if let Some(h5) = &o.h5_url {
                        div.meta { "h5_url " span.h5 { (h5) } }
                    }
                    @if o.trade_state == "NOTPAY" {
                        div.actions {
                            button.primary data-post=(format!("/sim/pay/{no}")) data-label=(format!("Pay {}", o.out_trade_no)) { "Pay" }
                            button data-post=(format!("/sim/pay-silently/{no}")) data-label=(format!("Pay silently {}", o.out_trade_no)) { "Pay silently" }
                            button.danger data-post=(format!("/sim/fail/{no}")) data-label=(format!("Fail {}", o.out_trade_no)) { "Fail" }
                            button data-post=(format!("/sim/close/{no}")) data-label=(format!("Close {}", o.out_trade_no)) { "Close" }
                        }
                    }
                    (notifications(chains))
                }
                @if let Some(url) = &o.code_url {
                    div.qr {
                        @if let Some(svg) = qr_svg(url) { (PreEscaped(svg)) }
                        div.meta.code-url { (url) }
                    }
                }
            }
        }
    }
}

fn refund_card(r: &SimRefund, chains: &[&NotificationDelivery]) -> Markup {
    let no = seg(&r.out_refund_no);
    let done = |status: &str| format!("/sim/refunds/{no}/complete?status={status}");
    html! {
        div.card.refund data-out-refund-no=(r.out_refund_no) {
            div.title {
                span.no { (r.out_refund_no) }
                span class=(format!("badge state b-{}", r.status)) { (r.status) }
                span.amount { "¥" (yuan(r.amount_refund)) }
                span.muted { "of ¥" (yuan(r.amount_total)) }
            }
            div.meta {
                "order " (r.out_trade_no) " · refund id " (r.refund_id) " · created " (clock(&r.create_time))
                @if let Some(reason) = &r.reason { " · " (reason) }
            }
            @if r.status == "PROCESSING" || r.status == "ABNORMAL" {
                div.actions {
                    button.primary data-post=(done("SUCCESS")) data-label=(format!("Complete {}", r.out_refund_no)) { "Complete" }
                    @if r.status == "PROCESSING" {
                        button.danger data-post=(done("ABNORMAL")) data-label=(format!("Abnormal {}", r.out_refund_no)) { "Abnormal" }
                    }
                    button data-post=(done("CLOSED")) data-label=(format!("Close {}", r.out_refund_no)) { "Close" }
                }
            }
            @if r.notify_url.is_none() {
                div.meta { "no notify_url: WeChat Pay cannot tell the merchant" }
            }
            (notifications(chains))
        }
    }
}

fn notifications(chains: &[&NotificationDelivery]) -> Markup {
    html! {
        @for d in chains {
            div.chain data-notification=(d.id) {
                div.chain-head {
                    strong { (d.event_type) }
                    span class=(format!("badge b-{}", state_name(d.state))) { (state_label(d.state)) }
                    span.muted { "→ " (d.url) }
                    @if let (DeliveryState::Retrying, Some(next)) = (d.state, &d.next_retry_at) {
                        span.muted { "next retry " (clock(next)) }
                    }
                    @if d.state != DeliveryState::Acknowledged {
                        button data-post=(format!("/sim/notifications/{}/retry", d.id)) data-label=(format!("Retry {}", d.event_type)) { "Retry now" }
                    }
                }
                table.attempts {
                    thead { tr { th { "#" } th { "sent (+08:00)" } th { "status" } th { "answer (first 200 bytes)" } th { "ms" } th { "next retry" } } }
                    tbody {
                        @for a in &d.attempts {
                            tr.attempt {
                                td { (a.number) }
                                td { (clock(&a.at)) }
                                td class={ "status " (if a.acknowledged { "status-ok" } else { "status-bad" }) } {
                                    @match a.status { Some(s) => (s), None => "—" }
                                }
                                td.answer {
                                    @if let Some(e) = &a.error { (e) } @else if a.answer.is_empty() { span.muted { "(empty)" } } @else { (a.answer) }
                                }
                                td { (a.took_ms) }
                                td { @match &a.next_retry_at { Some(t) => (clock(t)), None => "—" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn state_name(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Retrying => "RETRYING",
        DeliveryState::Acknowledged => "ACKNOWLEDGED",
        DeliveryState::GaveUp => "GAVE_UP",
    }
}

fn state_label(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Retrying => "not acknowledged · retrying",
        DeliveryState::Acknowledged => "acknowledged",
        DeliveryState::GaveUp => "gave up",
    }
}
