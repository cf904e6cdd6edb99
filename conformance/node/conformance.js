#!/usr/bin/env node
// The merchant flow of wechatpay-node-v3 (npm), run against the wxpay-sim sandbox.
//
// usage: node conformance.js SIM_KEYS_DIR
//
// SIM_KEYS_DIR is the directory `wxpay-sim --out DIR` wrote (sim.env and the PEM files); the
// SDK is set up for the mode that simulator runs in. Prints one line per check and, last,
// `RESULT passed=N failed=M`; exits 1 if anything failed.
'use strict';

const WxPay = require('wechatpay-node-v3');
const {
  env, read, SANDBOX, PUBLIC_KEY_MODE, MODE, check, expect, control, startReceiver, run,
  references, orderRequest, merchantSigned, refundRequest, expectRefundAccepted, completeRefund,
} = require('./harness');

const GATEWAY = 'https://api.mch.weixin.qq.com';

// Pointing the SDK at the sandbox: wechatpay-node-v3 builds every URL on
// https://api.mch.weixin.qq.com, signs the path without it, and sends through
// `this.httpService`, which its README lets you replace with `pay.createHttp(service)`
// (an IPayRequest: post, get, upload). This one sends to the sandbox instead and keeps
// each answer's headers and raw body, because the SDK itself never verifies API answers.
class SandboxHttp {
  constructor(base) {
    this.base = base;
    this.last = null;
  }
  async send(method, url, params, headers) {
    const target = url.replace(GATEWAY, this.base);
    const res = await fetch(target, {
      method,
      headers,
      body: params === undefined ? undefined : JSON.stringify(params),
    });
    const text = await res.text();
    this.last = { status: res.status, headers: res.headers, text };
    let data = text;
    try {
      data = text ? JSON.parse(text) : {};
    } catch (_) {
      // not JSON: hand the text over as the SDK's own client does
    }
    // The SDK's own client answers errors as {status, error: text}.
    return res.ok ? { status: res.status, data } : { status: res.status, error: text };
  }
  post(url, params, headers) {
    return this.send('POST', url, params, headers);
  }
  get(url, headers) {
    return this.send('GET', url, undefined, headers);
  }
  upload() {
    throw new Error('not used');
  }
}

const { orderNo, refundNo } = references('JS');
const state = {};
let pay;
let httpService;
let receiver;

// Every API answer: the documented headers, and a signature the SDK's verifySign accepts.
async function verifyLastAnswer() {
  const a = httpService.last;
  const h = (n) => a.headers.get(n);
  expect(h('wechatpay-signature-type') === 'WECHATPAY2-SHA256-RSA2048', `Wechatpay-Signature-Type: ${h('wechatpay-signature-type')}`);
  expect(h('request-id'), 'Request-ID');
  const ok = await pay.verifySign({
    timestamp: h('wechatpay-timestamp'),
    nonce: h('wechatpay-nonce'),
    serial: h('wechatpay-serial'),
    signature: h('wechatpay-signature'),
    body: a.text,
  });
  expect(ok === true, `HTTP ${a.status} answer does not verify`);
}

async function ok(call, status = 200) {
  const r = await call;
  expect(r.status === status, `HTTP ${r.status}: ${r.error || JSON.stringify(r.data)}`);
  await verifyLastAnswer();
  return r.data;
}

async function notification(expectedEvent) {
  const { headers, body } = await receiver.next();
  expect(headers['wechatpay-signature-type'] === 'WECHATPAY2-SHA256-RSA2048', headers);
  const verified = await pay.verifySign({
    timestamp: headers['wechatpay-timestamp'],
    nonce: headers['wechatpay-nonce'],
    serial: headers['wechatpay-serial'],
    signature: headers['wechatpay-signature'],
    body,
  });
  expect(verified === true, 'the notification does not verify');
  const n = JSON.parse(body);
  expect(n.event_type === expectedEvent, n.event_type);
  const r = n.resource;
  return pay.decipher_gcm(r.ciphertext, r.associated_data, r.nonce, env.WECHAT_APIV3_KEY);
}

