//! Replays every fixture under `events/` through `runtime::handle_lambda_event`, the same
//! adapter the function binaries run, against the WeChat Pay simulator, a fake backend and
//! an in-memory store, and checks each answer against the expectation written in the
//! fixture. Adding a fixture file adds a case; no code changes. The format and the
//! placeholders are documented in `events/README.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use wxpay_local::{LocalEnv, LocalOptions};
use wxpay_shared::config::Config;
use wxpay_shared::handlers;
use wxpay_shared::runtime::handle_lambda_event;
use wxpay_shared::state::App;
use wxpay_sim::{RefundOutcome, SignedNotification};

/// The payer the fixtures act as (`{{OPENID}}`).
const OPENID: &str = "oEvtReplayOwner000000000000001";
/// The merchant's mini-program, as the fixtures' `userInfo.appId` names it.
const APPID: &str = wxpay_sim::DEFAULT_APPID;

/// Invocation shapes, one directory each. HTTP shapes answer `{statusCode, headers, body}`;
/// raw shapes answer the envelope itself.
const SHAPES: &[(&str, bool)] = &[
    ("apigw-v2", true),
    ("apigw-rest-v1", true),
    ("cloudbase-http", true),
    ("alb", true),
    ("call-function", false),
    ("schedule", false),
];

/// The function binaries and the types each serves (`"function"` in a fixture).
fn function_types(name: &str) -> Option<&'static handlers::Routes> {
    Some(match name {
        "wxpay_functions" => handlers::ALL_TYPES,
        "wxpay_order" => handlers::ORDER_TYPES,
        "wxpay_callback" => handlers::CALLBACK_TYPES,
        "wxpay_query" => handlers::QUERY_TYPES,
        "wxpay_refund" => handlers::REFUND_TYPES,
        _ => return None,
    })
}

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

fn fixture_paths() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&events_dir(), &mut out);
    out.sort();
    out
}

/// What a fixture expects; every key is optional but at least one check must be present.
#[derive(Debug, Default)]
struct Expect {
    /// HTTP shapes: `statusCode`.
    status: Option<u16>,
    /// The body's (or raw answer's) `code`: an envelope number, or `"FAIL"` for a refused
    /// notification.
    code: Option<Value>,
    msg_contains: Option<String>,
    /// A subset of the envelope's `data`.
    data: Option<Value>,
    /// Keys that must be present and non-null in `data`.
    data_keys: Vec<String>,
    /// A subset of the whole answer body.
    body: Option<Value>,
    /// The answer has no body (notifications handled: 204).
    empty_body: bool,
}

struct Fixture {
    /// Path relative to the repository, for messages.
    name: String,
    /// The shape directory and whether it is HTTP-shaped.
    shape: &'static str,
    http: bool,
    function: String,
    /// Variables this case sets on top of the test environment (e.g. TRUST_OPENID_HEADER).
    env: Vec<(String, String)>,
    /// The event and the expectation as written, placeholders unresolved.
    event: Value,
    expect: Value,
}

