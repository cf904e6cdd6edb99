#!/usr/bin/env node
// The merchant flow of wechatpay-axios-plugin (npm), run against the wxpay-sim sandbox.
//
// usage: node axios-plugin.js SIM_KEYS_DIR      (as conformance.js)
//
// Pointing the SDK at the sandbox: `baseURL`, an axios option the SDK passes through
// (its certificate CLI takes `--baseURL` too). The SDK signs the path relative to it and
// verifies every 2xx answer itself against the `certs` it was given.
'use strict';

const { Wechatpay, Rsa, Formatter, Aes } = require('wechatpay-axios-plugin');
const {
  env, read, SANDBOX, PUBLIC_KEY_MODE, MODE, check, expect, control, startReceiver, run,
  references, orderRequest, merchantSigned, refundRequest, expectRefundAccepted, completeRefund,
} = require('./harness');

const { orderNo, refundNo } = references('AX');
const state = {};
let wxpay;
let certs;
let receiver;

function build() {
  return new Wechatpay({
    baseURL: `${SANDBOX}/`,
    mchid: env.WECHAT_MCHID,
    serial: env.WECHAT_SERIAL_NO,
    privateKey: read('apiclient_key.pem'),
    certs,
  });
}

// Certificate mode: the SDK needs the platform certificates before its first call. Its own
// `wxpay crt` bootstraps with a placeholder and injects what it decrypts into `certs`, but
// 0.9.6 verifies against a copy of `certs` taken at construction, so that answer is refused
// (against WeChat Pay too). Here the download skips the SDK's verifier, decrypts with the
// APIv3 key, then checks the answer's signature with the certificate it carried.
async function downloadCertificates() {
  const downloaded = {};
  let raw;
  let headers;
  const keep = (data, h) => {
    raw = data;
    headers = h;
    return JSON.parse(data);
  };
  certs = { placeholder: undefined };
  const { data } = await build().v3.certificates.get({ transformResponse: [keep] });
  data.data.forEach(({ serial_no: serial, encrypt_certificate: c }) => {
    downloaded[serial] = Aes.AesGcm.decrypt(c.ciphertext, env.WECHAT_APIV3_KEY, c.nonce, c.associated_data);
  });
  const serial = headers['wechatpay-serial'];
  // Mixed mode: the answer may be signed with the public key instead.
  const signer = serial === env.WECHAT_PUBLIC_KEY_ID ? read('wechatpay_public_key.pem') : downloaded[serial];
  expect(signer, 'the answer is signed by a certificate it carries');
  const message = Formatter.response(headers['wechatpay-timestamp'], headers['wechatpay-nonce'], raw);
  expect(Rsa.verify(message, headers['wechatpay-signature'], Rsa.from(signer, Rsa.KEY_TYPE_PUBLIC)), 'the download verifies');
  certs = downloaded;
}

// An error answer comes back as axios' error, with WeChat Pay's body.
async function refusal(call) {
  try {
    await call;
  } catch (e) {
    if (e.response) return e.response;
    throw e;
  }
  throw new Error('succeeded where WeChat Pay refuses');
}

async function notification(expectedEvent) {
  const { headers, body } = await receiver.next();
  expect(headers['wechatpay-signature-type'] === 'WECHATPAY2-SHA256-RSA2048', headers);
  const key = certs[headers['wechatpay-serial']];
  expect(key, `no key for ${headers['wechatpay-serial']}`);
  const message = Formatter.response(headers['wechatpay-timestamp'], headers['wechatpay-nonce'], body);
  expect(Rsa.verify(message, headers['wechatpay-signature'], Rsa.from(key, Rsa.KEY_TYPE_PUBLIC)), 'notification verifies');
  const n = JSON.parse(body);
  expect(n.event_type === expectedEvent, n.event_type);
  const r = n.resource;
  return JSON.parse(Aes.AesGcm.decrypt(r.ciphertext, env.WECHAT_APIV3_KEY, r.nonce, r.associated_data));
}