async function main() {
  receiver = await startReceiver();
  console.log(`wechatpay-node-v3 2.2.1 against ${SANDBOX} (${MODE} mode)`);

  await check(`init (${PUBLIC_KEY_MODE ? 'public key' : 'certificate download'})`, async () => {
    pay = new WxPay({
      appid: env.WECHAT_APPID,
      mchid: env.WECHAT_MCHID,
      serial_no: env.WECHAT_SERIAL_NO,
      publicKey: Buffer.from(read('apiclient_public_key.pem')),
      privateKey: Buffer.from(read('apiclient_key.pem')),
      key: env.WECHAT_APIV3_KEY,
    });
    httpService = new SandboxHttp(SANDBOX);
    pay.createHttp(httpService);
    if (PUBLIC_KEY_MODE) {
      // The SDK keeps verifying keys in the static WxPay.certificates, by serial.
      WxPay.certificates[env.WECHAT_PUBLIC_KEY_ID] = read('wechatpay_public_key.pem');
    } else {
      await pay.fetchCertificates();
      expect(Object.keys(WxPay.certificates).length >= 1, 'platform certificates downloaded');
      await verifyLastAnswer();
    }
  });
  if (!pay) return;

  const order = (kind, extra) => orderRequest(orderNo(kind), receiver.url, extra);
  await check('prepay JSAPI, with paySign', async () => {
    const r = await ok(pay.transactions_jsapi(order('JSAPI', { payer: { openid: 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o' } })));
    expect(r.package.startsWith('prepay_id=wx'), r);
    expect(merchantSigned([r.appId, r.timeStamp, r.nonceStr, r.package], r.paySign), 'paySign verifies with the merchant key');
  });
  await check('prepay NATIVE', async () => {
    const r = await ok(pay.transactions_native(order('NATIVE')));
    expect(r.code_url.startsWith('weixin://'), r);
  });
  await check('prepay H5', async () => {
    const r = await ok(pay.transactions_h5(order('H5', { scene_info: { payer_client_ip: '14.23.150.211', h5_info: { type: 'Wap' } } })));
    expect(r.h5_url.startsWith('https://'), r);
  });
  await check('prepay APP', async () => {
    const r = await ok(pay.transactions_app(order('APP')));
    expect(r.prepayid.startsWith('wx'), r);
    expect(merchantSigned([r.appid, r.timestamp, r.noncestr, r.prepayid], r.sign), 'the APP sign verifies with the merchant key');
  });
  await check('payment notification verifies and decrypts', async () => {
    const outcome = await control('POST', `/sim/pay/${orderNo('JSAPI')}`);
    expect(outcome.notified === true && outcome.status === 204, outcome);
    const tx = await notification('TRANSACTION.SUCCESS');
    expect(tx.out_trade_no === orderNo('JSAPI') && tx.trade_state === 'SUCCESS', tx);
    expect(tx.amount.total === 990, tx);
    state.transactionId = tx.transaction_id;
  });
  await check('query by out_trade_no', async () => {
    const tx = await ok(pay.query({ out_trade_no: orderNo('JSAPI') }));
    expect(tx.trade_state === 'SUCCESS' && tx.transaction_id === state.transactionId, tx);
  });
  await check('query by transaction_id', async () => {
    const tx = await ok(pay.query({ transaction_id: state.transactionId }));
    expect(tx.out_trade_no === orderNo('JSAPI'), tx);
  });
  await check('close', async () => {
    await ok(pay.close(orderNo('NATIVE')), 204);
    const tx = await ok(pay.query({ out_trade_no: orderNo('NATIVE') }));
    expect(tx.trade_state === 'CLOSED', tx);
  });
  await check('refund', async () => {
    const r = await ok(pay.refunds(refundRequest(state.transactionId, refundNo, receiver.url)));
    expectRefundAccepted(r, refundNo);
  });
  await check('refund notification verifies and decrypts', () => completeRefund(refundNo, notification));
  await check('refund query', async () => {
    const r = await ok(pay.find_refunds(refundNo));
    expect(r.status === 'SUCCESS' && r.amount.refund === 300, r);
  });
  await check('error answers: ORDER_NOT_EXIST, ORDERPAID, signed', async () => {
    let r = await pay.query({ out_trade_no: orderNo('NOPE') });
    expect(r.status === 404 && JSON.parse(r.error).code === 'ORDER_NOT_EXIST', r);
    await verifyLastAnswer();
    r = await pay.close(orderNo('JSAPI'));
    expect(r.status === 400 && JSON.parse(r.error).code === 'ORDERPAID', r);
    await verifyLastAnswer();
  });
  await check('injected SYSTEM_ERROR', async () => {
    await control('POST', '/sim/faults', {
      path: '/v3/pay/transactions/native', kind: 'status', status: 500, code: 'SYSTEM_ERROR', message: '系统繁忙',
    });
    const r = await pay.transactions_native(order('SYS'));
    expect(r.status === 500 && JSON.parse(r.error).code === 'SYSTEM_ERROR', r);
    await verifyLastAnswer();
  });
  await check('bad signature detected', async () => {
    await control('POST', '/sim/faults', { path: '/v3/pay/transactions/out-trade-no/', kind: 'bad_signature' });
    const r = await pay.query({ out_trade_no: orderNo('JSAPI') });
    expect(r.status === 200, r);
    let refused = false;
    await verifyLastAnswer().catch(() => (refused = true));
    expect(refused, 'a corrupted signature verified');
  });
  await control('DELETE', '/sim/faults');
  receiver.close();
}

run('wechatpay-node-v3', main);
