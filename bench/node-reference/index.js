'use strict';
// The Node.js `wxpayFunctions` cloud function, reduced to what the benchmark drives:
// `wxpay_order` (JSAPI / NATIVE) and `TRANSACTION.*` payment notifications, plus
// `GET /healthz`. It is built the way mini-program teams build it — wechatpay-node-v3 for
// signing, verification and decryption, mysql2 for the store, every module loaded at start —
// because the point of the reference is to measure that shape, not an optimised Node app.
//
// It reads the same environment as the Rust functions (contract §7) and serves the same routes
// on HOST:PORT, so `wxpay-load --node bench/node-reference` drives both identically.
// It is a benchmark reference, not a product: refunds, queries and the outbox retry are
// left out.

const http = require('node:http');
const crypto = require('node:crypto');
const WxPay = require('wechatpay-node-v3');
const { PayRequest } = require('wechatpay-node-v3/dist/lib/pay-request');
const mysql = require('mysql2/promise');

const BODY_LIMIT = 64 * 1024;
const MAX_CLOCK_SKEW_SECS = 300;
const BACKEND_TIMEOUT_MS = 5000;

function env(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback !== undefined) return fallback;
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return v;
}

// Keys survive environment variables with literal `\n`; the cloud function undoes that too.
const pem = (text) => text.replace(/\\n/g, '\n');

const APPID = env('WECHAT_APPID');
const MCHID = env('WECHAT_MCHID');
const APIV3_KEY = env('WECHAT_APIV3_KEY');
const NOTIFY_URL = env('WECHAT_NOTIFY_URL');
const BASE_URL = env('WECHATPAY_BASE_URL', 'https://api.mch.weixin.qq.com').replace(/\/$/, '');
const API_BASE_URL = env('API_BASE_URL').replace(/\/$/, '');
const INTERNAL_SECRET = env('INTERNAL_API_SECRET', '');
const DATABASE_URL = env('DATABASE_URL');
const PRICE_TTL_MS = Number(env('PRICE_CACHE_TTL_SECS', '300')) * 1000;
const DEFAULT_PRICES = Object.fromEntries(
  env('DEFAULT_PRICES', 'basic=0.01,premium=29.9')
    .split(',')
    .map((kv) => kv.split('='))
    .map(([k, v]) => [k.trim(), Number(v)]),
);

// wechatpay-node-v3 hard-codes https://api.mch.weixin.qq.com; its documented hook for
// another transport is `createHttp`, used here to point it at WECHATPAY_BASE_URL (the
// simulator). The signed path is computed before this, so signatures are unchanged.
class BaseUrlRequest extends PayRequest {
  rewrite(url) {
    return url.replace('https://api.mch.weixin.qq.com', BASE_URL);
  }
  post(url, params, headers) {
    return super.post(this.rewrite(url), params, headers);
  }
  get(url, headers) {
    return super.get(this.rewrite(url), headers);
  }
}

const pay = new WxPay({
  appid: APPID,
  mchid: MCHID,
  serial_no: env('WECHAT_SERIAL_NO'),
  // The library insists on a "public key" (the merchant certificate) only to derive the
  // serial when none is given; the serial is given, so the private key stands in.
  publicKey: Buffer.from(pem(env('WECHAT_PRIVATE_KEY'))),
  privateKey: Buffer.from(pem(env('WECHAT_PRIVATE_KEY'))),
  key: APIV3_KEY,
});
pay.createHttp(new BaseUrlRequest());
// A WeChat Pay public key (PUB_KEY_ID_...) is used the way teams wire it into this library:
// pre-seeded in its certificate map, so verifySign never downloads for that serial.
if (process.env.WECHAT_PUBLIC_KEY && process.env.WECHAT_PUBLIC_KEY_ID) {
  WxPay.certificates[process.env.WECHAT_PUBLIC_KEY_ID] = pem(process.env.WECHAT_PUBLIC_KEY);
}

// createPool does not connect; the first query does (as in the cloud function).
const pool = mysql.createPool({
  uri: DATABASE_URL,
  connectionLimit: 10,
  timezone: 'Z',
  dateStrings: false,
});