/// A fixture's path as messages show it: `events/...`.
fn relative(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn load(path: &Path) -> Result<Fixture, String> {
    let name = relative(path);
    let text = std::fs::read_to_string(path).map_err(|e| format!("unreadable: {e}"))?;
    let Value::Object(mut doc) =
        serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?
    else {
        return Err("must be a JSON object {description, event, expect}".into());
    };
    let rel = path.strip_prefix(events_dir()).map_err(|e| e.to_string())?;
    let dir = rel
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default()
        .to_string();
    let &(shape, http) = SHAPES.iter().find(|(s, _)| *s == dir).ok_or_else(|| {
        format!(
            "lives in `{dir}`, not in a shape directory ({:?})",
            SHAPES.iter().map(|s| s.0).collect::<Vec<_>>()
        )
    })?;
    for key in doc.keys() {
        if !["description", "function", "env", "event", "expect"].contains(&key.as_str()) {
            return Err(format!(
                "unknown top-level key `{key}` (allowed: description, function, env, event, expect)"
            ));
        }
    }
    match doc.get("description") {
        Some(Value::String(d)) if !d.trim().is_empty() => {}
        _ => return Err("needs a `description` saying what the case shows".into()),
    }
    let function = match doc.remove("function") {
        None => "wxpay_functions".to_string(),
        Some(Value::String(f)) if function_types(&f).is_some() => f,
        Some(other) => return Err(format!("unknown `function` {other}")),
    };
    let env = match doc.remove("env") {
        None => Vec::new(),
        Some(Value::Object(vars)) => vars
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(v) => Ok((k, v)),
                other => Err(format!("`env.{k}` must be a string, got {other}")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`env` must be an object of strings, got {other}")),
    };
    let event = doc.remove("event").ok_or("missing `event`")?;
    if !event.is_object() {
        return Err("`event` must be an object".into());
    }
    let expect = doc.remove("expect").ok_or("missing `expect`")?;
    let parsed = parse_expect(&expect)?;
    if http && parsed.status.is_none() {
        return Err("HTTP-shaped fixtures must expect a `status`".into());
    }
    if !http && (parsed.status.is_some() || parsed.empty_body) {
        return Err("raw events answer the envelope only: no `status`/`emptyBody`".into());
    }
    if !http && parsed.code.is_none() {
        return Err("raw-event fixtures must expect a `code`".into());
    }
    Ok(Fixture {
        name,
        shape,
        http,
        function,
        env,
        event,
        expect,
    })
}

fn parse_expect(v: &Value) -> Result<Expect, String> {
    let Value::Object(map) = v else {
        return Err("`expect` must be an object".into());
    };
    let mut e = Expect::default();
    for (k, v) in map {
        match k.as_str() {
            "status" => {
                e.status = Some(
                    v.as_u64()
                        .and_then(|s| u16::try_from(s).ok())
                        .ok_or("`status` must be an HTTP status")?,
                )
            }
            "code" => {
                if !(v.is_i64() || v.is_string()) {
                    return Err("`code` must be a number or a string".into());
                }
                e.code = Some(v.clone());
            }
            "msgContains" => e.msg_contains = Some(v.as_str().ok_or("`msgContains` must be a string")?.into()),
            "data" => e.data = Some(v.clone()),
            "dataKeys" => {
                e.data_keys = v
                    .as_array()
                    .and_then(|a| a.iter().map(|k| k.as_str().map(String::from)).collect())
                    .ok_or("`dataKeys` must be an array of strings")?
            }
            "body" => e.body = Some(v.clone()),
            "emptyBody" => e.empty_body = v.as_bool().ok_or("`emptyBody` must be a boolean")?,
            other => {
                return Err(format!(
                    "unknown expectation `{other}` (allowed: status, code, msgContains, data, dataKeys, body, emptyBody)"
                ))
            }
        }
    }
    if e.status.is_none() && e.code.is_none() && e.body.is_none() {
        return Err("`expect` must check at least `status`, `code` or `body`".into());
    }
    if e.empty_body
        && (e.code.is_some() || e.body.is_some() || e.data.is_some() || !e.data_keys.is_empty())
    {
        return Err("`emptyBody` cannot be combined with body checks".into());
    }
    Ok(e)
}

/// `{{NAME}}` placeholders in a JSON value's strings.
fn placeholders(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                let Some(len) = rest[start + 2..].find("}}") else {
                    break;
                };
                out.insert(rest[start + 2..start + 2 + len].to_string());
                rest = &rest[start + 2 + len + 2..];
            }
        }
        Value::Array(a) => a.iter().for_each(|v| placeholders(v, out)),
        Value::Object(m) => m.values().for_each(|v| placeholders(v, out)),
        _ => {}
    }
}

