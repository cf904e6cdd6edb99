// What the SDK suites share: the simulator's files, the control API, a notify_url that
// keeps what it receives, and the pass/fail tally every suite prints the same way.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');

const keysDir = process.argv[2] || './sim-keys';
const read = (name) => fs.readFileSync(path.join(keysDir, name), 'utf8');
const env = Object.fromEntries(
  read('sim.env')
    .split('\n')
    .filter((l) => l.includes('=') && !l.startsWith('#'))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).replace(/^"|"$/g, '')]),
);
const SANDBOX = env.WECHATPAY_BASE_URL;
const PUBLIC_KEY_MODE = Boolean(env.WECHAT_PUBLIC_KEY_ID);
// Mixed mode: a public key, and platform certificates for the serials that need one.
const MIXED = PUBLIC_KEY_MODE && fs.existsSync(path.join(keysDir, 'wechatpay_platform_cert.pem'));
const MODE = MIXED ? 'mixed' : PUBLIC_KEY_MODE ? 'public-key' : 'certificate';

const results = [];
async function check(name, fn) {
  try {
    await fn();
    results.push([name, null]);
    console.log(`  ok   ${name}`);
  } catch (e) {
    results.push([name, String(e && e.message ? e.message : e)]);
    console.log(`  FAIL ${name}: ${e && e.message ? e.message : e}`);
  }
}
function expect(cond, what) {
  if (!cond) throw new Error(typeof what === 'string' ? what : JSON.stringify(what));
}

async function control(method, p, body) {
  const res = await fetch(SANDBOX + p, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// The merchant's notify_url: keeps what WeChat Pay POSTs and answers 204.
function startReceiver() {
  const waiting = [];
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const got = { headers: req.headers, body };
      const w = waiting.shift();
      if (w) w(got);
      else received.push(got);
      res.statusCode = 204;
      res.end();
    });
  });
  return new Promise((resolve) => {
    // Never what keeps a finished (or failed) suite running.
    server.unref();
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}/notify`,
        close: () => server.close(),
        next: () =>
          received.length
            ? Promise.resolve(received.shift())
            : new Promise((ok, fail) => {
                waiting.push(ok);
                setTimeout(() => fail(new Error('no notification within 10 s')), 10000).unref();
              }),
      });
    });
  });
}

// Order and refund numbers of one run: `prefix` keeps the suites apart on one simulator.
function references(prefix) {
  const tag = crypto.randomBytes(5).toString('hex').toUpperCase();
  const orderNo = (kind) => `${prefix}${kind}${tag}`;
  return { orderNo, refundNo: orderNo('RF') };
}

// A prepay request of 9.90 whose notifications go to `notifyUrl`.
function orderRequest(orderNo, notifyUrl, extra) {
  return {
    description: 'conformance',
    out_trade_no: orderNo,
    notify_url: notifyUrl,
    amount: { total: 990, currency: 'CNY' },
    ...extra,
  };
}

// A client-side signature (JSAPI paySign, the APP sign) checked with the merchant's public key.
function merchantSigned(fields, signature) {
  return crypto
    .createVerify('RSA-SHA256')
    .update(`${fields.join('\n')}\n`)
    .verify(read('apiclient_public_key.pem'), signature, 'base64');
}

// The refund every suite asks for: 3.00 of a 9.90 payment.
function refundRequest(transactionId, outRefundNo, notifyUrl) {
  return {
    transaction_id: transactionId,
    out_refund_no: outRefundNo,
    reason: 'conformance',
    notify_url: notifyUrl,
    amount: { refund: 300, total: 990, currency: 'CNY' },
  };
}

function expectRefundAccepted(r, outRefundNo) {
  expect(r.out_refund_no === outRefundNo && r.amount.refund === 300, r);
  expect(['PROCESSING', 'SUCCESS'].includes(r.status), r);
}

// The bank completes the refund; `notification` is the SDK's way to verify and decrypt.
async function completeRefund(outRefundNo, notification) {
  const outcome = await control('POST', `/sim/refunds/${outRefundNo}/complete?status=SUCCESS`);
  expect(outcome.notified === true, outcome);
  const r = await notification('REFUND.SUCCESS');
  expect(r.out_refund_no === outRefundNo && r.refund_status === 'SUCCESS', r);
}

function finish(label) {
  const failed = results.filter((r) => r[1]).length;
  console.log(`${label} (${MODE} mode): ${results.length - failed} passed, ${failed} failed`);
  console.log(`RESULT passed=${results.length - failed} failed=${failed}`);
  process.exitCode = failed ? 1 : 0;
}

// Runs `main`, counting a crash of the suite itself as a failure.
function run(label, main) {
  main()
    .catch((e) => {
      results.push(['harness', String(e)]);
      console.log(`  FAIL harness: ${e && e.stack ? e.stack : e}`);
    })
    .finally(() => finish(label));
}

module.exports = {
  env,
  read,
  SANDBOX,
  PUBLIC_KEY_MODE,
  MIXED,
  MODE,
  check,
  expect,
  control,
  startReceiver,
  run,
  references,
  orderRequest,
  merchantSigned,
  refundRequest,
  expectRefundAccepted,
  completeRefund,
};
