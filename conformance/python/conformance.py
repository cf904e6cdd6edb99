#!/usr/bin/env python3
"""The merchant flow of the wechatpayv3 SDK (PyPI), run against the wxpay-sim sandbox.

usage: conformance.py SIM_KEYS_DIR

SIM_KEYS_DIR is the directory `wxpay-sim --out DIR` wrote (sim.env and the PEM files). The
mode (certificate or public key) is whatever that simulator runs in: the SDK is set up the
way a merchant would set it up for that mode. Prints one line per check and, last,
`RESULT passed=N failed=M`; exits 1 if anything failed.
"""

import json
import os
import queue
import sys
import threading
import time
import urllib.request
import uuid
from base64 import b64decode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def read_env(keys_dir):
    env = {}
    with open(os.path.join(keys_dir, "sim.env"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v.strip('"')
    return env


KEYS_DIR = sys.argv[1] if len(sys.argv) > 1 else "./sim-keys"
ENV = read_env(KEYS_DIR)
SANDBOX = ENV["WECHATPAY_BASE_URL"]

# Pointing the SDK at the sandbox. wechatpayv3 2.0.4 sets `self._gate_way =
# 'https://api.mch.weixin.qq.com'` in Core.__init__ and reads it for every request, the
# platform-certificate download inside the constructor included. A read-only property on
# the class wins over that assignment; nothing else in the SDK changes.
import wechatpayv3.core  # noqa: E402

wechatpayv3.core.Core._gate_way = property(lambda self: SANDBOX, lambda self, value: None)

from wechatpayv3 import WeChatPay, WeChatPayType  # noqa: E402
from wechatpayv3.utils import build_authorization  # noqa: E402

PUBLIC_KEY_MODE = "WECHAT_PUBLIC_KEY_ID" in ENV
# Mixed mode: a public key, and certificates the SDK downloads when a serial needs one.
MIXED = PUBLIC_KEY_MODE and os.path.exists(os.path.join(KEYS_DIR, "wechatpay_platform_cert.pem"))
MODE = "mixed" if MIXED else "public-key" if PUBLIC_KEY_MODE else "certificate"


def read(name):
    with open(os.path.join(KEYS_DIR, name), encoding="utf-8") as f:
        return f.read()


class Receiver:
    """The merchant's notify_url: keeps what WeChat Pay POSTs and answers 204."""

    def __init__(self):
        received = self.received = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.put((self.headers, body.decode("utf-8")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/notify" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self):
        return self.received.get(timeout=10)


def control(method, path, body=None):
    """The sandbox's control API (no signature): pay, complete refunds, inject faults."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(SANDBOX + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


results = []


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print("  ok   %s" % name, flush=True)
    except Exception as e:  # a failed check is reported, the run goes on
        detail = "%s: %s" % (type(e).__name__, e)
        results.append((name, detail))
        print("  FAIL %s: %s" % (name, detail), flush=True)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


receiver = Receiver()
state = {}
PRIVATE_KEY = read("apiclient_key.pem")
MERCHANT_PUBLIC_KEY = serialization.load_pem_public_key(read("apiclient_public_key.pem").encode())
TAG = uuid.uuid4().hex[:10].upper()


def order_no(kind):
    return "PY%s%s" % (kind, TAG)


def init():
    kwargs = dict(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid=ENV["WECHAT_MCHID"],
        private_key=PRIVATE_KEY,
        cert_serial_no=ENV["WECHAT_SERIAL_NO"],
        appid=ENV["WECHAT_APPID"],
        apiv3_key=ENV["WECHAT_APIV3_KEY"],
        notify_url=receiver.url,
        timeout=(5, 10),
    )
    if PUBLIC_KEY_MODE:
        kwargs.update(public_key=read("wechatpay_public_key.pem"),
                      public_key_id=ENV["WECHAT_PUBLIC_KEY_ID"])
    wxpay = WeChatPay(**kwargs)
    if not PUBLIC_KEY_MODE:
        # The constructor downloaded and decrypted /v3/certificates from the sandbox.
        expect(len(wxpay._core._certificates) >= 1, "platform certificates downloaded")
    state["wxpay"] = wxpay


def prepay(pay_type, kind, **extra):
    def run():
        code, message = state["wxpay"].pay(
            description="conformance",
            out_trade_no=order_no(kind),
            amount={"total": 990, "currency": "CNY"},
            pay_type=pay_type,
            **extra)
        expect(code == 200, "HTTP %s: %s" % (code, message))
        state[kind] = json.loads(message)
    return run


def jsapi_answer():
    expect(state["JSAPI"]["prepay_id"].startswith("wx"), state["JSAPI"])


def native_answer():
    expect(state["NATIVE"]["code_url"].startswith("weixin://"), state["NATIVE"])


def h5_answer():
    expect(state["H5"]["h5_url"].startswith("https://"), state["H5"])


def app_answer():
    expect(state["APP"]["prepay_id"].startswith("wx"), state["APP"])


def pay_sign():
    # What wx.requestPayment needs, signed by the SDK with the merchant key.
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
    package = "prepay_id=" + state["JSAPI"]["prepay_id"]
    fields = [ENV["WECHAT_APPID"], timestamp, nonce, package]
    signature = state["wxpay"].sign(fields)
    message = ("\n".join(fields) + "\n").encode()
    MERCHANT_PUBLIC_KEY.verify(b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256())


def notification(expected_event):
    headers, body = receiver.next()
    expect(headers.get("Wechatpay-Signature-Type") == "WECHATPAY2-SHA256-RSA2048", dict(headers))
    # The SDK verifies the signature (fetching the certificate if needed) and decrypts.
    result = state["wxpay"].callback(headers, body)
    expect(result is not None, "the SDK did not verify or decrypt the notification")
    expect(result["event_type"] == expected_event, result["event_type"])
    return result["resource"]


def pay_and_notify():
    outcome = control("POST", "/sim/pay/" + order_no("JSAPI"))
    expect(outcome.get("notified") is True and outcome.get("status") == 204, outcome)
    tx = notification("TRANSACTION.SUCCESS")
    expect(tx["out_trade_no"] == order_no("JSAPI"), tx)
    expect(tx["trade_state"] == "SUCCESS" and tx["amount"]["total"] == 990, tx)
    state["transaction_id"] = tx["transaction_id"]


def query_by_out_trade_no():
    code, message = state["wxpay"].query(out_trade_no=order_no("JSAPI"))
    expect(code == 200, "HTTP %s: %s" % (code, message))
    tx = json.loads(message)
    expect(tx["trade_state"] == "SUCCESS", tx)
    expect(tx["transaction_id"] == state["transaction_id"], tx)


def query_by_transaction_id():
    code, message = state["wxpay"].query(transaction_id=state["transaction_id"])
    expect(code == 200, "HTTP %s: %s" % (code, message))
    expect(json.loads(message)["out_trade_no"] == order_no("JSAPI"), message)


def close():
    code, message = state["wxpay"].close(order_no("NATIVE"))
    expect(code == 204, "HTTP %s: %s" % (code, message))
    code, message = state["wxpay"].query(out_trade_no=order_no("NATIVE"))
    expect(code == 200 and json.loads(message)["trade_state"] == "CLOSED", message)


def refund():
    code, message = state["wxpay"].refund(
        out_refund_no="PYRF" + TAG,
        amount={"refund": 300, "total": 990, "currency": "CNY"},
        transaction_id=state["transaction_id"],
        reason="conformance")
    expect(code == 200, "HTTP %s: %s" % (code, message))
    r = json.loads(message)
    expect(r["out_refund_no"] == "PYRF" + TAG and r["amount"]["refund"] == 300, r)
    expect(r["status"] in ("PROCESSING", "SUCCESS"), r)


def refund_notification():
    outcome = control("POST", "/sim/refunds/PYRF%s/complete?status=SUCCESS" % TAG)
    expect(outcome.get("notified") is True, outcome)
    r = notification("REFUND.SUCCESS")
    expect(r["out_refund_no"] == "PYRF" + TAG and r["refund_status"] == "SUCCESS", r)


def refund_query():
    code, message = state["wxpay"].query_refund("PYRF" + TAG)
    expect(code == 200, "HTTP %s: %s" % (code, message))
    r = json.loads(message)
    expect(r["status"] == "SUCCESS" and r["amount"]["refund"] == 300, r)


def business_errors():
    code, message = state["wxpay"].query(out_trade_no="PYNOPE" + TAG)
    expect(code == 404 and json.loads(message)["code"] == "ORDER_NOT_EXIST", message)
    code, message = state["wxpay"].close(order_no("JSAPI"))
    expect(code == 400 and json.loads(message)["code"] == "ORDERPAID", message)


def error_answers_are_signed():
    # The SDK checks only 2xx answers; check an error answer with its own verifier.
    path = "/v3/pay/transactions/out-trade-no/PYNOPE%s?mchid=%s" % (TAG, ENV["WECHAT_MCHID"])
    auth = build_authorization(path, "GET", ENV["WECHAT_MCHID"], ENV["WECHAT_SERIAL_NO"],
                               state["wxpay"]._core._private_key)
    r = requests.get(SANDBOX + path, headers={"Authorization": auth, "Accept": "application/json"},
                     timeout=10)
    expect(r.status_code == 404, r.status_code)
    expect(r.headers.get("Request-ID"), "Request-ID")
    expect(state["wxpay"]._core._verify_signature(r.headers, r.text), "error answer verifies")


def injected_system_error():
    control("POST", "/sim/faults", {"path": "/v3/pay/transactions/native", "kind": "status",
                                    "status": 500, "code": "SYSTEM_ERROR", "message": "系统繁忙"})
    code, message = state["wxpay"].pay(description="conformance", out_trade_no=order_no("SYS"),
                                       amount={"total": 1}, pay_type=WeChatPayType.NATIVE)
    expect(code == 500 and json.loads(message)["code"] == "SYSTEM_ERROR", message)


def refused(fault, words):
    def run():
        control("POST", "/sim/faults", dict(path="/v3/pay/transactions/out-trade-no/", **fault))
        try:
            state["wxpay"].query(out_trade_no=order_no("JSAPI"))
        except Exception as e:
            expect(words in str(e), "refused for another reason: %s" % e)
            return
        raise AssertionError("the SDK used an answer it should have refused")
    return run


print("wechatpayv3 2.0.4 against %s (%s mode)" % (SANDBOX, MODE), flush=True)
check("init (%s)" % ("public key" if PUBLIC_KEY_MODE else "certificate download"), init)
if "wxpay" in state:
    check("prepay JSAPI", prepay(WeChatPayType.MINIPROG, "JSAPI",
                                 payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}))
    check("prepay NATIVE", prepay(WeChatPayType.NATIVE, "NATIVE"))
    check("prepay H5", prepay(WeChatPayType.H5, "H5", scene_info={
        "payer_client_ip": "14.23.150.211", "h5_info": {"type": "Wap"}}))
    check("prepay APP", prepay(WeChatPayType.APP, "APP"))
    for name, fn in [
        ("JSAPI answer has prepay_id", jsapi_answer),
        ("NATIVE answer has code_url", native_answer),
        ("H5 answer has h5_url", h5_answer),
        ("APP answer has prepay_id", app_answer),
        ("paySign verifies with the merchant key", pay_sign),
        ("payment notification verifies and decrypts", pay_and_notify),
        ("query by out_trade_no", query_by_out_trade_no),
        ("query by transaction_id", query_by_transaction_id),
        ("close", close),
        ("refund", refund),
        ("refund notification verifies and decrypts", refund_notification),
        ("refund query", refund_query),
        ("error answers: ORDER_NOT_EXIST, ORDERPAID", business_errors),
        ("error answers are signed", error_answers_are_signed),
        ("injected SYSTEM_ERROR", injected_system_error),
        ("bad signature refused", refused({"kind": "bad_signature"}, "verify the signature")),
        ("unknown Wechatpay-Signature-Type refused",
         refused({"kind": "signature_type", "signature_type": "WECHATPAY2-SM2-WITH-SM3"},
                 "does not support this algorithm")),
    ]:
        if "transaction_id" not in state and name.startswith(("query", "refund", "error")):
            results.append((name, "skipped: no payment"))
            print("  FAIL %s: skipped, the payment step failed" % name, flush=True)
            continue
        check(name, fn)

failed = [r for r in results if r[1]]
print("wechatpayv3 (%s mode): %d passed, %d failed" % (MODE, len(results) - len(failed), len(failed)))
print("RESULT passed=%d failed=%d" % (len(results) - len(failed), len(failed)), flush=True)
control("DELETE", "/sim/faults")
sys.exit(1 if failed else 0)
