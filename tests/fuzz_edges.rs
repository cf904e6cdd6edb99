//! Property tests of the request parser (local HTTP and every Lambda event shape): whatever
//! a caller sends, nothing panics, and every answer is an envelope whose code agrees with
//! its HTTP status (or WeChat Pay's FAIL body, for anything carrying a signature header).
//! Case counts are bounded for CI; `PROPTEST_CASES=5000` searches longer.

mod common;
mod props;

use bytes::Bytes;
use common::{Harness, StoreKind, SECRET};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use serde_json::{Map, Value};
use wxpay_shared::handlers::ALL_TYPES;
use wxpay_shared::identity::Transport;
use wxpay_shared::runtime::{handle_http, handle_lambda_event, HttpRequest};

const REQUEST_CASES: u32 = 400;
const LAMBDA_CASES: u32 = 400;

/// A call's `type`: one we serve, or anything.
fn call_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(ALL_TYPES.types().collect::<Vec<_>>()).prop_map(Value::from),
        1 => props::json_value(),
    ]
}

/// A body: raw bytes, any JSON, or an object shaped like a call with hostile fields.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..300),
        1 => props::json_value().prop_map(|v| v.to_string().into_bytes()),
        3 => (
            call_type(),
            prop::collection::btree_map(props::field_name(), props::json_value(), 0..6)
        )
            .prop_map(|(ty, fields)| {
                let mut call: Map<String, Value> = fields.into_iter().collect();
                call.insert("type".into(), ty);
                Value::Object(call).to_string().into_bytes()
            }),
    ]
}

/// Headers a caller controls: the secret (right, wrong, absent), an openid, a forwarded-for,
/// and now and then a signature header that makes it a notification.
fn headers() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let secret = prop_oneof![
        Just(None),
        Just(Some(SECRET.to_string())),
        "[ -~]{0,40}".prop_map(Some)
    ];
    let printable = || prop::option::of("[ -~]{0,60}");
    (
        secret,
        printable(),
        printable(),
        prop::option::weighted(0.1, "[ -~]{0,60}"),
    )
        .prop_map(|(secret, openid, xff, signature)| {
            let mut h = Vec::new();
            if let Some(s) = secret {
                h.push(("x-internal-secret", s));
            }
            if let Some(o) = openid {
                h.push(("x-wx-openid", o));
            }
            if let Some(x) = xff {
                h.push(("x-forwarded-for", x));
            }
            if let Some(s) = signature {
                h.push(("wechatpay-signature", s));
            }
            h
        })
}

#[test]
fn any_request_gets_an_envelope() {
    let rt = props::runtime();
    let Some(h) = rt.block_on(Harness::start(StoreKind::Sqlite)) else {
        return;
    };
    let method = prop::sample::select(vec![Method::POST, Method::POST, Method::GET, Method::PUT]);
    let path = prop_oneof![Just("/pay".to_string()), "/[ -~]{0,20}"];
    let strategy = (method, path, headers(), body());
    props::runner(REQUEST_CASES)
        .run(&strategy, |(method, path, headers, body)| {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    map.insert(HeaderName::from_static(k), v);
                }
            }
            let req = HttpRequest {
                method,
                path,
                headers: map,
                body: Bytes::from(body),
                source_ip: Some("203.0.113.9".into()),
                transport: Transport::Listener,
            };
            let resp = rt.block_on(handle_http(&h.app, req));
            props::check_any_answer(resp.status, resp.body.as_deref())
        })
        .unwrap();
}

/// The invocation events kept in `events/`, the templates the fuzzer mutates.
fn recorded_events() -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut events = Vec::new();
    for dir in std::fs::read_dir(root).expect("events/").flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            let text = std::fs::read_to_string(file.path()).expect("readable event");
            let recorded: Value = serde_json::from_str(&text).expect("JSON event");
            events.push(recorded["event"].clone());
        }
    }
    assert!(events.len() > 50, "the recorded events are there");
    events
}

/// Top-level event fields the adapter reads.
fn event_key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "body",
        "isBase64Encoded",
        "headers",
        "multiValueHeaders",
        "requestContext",
        "httpMethod",
        "path",
        "rawPath",
        "version",
        "userInfo",
        "internalSecret",
        "type",
        "source",
        "detail-type",
        "Type",
    ])
}

#[test]
fn any_lambda_event_gets_an_answer_of_its_shape() {
    let templates = recorded_events();
    let rt = props::runtime();
    let Some(h) = rt.block_on(Harness::start(StoreKind::Sqlite)) else {
        return;
    };
    let mutated = (
        0..templates.len(),
        prop::collection::vec((event_key(), props::json_value()), 0..4),
    )
        .prop_map(move |(i, changes)| {
            let mut event = templates[i].clone();
            if let Some(object) = event.as_object_mut() {
                for (k, v) in changes {
                    object.insert(k.to_string(), v);
                }
            }
            event
        });
    let strategy = prop_oneof![3 => mutated, 1 => props::json_value()];
    props::runner(LAMBDA_CASES)
        .run(&strategy, |event| {
            let answer = rt.block_on(handle_lambda_event(&h.app, event));
            match answer.get("statusCode") {
                Some(code) => {
                    let status = code.as_u64().filter(|s| (100..600).contains(s));
                    prop_assert!(status.is_some(), "statusCode {}", code);
                    let body = answer["body"].as_str();
                    props::check_any_answer(status.unwrap_or(0) as u16, body)
                }
                None => {
                    let code = answer["code"].as_i64().unwrap_or(-1);
                    let status = if code == 0 { 200 } else { (code / 100) as u16 };
                    props::check_envelope(status, &answer.to_string())
                }
            }
        })
        .unwrap();
}