fn substitute(v: &Value, values: &BTreeMap<String, String>) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            for (k, val) in values {
                s = s.replace(&format!("{{{{{k}}}}}"), val);
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| substitute(v, values)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), substitute(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The running environment and one App per function binary, all on the same store.
struct World {
    env: LocalEnv,
    vars: Vec<(String, String)>,
    apps: BTreeMap<String, Arc<App>>,
    secret: String,
    secrets: Vec<String>,
}

impl World {
    async fn start() -> World {
        let mut opts = LocalOptions::for_tests();
        // Refund notifications built for fixtures must be the first WeChat Pay sends, so
        // the simulator's own delivery (made when a refund completes) goes nowhere.
        opts.extra_vars.push((
            "WECHAT_REFUND_NOTIFY_URL".into(),
            "http://127.0.0.1:9/refund-notify-dropped".into(),
        ));
        let env = LocalEnv::start(opts)
            .await
            .expect("local environment starts");
        let var = |name: &str| {
            env.vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{name} in the local environment"))
        };
        let secret = var("INTERNAL_API_SECRET");
        let secrets = vec![secret.clone(), var("WECHAT_APIV3_KEY")];
        let mut apps = BTreeMap::new();
        apps.insert("wxpay_functions".to_string(), env.app.clone());
        for name in [
            "wxpay_order",
            "wxpay_callback",
            "wxpay_query",
            "wxpay_refund",
        ] {
            let config = Config::from_vars(env.vars.clone()).expect("config");
            let types = function_types(name).expect("known function");
            apps.insert(
                name.to_string(),
                Arc::new(App::with_store(config, env.store.clone(), types)),
            );
        }
        World {
            vars: env.vars.clone(),
            env,
            apps,
            secret,
            secrets,
        }
    }

    async fn raw(&self, event: Value) -> Value {
        let answer = wxpay_shared::runtime::handle_raw_event(&self.env.app, event.clone()).await;
        assert_eq!(answer["code"], 0, "setting up with {event}: {answer}");
        answer["data"].clone()
    }

    async fn pending_order(&self) -> String {
        let data = self
            .raw(json!({ "type": "wxpay_order", "packageType": "basic",
                         "userInfo": { "appId": APPID, "openId": OPENID } }))
            .await;
        data["outTradeNo"].as_str().expect("outTradeNo").to_string()
    }

    /// A paid order and its transaction id.
    async fn paid_order(&self) -> (String, String) {
        let no = self.pending_order().await;
        let outcome = self.env.sim.pay(&no).await.expect("simulator pays");
        assert_eq!(
            outcome.status, 204,
            "payment notification handled: {}",
            outcome.body
        );
        let order = self
            .env
            .store
            .get_order(&no)
            .await
            .expect("store")
            .expect("order");
        (
            no,
            order
                .transaction_id
                .expect("paid order has a transaction id"),
        )
    }

    async fn refund(&self, out_trade_no: &str) -> String {
        let data = self
            .raw(json!({ "type": "wxpay_refund", "outTradeNo": out_trade_no, "amount": 1, "internalSecret": self.secret }))
            .await;
        data["outRefundNo"]
            .as_str()
            .expect("outRefundNo")
            .to_string()
    }

    fn notification_values(
        prefix: &str,
        n: &SignedNotification,
        values: &mut BTreeMap<String, String>,
    ) {
        let header = |h: &str| {
            n.header(h)
                .unwrap_or_else(|| panic!("notification has {h}"))
                .to_string()
        };
        values.insert(format!("{prefix}_BODY"), n.body.clone());
        values.insert(
            format!("{prefix}_BODY_BASE64"),
            B64.encode(n.body.as_bytes()),
        );
        values.insert(format!("{prefix}_SIGNATURE"), header("Wechatpay-Signature"));
        values.insert(format!("{prefix}_TIMESTAMP"), header("Wechatpay-Timestamp"));
        values.insert(format!("{prefix}_NONCE"), header("Wechatpay-Nonce"));
        values.insert(format!("{prefix}_SERIAL"), header("Wechatpay-Serial"));
    }

    /// Resolves the placeholders a fixture uses, creating fresh orders, refunds and signed
    /// notifications for it, so that fixtures never depend on each other or on their order.
    async fn resolve(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, String>, String> {
        let mut values = BTreeMap::new();
        values.insert("SECRET".to_string(), self.secret.clone());
        values.insert("OPENID".to_string(), OPENID.to_string());
        let uses = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
        if uses("OUT_TRADE_NO") {
            values.insert("OUT_TRADE_NO".into(), self.pending_order().await);
        }
        if uses("PAID_OUT_TRADE_NO") || uses("TRANSACTION_ID") {
            let (no, tx) = self.paid_order().await;
            values.insert("PAID_OUT_TRADE_NO".into(), no);
            values.insert("TRANSACTION_ID".into(), tx);
        }
        if uses("OUT_REFUND_NO") {
            let (no, _) = self.paid_order().await;
            values.insert("OUT_REFUND_NO".into(), self.refund(&no).await);
        }
        if uses("NOTIFY_") {
            // Paid at WeChat Pay, not yet notified: the fixture delivers the first notice.
            let no = self.pending_order().await;
            self.env
                .sim
                .mark_paid_silently(&no)
                .await
                .map_err(|e| e.to_string())?;
            let n = self
                .env
                .sim
                .build_transaction_notification(&no)
                .ok_or("no notification for a paid order")?;
            Self::notification_values("NOTIFY", &n, &mut values);
        }
        if uses("REFUND_NOTIFY_") {
            let (no, _) = self.paid_order().await;
            let refund_no = self.refund(&no).await;
            // The simulator's own delivery fails by design (see `start`); the refund is
            // completed at WeChat Pay all the same.
            let _ = self
                .env
                .sim
                .complete_refund(&refund_no, RefundOutcome::Success)
                .await;
            let n = self
                .env
                .sim
                .build_refund_notification(&refund_no)
                .ok_or("no notification for a completed refund")?;
            Self::notification_values("REFUND_NOTIFY", &n, &mut values);
        }
        if let Some(unknown) = names.iter().find(|n| !values.contains_key(*n)) {
            return Err(format!(
                "unknown placeholder {{{{{unknown}}}}} (see events/README.md)"
            ));
        }
        Ok(values)
    }

    async fn replay(&self, f: &Fixture) -> Result<(), String> {
        let mut names = BTreeSet::new();
        placeholders(&f.event, &mut names);
        placeholders(&f.expect, &mut names);
        let values = self.resolve(&names).await?;
        let event = substitute(&f.event, &values);
        let expect = parse_expect(&substitute(&f.expect, &values))?;
        let app = if f.env.is_empty() {
            self.apps[&f.function].clone()
        } else {
            let mut vars = self.vars.clone();
            for (k, v) in &f.env {
                vars.retain(|(name, _)| name != k);
                vars.push((k.clone(), v.clone()));
            }
            let config = Config::from_vars(vars).map_err(|e| format!("`env`: {e}"))?;
            let types = function_types(&f.function).ok_or("unknown function")?;
            Arc::new(App::with_store(config, self.env.store.clone(), types))
        };
        let answer = handle_lambda_event(&app, event).await;
        let text = answer.to_string();
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                return Err(format!("the answer leaks a secret: {text}"));
            }
        }
        check(f, &expect, &answer).map_err(|e| format!("{e}\n    answer: {text}"))
    }
}