// The same schema as the Rust store (contract §9), created on first use.
const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS orders (
    out_trade_no VARCHAR(32) NOT NULL, transaction_id VARCHAR(64) NULL,
    openid VARCHAR(128) NULL, user_id VARCHAR(128) NULL, generation_id VARCHAR(128) NULL,
    package_type VARCHAR(64) NULL, business_type VARCHAR(64) NULL, business_id VARCHAR(128) NULL,
    amount BIGINT NOT NULL, paid_amount BIGINT NULL, refunded_amount BIGINT NOT NULL DEFAULT 0,
    description VARCHAR(255) NOT NULL DEFAULT '', trade_type VARCHAR(16) NOT NULL,
    status VARCHAR(16) NOT NULL, paid_at DATETIME(3) NULL, created_at DATETIME(3) NOT NULL,
    updated_at DATETIME(3) NOT NULL, PRIMARY KEY (out_trade_no),
    KEY idx_orders_transaction_id (transaction_id), KEY idx_orders_openid (openid)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE IF NOT EXISTS payment_logs (
    id BIGINT NOT NULL AUTO_INCREMENT, \`type\` VARCHAR(32) NOT NULL,
    out_trade_no VARCHAR(64) NULL, transaction_id VARCHAR(64) NULL, openid VARCHAR(128) NULL,
    package_type VARCHAR(64) NULL, generation_id VARCHAR(128) NULL, event_type VARCHAR(64) NULL,
    amount_total BIGINT NULL, detail TEXT NULL, created_at DATETIME(3) NOT NULL,
    PRIMARY KEY (id), KEY idx_payment_logs_out_trade_no (out_trade_no)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE IF NOT EXISTS refunds (
    out_refund_no VARCHAR(64) NOT NULL, out_trade_no VARCHAR(32) NOT NULL,
    refund_id VARCHAR(64) NULL, amount BIGINT NOT NULL, status VARCHAR(16) NOT NULL,
    reason VARCHAR(255) NULL, created_at DATETIME(3) NOT NULL, success_at DATETIME(3) NULL,
    PRIMARY KEY (out_refund_no), KEY idx_refunds_out_trade_no (out_trade_no)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE IF NOT EXISTS notify_outbox (
    id BIGINT NOT NULL AUTO_INCREMENT, out_trade_no VARCHAR(32) NOT NULL,
    business_type VARCHAR(64) NULL, payload TEXT NOT NULL,
    status VARCHAR(16) NOT NULL DEFAULT 'pending', attempts INT NOT NULL DEFAULT 0,
    last_error TEXT NULL, next_try_at DATETIME(3) NOT NULL, locked_until DATETIME(3) NULL,
    created_at DATETIME(3) NOT NULL, delivered_at DATETIME(3) NULL, PRIMARY KEY (id),
    KEY idx_notify_outbox_due (status, next_try_at), KEY idx_notify_outbox_out_trade_no (out_trade_no)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
];
let schemaReady = null;
function db() {
  if (!schemaReady) {
    schemaReady = (async () => {
      for (const ddl of SCHEMA) await pool.query(ddl);
    })().catch((e) => {
      schemaReady = null;
      throw e;
    });
  }
  return schemaReady.then(() => pool);
}

async function insertLog(conn, log) {
  await conn.execute(
    'INSERT INTO payment_logs (`type`, out_trade_no, transaction_id, openid, package_type, ' +
      'generation_id, event_type, amount_total, detail, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)',
    [
      log.type,
      log.outTradeNo ?? null,
      log.transactionId ?? null,
      log.openid ?? null,
      log.packageType ?? null,
      log.generationId ?? null,
      log.eventType ?? null,
      log.amount ?? null,
      log.detail ?? null,
      new Date(),
    ],
  );
}

// The price list, cached in warm memory like the cloud function's module-level cache.
let prices = { at: 0, packages: null };
async function currentPrices() {
  if (prices.packages && Date.now() - prices.at < PRICE_TTL_MS) return prices.packages;
  try {
    const resp = await fetch(`${API_BASE_URL}/api/prices/current`, {
      signal: AbortSignal.timeout(BACKEND_TIMEOUT_MS),
    });
    const json = await resp.json();
    if (json && json.success && json.data && json.data.packages) {
      prices = { at: Date.now(), packages: json.data.packages };
      return prices.packages;
    }
  } catch (e) {
    console.warn(`price list unavailable: ${e.message}`);
  }
  return prices.packages || DEFAULT_PRICES;
}

const envelope = (data) => ({ status: 200, body: { code: 0, msg: 'ok', data } });
const failure = (status, code, msg) => ({ status, body: { code, msg } });

async function createOrder(req, data) {
  const tradeType = String(data.tradeType || 'JSAPI').toUpperCase();
  if (tradeType !== 'JSAPI' && tradeType !== 'NATIVE') {
    return failure(400, 1001, 'field `tradeType` must be JSAPI or NATIVE in the reference');
  }
  const openid = req.headers['x-wx-openid'] || null;
  if (tradeType === 'JSAPI' && !openid) {
    return failure(401, 1101, 'JSAPI orders need the payer openid');
  }
  const packageType = data.packageType;
  const yuan = (await currentPrices())[packageType];
  if (typeof yuan !== 'number') return failure(400, 1003, `unknown packageType ${packageType}`);
  const amount = Math.round(yuan * 100);
  const outTradeNo = `WX${Date.now()}${crypto.randomBytes(6).toString('hex')}`.slice(0, 32);
  const now = new Date();
  const conn = await db();
  await conn.execute(
    'INSERT INTO orders (out_trade_no, openid, user_id, generation_id, package_type, ' +
      'business_type, business_id, amount, description, trade_type, status, created_at, updated_at) ' +
      "VALUES (?,?,?,?,?,?,?,?,?,?,'pending',?,?)",
    [
      outTradeNo,
      openid,
      data.userId ?? null,
      data.generationId ?? null,
      packageType,
      data.businessType ?? null,
      data.businessId ?? null,
      amount,
      packageType,
      tradeType,
      now,
      now,
    ],
  );
  const params = {
    description: packageType,
    out_trade_no: outTradeNo,
    notify_url: NOTIFY_URL,
    amount: { total: amount, currency: 'CNY' },
  };
  const result =
    tradeType === 'JSAPI'
      ? await pay.transactions_jsapi({ ...params, payer: { openid } })
      : await pay.transactions_native(params);
  const log = { type: 'order', outTradeNo, openid, packageType, amount };
  if (result.status !== 200) {
    await conn.execute(
      "UPDATE orders SET status = 'failed', updated_at = ? WHERE out_trade_no = ? AND status = 'pending'",
      [new Date(), outTradeNo],
    );
    await insertLog(conn, { ...log, eventType: 'prepay_failed', detail: String(result.error) });
    return failure(502, 3001, `WeChat Pay refused the order: ${result.error}`);
  }
  await insertLog(conn, { ...log, eventType: 'prepay' });
  if (tradeType === 'JSAPI') {
    return envelope({ outTradeNo, ...result.data, packageVal: result.data.package });
  }
  return envelope({ outTradeNo, codeUrl: result.data.code_url });
}

const notifyFail = (status, message) => ({ status, body: { code: 'FAIL', message } });

async function handleNotification(req, raw) {
  const h = req.headers;
  const signature = h['wechatpay-signature'];
  const serial = h['wechatpay-serial'];
  const timestamp = h['wechatpay-timestamp'];
  const nonce = h['wechatpay-nonce'];
  if (!signature || !serial || !timestamp || !nonce) {
    return notifyFail(401, 'missing Wechatpay-* headers');
  }
  if (signature.startsWith('WECHATPAY/SIGNTEST/')) return notifyFail(400, 'signature probe');
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) >= MAX_CLOCK_SKEW_SECS) {
    return notifyFail(401, 'stale Wechatpay-Timestamp');
  }
  let verified = false;
  try {
    verified = await pay.verifySign({ timestamp, nonce, body: raw, serial, signature, apiSecret: APIV3_KEY });
  } catch (e) {
    return notifyFail(401, `verification failed: ${e.message}`);
  }
  if (!verified) return notifyFail(401, 'signature does not verify');
  const notification = JSON.parse(raw);
  const r = notification.resource || {};
  let tx;
  try {
    tx = pay.decipher_gcm(r.ciphertext, r.associated_data || '', r.nonce, APIV3_KEY);
  } catch (e) {
    return notifyFail(400, 'resource could not be decrypted');
  }
  // As the cloud function does it: one conditional UPDATE, a log row for every notification
  // (duplicates included), and the backend told when the UPDATE changed the order. No
  // transaction, no order read, no outbox: a backend that is down misses the payment.
  const conn = await db();
  const event = String(notification.event_type);
  const payerOpenid = (tx.payer && tx.payer.openid) || null;
  const total = tx.amount && tx.amount.total;
  const now = new Date();
  let changed = 0;
  if (event.startsWith('TRANSACTION.') && tx.trade_state === 'SUCCESS') {
    if (tx.mchid !== MCHID || tx.appid !== APPID) return notifyFail(409, 'not this merchant');
    const [res] = await conn.execute(
      "UPDATE orders SET status = 'paid', transaction_id = ?, paid_amount = ?, " +
        'openid = COALESCE(openid, ?), paid_at = ?, updated_at = ? ' +
        "WHERE out_trade_no = ? AND status = 'pending' AND amount = ?",
      [tx.transaction_id, total, payerOpenid, tx.success_time ? new Date(tx.success_time) : now, now, tx.out_trade_no, total],
    );
    changed = res.affectedRows;
  }
  await insertLog(conn, {
    type: 'callback',
    outTradeNo: tx.out_trade_no,
    transactionId: tx.transaction_id,
    openid: payerOpenid,
    eventType: event,
    amount: total,
  });
  if (changed !== 1) return { status: 204 };
  try {
    const resp = await fetch(`${API_BASE_URL}/api/payment/internal/notify`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Internal-Secret': INTERNAL_SECRET },
      body: JSON.stringify({
        outTradeNo: tx.out_trade_no,
        transactionId: tx.transaction_id,
        status: 'paid',
        openid: payerOpenid,
        attach: tx.attach,
        amount: total,
      }),
      signal: AbortSignal.timeout(BACKEND_TIMEOUT_MS),
    });
    await resp.arrayBuffer();
    if (!resp.ok) throw new Error(`backend answered HTTP ${resp.status}`);
  } catch (e) {
    console.error(`backend not notified of ${tx.out_trade_no}: ${e.message}`);
  }
  return { status: 204 };
}

async function route(req, raw) {
  const path = (req.url || '/').split('?')[0];
  if (req.method === 'GET' && path === '/healthz') return { status: 200, body: { ok: true } };
  if (req.headers['wechatpay-signature']) return handleNotification(req, raw);
  if (req.method !== 'POST' || path !== '/pay') return failure(404, 1004, 'POST /pay or GET /healthz');
  let data;
  try {
    data = JSON.parse(raw);
  } catch (e) {
    return failure(400, 1000, 'the body must be a JSON object with a `type` field');
  }
  if (data.type !== 'wxpay_order') return failure(400, 1002, `type ${data.type} is not served by the reference`);
  return createOrder(req, data);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= BODY_LIMIT) chunks.push(c);
  });
  req.on('end', async () => {
    let out;
    try {
      out = size > BODY_LIMIT ? failure(413, 1005, 'body too large') : await route(req, Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      console.error(`request failed: ${e.stack || e}`);
      out = failure(500, 5000, 'internal error');
    }
    if (out.body === undefined) {
      res.writeHead(out.status);
      res.end();
    } else {
      res.writeHead(out.status, { 'Content-Type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(out.body));
    }
  });
});

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 9000);
server.listen(PORT, HOST, () => {
  console.error(`node reference serving on http://${HOST}:${PORT} (POST /pay, GET /healthz)`);
});