async function main() {
  receiver = await startReceiver();
  console.log(`wechatpay-axios-plugin 0.9.6 against ${SANDBOX} (${MODE} mode)`);

  await check(`init (${PUBLIC_KEY_MODE ? 'public key' : 'certificate download'})`, async () => {
    if (MODE !== 'public-key') await downloadCertificates();
    if (PUBLIC_KEY_MODE) certs = { ...certs, [env.WECHAT_PUBLIC_KEY_ID]: read('wechatpay_public_key.pem') };
    wxpay = build();
  });
  if (!wxpay) return;

  const order = (kind, extra) => orderRequest(orderNo(kind), receiver.url, { appid: env.WECHAT_APPID, mchid: env.WECHAT_MCHID, ...extra });
  await check('prepay JSAPI, with paySign', async () => {
    const { data } = await wxpay.v3.pay.transactions.jsapi.post(order('JSAPI', { payer: { openid: 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o' } }));
    expect(data.prepay_id.startsWith('wx'), data);
    const fields = [env.WECHAT_APPID, Formatter.timestamp(), Formatter.nonce(), `prepay_id=${data.prepay_id}`];
    const paySign = Rsa.sign(Formatter.joinedByLineFeed(...fields), Rsa.from(read('apiclient_key.pem'), Rsa.KEY_TYPE_PRIVATE));
    expect(merchantSigned(fields, paySign), 'paySign verifies with the merchant key');
  });
  await check('prepay NATIVE', async () => {
    const { data } = await wxpay.v3.pay.transactions.native.post(order('NATIVE'));
    expect(data.code_url.startsWith('weixin://'), data);
  });
  await check('prepay H5', async () => {
    const { data } = await wxpay.v3.pay.transactions.h5.post(order('H5', { scene_info: { payer_client_ip: '14.23.150.211', h5_info: { type: 'Wap' } } }));
    expect(data.h5_url.startsWith('https://'), data);
  });
  await check('prepay APP', async () => {
    const { data } = await wxpay.v3.pay.transactions.app.post(order('APP'));
    expect(data.prepay_id.startsWith('wx'), data);
  });
  await check('payment notification verifies and decrypts', async () => {
    const outcome = await control('POST', `/sim/pay/${orderNo('JSAPI')}`);
    expect(outcome.notified === true && outcome.status === 204, outcome);
    const tx = await notification('TRANSACTION.SUCCESS');
    expect(tx.out_trade_no === orderNo('JSAPI') && tx.trade_state === 'SUCCESS' && tx.amount.total === 990, tx);
    state.transactionId = tx.transaction_id;
  });
  const mchid = { params: { mchid: env.WECHAT_MCHID } };
  await check('query by out_trade_no', async () => {
    const { data } = await wxpay.v3.pay.transactions.outTradeNo.$out_trade_no$.get({ ...mchid, out_trade_no: orderNo('JSAPI') });
    expect(data.trade_state === 'SUCCESS' && data.transaction_id === state.transactionId, data);
  });
  await check('query by transaction_id', async () => {
    const { data } = await wxpay.v3.pay.transactions.id._transaction_id_.get({ ...mchid, transaction_id: state.transactionId });
    expect(data.out_trade_no === orderNo('JSAPI'), data);
  });
  await check('close', async () => {
    const res = await wxpay.v3.pay.transactions.outTradeNo.$out_trade_no$.close.post(
      { mchid: env.WECHAT_MCHID }, { out_trade_no: orderNo('NATIVE') },
    );
    expect(res.status === 204, res.status);
    const { data } = await wxpay.v3.pay.transactions.outTradeNo.$out_trade_no$.get({ ...mchid, out_trade_no: orderNo('NATIVE') });
    expect(data.trade_state === 'CLOSED', data);
  });
  await check('refund', async () => {
    const { data } = await wxpay.v3.refund.domestic.refunds.post(refundRequest(state.transactionId, refundNo, receiver.url));
    expectRefundAccepted(data, refundNo);
  });
  await check('refund notification verifies and decrypts', () => completeRefund(refundNo, notification));
  await check('refund query', async () => {
    const { data } = await wxpay.v3.refund.domestic.refunds.$out_refund_no$.get({ out_refund_no: refundNo });
    expect(data.status === 'SUCCESS' && data.amount.refund === 300, data);
  });
  await check('error answers: ORDER_NOT_EXIST, ORDERPAID', async () => {
    let r = await refusal(wxpay.v3.pay.transactions.outTradeNo.$out_trade_no$.get({ ...mchid, out_trade_no: orderNo('NOPE') }));
    expect(r.status === 404 && r.data.code === 'ORDER_NOT_EXIST', r.data);
    expect(r.headers['wechatpay-signature-type'] === 'WECHATPAY2-SHA256-RSA2048' && r.headers['request-id'], r.headers);
    r = await refusal(wxpay.v3.pay.transactions.outTradeNo.$out_trade_no$.close.post(
      { mchid: env.WECHAT_MCHID }, { out_trade_no: orderNo('JSAPI') },
    ));
    expect(r.status === 400 && r.data.code === 'ORDERPAID', r.data);
  });
  await check('injected SYSTEM_ERROR', async () => {
    await control('POST', '/sim/faults', { path: '/v3/pay/transactions/native', kind: 'status', status: 500, code: 'SYSTEM_ERROR' });
    const r = await refusal(wxpay.v3.pay.transactions.native.post(order('SYS')));
    expect(r.status === 500 && r.data.code === 'SYSTEM_ERROR', r.data);
  });
  await check('bad signature refused', async () => {
    await control('POST', '/sim/faults', { path: '/v3/pay/transactions/out-trade-no/', kind: 'bad_signature' });
    const r = await refusal(wxpay.v3.pay.transactions.outTradeNo.$out_trade_no$.get({ ...mchid, out_trade_no: orderNo('JSAPI') }));
    expect(r.status === 200, `refused for another reason: HTTP ${r.status}`);
  });
  await control('DELETE', '/sim/faults');
  receiver.close();
}

run('wechatpay-axios-plugin', main);