/// Whether `want` is contained in `got`: objects by key (recursively), the rest by equality.
fn subset(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| subset(wv, gv))),
        _ => want == got,
    }
}

fn check(f: &Fixture, e: &Expect, answer: &Value) -> Result<(), String> {
    let body: Option<Value> = if f.http {
        let status = answer["statusCode"]
            .as_u64()
            .ok_or("an HTTP event must be answered with a statusCode")?;
        if Some(status as u16) != e.status {
            return Err(format!(
                "status {status}, expected {}",
                e.status.unwrap_or_default()
            ));
        }
        if f.shape == "alb" {
            let desc = answer["statusDescription"].as_str().unwrap_or_default();
            if !desc.starts_with(&status.to_string()) {
                return Err(format!(
                    "ALB answers need a statusDescription like \"{status} OK\", got {desc:?}"
                ));
            }
        }
        match answer.get("body") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => {
                let ct = answer["headers"]["content-type"]
                    .as_str()
                    .unwrap_or_default();
                if !ct.starts_with("application/json") {
                    return Err(format!(
                        "a JSON body needs content-type application/json, got {ct:?}"
                    ));
                }
                Some(serde_json::from_str(s).map_err(|err| format!("body is not JSON ({err})"))?)
            }
            Some(other) => return Err(format!("body must be a string, got {other}")),
        }
    } else {
        // What callFunction hands the mini-program as `result`: the bare envelope.
        if answer.get("statusCode").is_some() {
            return Err(
                "a raw event must be answered with the envelope, not an HTTP response".into(),
            );
        }
        Some(answer.clone())
    };
    if e.empty_body {
        return match body {
            None => Ok(()),
            Some(b) => Err(format!("expected no body, got {b}")),
        };
    }
    let needs_body = e.code.is_some()
        || e.body.is_some()
        || e.data.is_some()
        || !e.data_keys.is_empty()
        || e.msg_contains.is_some();
    let body = match body {
        Some(b) => b,
        None if needs_body => return Err("expected a body, got none".into()),
        None => return Ok(()),
    };
    if let Some(code) = &e.code {
        if &body["code"] != code {
            return Err(format!("code {}, expected {code}", body["code"]));
        }
    }
    if body["code"] == 0 && (body["msg"] != "ok" || body.get("data").is_none()) {
        return Err("a success envelope is {code:0, msg:\"ok\", data}".into());
    }
    if let Some(part) = &e.msg_contains {
        let msg = body["msg"]
            .as_str()
            .or(body["message"].as_str())
            .unwrap_or_default();
        if !msg.contains(part.as_str()) {
            return Err(format!("message {msg:?} does not mention {part:?}"));
        }
    }
    if let Some(want) = &e.body {
        if !subset(want, &body) {
            return Err(format!("body does not contain {want}"));
        }
    }
    if let Some(want) = &e.data {
        if !subset(want, &body["data"]) {
            return Err(format!("data does not contain {want}"));
        }
    }
    for key in &e.data_keys {
        if body["data"].get(key).is_none_or(Value::is_null) {
            return Err(format!("data has no `{key}`"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_replays_as_expected() {
    let paths = fixture_paths();
    assert!(
        !paths.is_empty(),
        "no fixtures under {}",
        events_dir().display()
    );
    let world = World::start().await;
    let mut failures = Vec::new();
    for path in &paths {
        let result = match load(path) {
            Ok(f) => world.replay(&f).await.map_err(|e| (f.name, e)),
            Err(e) => Err((relative(path), e)),
        };
        if let Err((name, e)) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n  {}",
        failures.len(),
        paths.len(),
        failures.join("\n  ")
    );
    eprintln!("replayed {} fixtures", paths.len());
}

/// Every invocation shape has fixtures, and every type is exercised somewhere, so a
/// deleted directory or a forgotten type does not go unnoticed.
#[test]
fn fixtures_cover_every_shape_and_type() {
    let mut shapes: BTreeMap<&str, usize> = SHAPES.iter().map(|(s, _)| (*s, 0)).collect();
    let mut text = String::new();
    let mut problems = Vec::new();
    for path in fixture_paths() {
        match load(&path) {
            Ok(f) => {
                *shapes.entry(f.shape).or_default() += 1;
                text.push_str(&f.event.to_string());
                // Base64 bodies hide their type; decode them for the type census.
                if f.event["isBase64Encoded"] == true {
                    if let Some(b) = f.event["body"].as_str().and_then(|b| B64.decode(b).ok()) {
                        text.push_str(&String::from_utf8_lossy(&b));
                    }
                }
                // Notifications carry no type; their placeholders say which callback runs.
                let event = f.event.to_string();
                if event.contains("{{NOTIFY_") {
                    text.push_str(&format!("\"{}\"", handlers::ORDER_CALLBACK));
                }
                if event.contains("{{REFUND_NOTIFY_") {
                    text.push_str(&format!("\"{}\"", handlers::REFUND_CALLBACK));
                }
            }
            Err(e) => problems.push(format!("{}: {e}", relative(&path))),
        }
    }
    for (shape, n) in &shapes {
        if *n == 0 {
            problems.push(format!("no fixture for the {shape} shape"));
        }
    }
    for ty in handlers::ALL_TYPES.types() {
        // Quoted, so that `wxpay_refund` is not found inside `wxpay_refund_query`; bodies
        // of HTTP events are JSON inside a JSON string, hence the escaped form too.
        let quoted = format!("\"{ty}\"");
        let escaped = format!("\\\"{ty}\\\"");
        if !(text.contains(&quoted) || text.contains(&escaped)) {
            problems.push(format!("no fixture exercises {ty}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
