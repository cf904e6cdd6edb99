// wxpay_retry_timer: a CloudBase / SCF *event* function with timer triggers that ask the
// wxpay web function to deliver the backend notifications that are due (every 5 minutes)
// and to reconcile yesterday's WeChat Pay trade bill (daily at 10:30 Beijing time).
//
// Why it exists: HTTP (web) functions only take HTTP triggers, so the Rust functions cannot
// be woken by a timer on CloudBase. This function only forwards the tick: POST
// {"type":"wxpay_notify_retry"} (or {"type":"wxpay_reconcile","catchUp":true}) with the
// internal secret to the web function's URL. (On AWS the EventBridge schedules in
// template.yaml invoke wxpay_callback directly.)
//
// Environment: WXPAY_RETRY_URL (the HTTP access URL of wxpay_callback or wxpay_functions),
// INTERNAL_API_SECRET (the same value the web functions have).
'use strict';

// A retry run takes at most 25 s; stay under this function's 30 s timeout.
const TIMEOUT_MS = 28000;

// Which type a trigger runs: the daily `wxpay-reconcile` trigger reconciles the trade bill,
// every other tick delivers what is due.
const callFor = (event) =>
  event && event.TriggerName === 'wxpay-reconcile'
    ? { type: 'wxpay_reconcile', catchUp: true }
    : { type: 'wxpay_notify_retry' };

exports.main = async (event) => {
  const call = callFor(event);
  const type = call.type;
  const url = process.env.WXPAY_RETRY_URL;
  const secret = process.env.INTERNAL_API_SECRET;
  if (!url || !secret) {
    throw new Error('WXPAY_RETRY_URL and INTERNAL_API_SECRET must be set');
  }
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-internal-secret': secret },
    body: JSON.stringify(call),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await res.text();
  if (!res.ok) {
    // Thrown so the failure shows in the function's logs and monitoring.
    throw new Error(`${type} answered HTTP ${res.status}: ${text.slice(0, 300)}`);
  }
  const result = JSON.parse(text);
  console.log(type, JSON.stringify(result.data));
  return result.data;
};
