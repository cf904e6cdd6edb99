// wxpay_retry_timer: a CloudBase / SCF *event* function with a timer trigger that asks the
// wxpay web function to deliver the backend notifications that are due.
//
// Why it exists: HTTP (web) functions only take HTTP triggers, so the Rust functions cannot
// be woken by a timer on CloudBase. This function only forwards the tick: POST
// {"type":"wxpay_notify_retry"} with the internal secret to the web function's URL. (On AWS
// the EventBridge schedule in template.yaml invokes wxpay_callback directly.)
//
// Environment: WXPAY_RETRY_URL (the HTTP access URL of wxpay_callback or wxpay_functions),
// INTERNAL_API_SECRET (the same value the web functions have).
'use strict';

// A retry run takes at most 25 s; stay under this function's 30 s timeout.
const TIMEOUT_MS = 28000;

exports.main = async () => {
  const url = process.env.WXPAY_RETRY_URL;
  const secret = process.env.INTERNAL_API_SECRET;
  if (!url || !secret) {
    throw new Error('WXPAY_RETRY_URL and INTERNAL_API_SECRET must be set');
  }
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-internal-secret': secret },
    body: JSON.stringify({ type: 'wxpay_notify_retry' }),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await res.text();
  if (!res.ok) {
    // Thrown so the failure shows in the function's logs and monitoring.
    throw new Error(`wxpay_notify_retry answered HTTP ${res.status}: ${text.slice(0, 300)}`);
  }
  const result = JSON.parse(text);
  console.log('wxpay_notify_retry', JSON.stringify(result.data));
  return result.data;
};
