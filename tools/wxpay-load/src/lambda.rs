//! Cold starts as Lambda sees them: each binary is started the way Lambda starts
//! `bootstrap` (`AWS_LAMBDA_RUNTIME_API` pointing at the Runtime API of
//! `wxpay_local::lambda_api`, a clean environment), with its first event already waiting,
//! and timed from the exec to the moment its response is posted back — Lambda's init plus
//! the first invocation. Orders go to `wxpay_order` and the router, notifications to
//! `wxpay_callback` and the router, interleaved run by run — and, given several builds
//! (`--lambda-dirs`), build by build, so that the machine's noise weighs on all alike.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use wxpay_local::lambda_api::{
    http_v2_event, payment_notification_event, Bootstrap, Posted, RuntimeApi, SecretsExtension,
    SESSION_TOKEN,
};

use crate::cold::Spread;
use crate::report::ms;
use crate::Stack;

/// Bounded, so a binary that never answers fails the run instead of hanging it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
const OPENID: &str = "o_bench_lambda_cold";

#[derive(Clone, Copy, PartialEq)]
enum Event {
    Order,
    Notification,
}

/// One binary receiving one kind of first event, and what it measured.
struct Case {
    event: Event,
    binary: &'static str,
    /// Which of the builds, counted from 1.
    build: usize,
    bin: PathBuf,
    /// Exec → the first `GET invocation/next`: Lambda's "Init Duration".
    init: Vec<Duration>,
    /// Exec → the first response posted.
    first_response: Vec<Duration>,
}

impl Case {
    fn label(&self) -> String {
        let what = match self.event {
            Event::Order => "order",
            Event::Notification => "notification",
        };
        format!("{what} → {} ({})", self.binary, self.build)
    }
}

/// The measured cases, each binary of each build in turn. The orders come first: each
/// leaves an order for a notification of the same round.
fn cases(dirs: &[PathBuf]) -> Vec<Case> {
    let mut cases = Vec::new();
    for (event, binary) in [
        (Event::Order, "wxpay_order"),
        (Event::Order, "wxpay_functions"),
        (Event::Notification, "wxpay_callback"),
        (Event::Notification, "wxpay_functions"),
    ] {
        for (i, dir) in dirs.iter().enumerate() {
            cases.push(Case {
                event,
                binary,
                build: i + 1,
                bin: dir.join(binary),
                init: Vec::new(),
                first_response: Vec::new(),
            });
        }
    }
    cases
}

/// A mini-program's JSAPI order through API Gateway (payload 2.0), as `template.yaml` wires it.
fn order_event() -> Bytes {
    let headers = json!({ "content-type": "application/json", "x-wx-openid": OPENID,
                          "x-wx-appid": wxpay_sim::DEFAULT_APPID });
    let body = r#"{"type":"wxpay_order","packageType":"basic","tradeType":"JSAPI"}"#;
    Bytes::from(http_v2_event("POST", "/pay", headers, Some(body.into())).to_string())
}

/// One cold start: the event is queued before the exec, as when an invocation finds no warm
/// instance. Returns (init, first response) and the answer.
async fn cold_start(
    bin: &Path,
    vars: &[(String, String)],
    log: &Path,
    event: Bytes,
) -> Result<(Duration, Duration, Value), String> {
    let api = RuntimeApi::start()
        .await
        .map_err(|e| format!("the Runtime API cannot listen: {e}"))?;
    let id = api.queue(event);
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut function = Bootstrap::spawn(bin, &api, &name, vars, log).map_err(|e| {
        format!(
            "cannot start {}: {e} (build it with `cargo build --release -p {name}`)",
            bin.display()
        )
    })?;
    let posted = api.next_posted(ANSWER_TIMEOUT).await;
    let failed = |what: String, function: &mut Bootstrap| {
        let status = function.exited().unwrap_or_else(|| "still running".into());
        format!("{name}: {what} ({status}); its log:\n{}", function.logs())
    };
    let (body, at) = match posted {
        Some(Posted::Response { id: got, body, at }) if got == id => (body, at),
        Some(other) => return Err(failed(format!("posted {other:?}"), &mut function)),
        None => {
            return Err(failed(
                format!("no answer within {ANSWER_TIMEOUT:?}"),
                &mut function,
            ))
        }
    };
    let first_poll = api.first_poll_at().unwrap_or(at);
    let answer: Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{name}: the answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    Ok((
        first_poll.saturating_duration_since(function.spawned_at),
        at.saturating_duration_since(function.spawned_at),
        answer,
    ))
}

/// The order's `outTradeNo` from an API Gateway answer, or why it is not a good answer.
fn ordered(answer: &Value) -> Result<String, String> {
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap_or_default())
        .map_err(|_| format!("the order was not answered with a JSON body: {answer}"))?;
    if answer["statusCode"] != 200 || body["code"] != 0 || body["data"]["paySign"].is_null() {
        return Err(format!("the order was refused: {answer}"));
    }
    body["data"]["outTradeNo"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("the order answer has no outTradeNo: {answer}"))
}

/// Runs the phase and prints its table; errors stop it.
pub async fn phase(
    stack: &Stack,
    dirs: &[PathBuf],
    database_url: &str,
    runs: usize,
    work: &Path,
    secrets_extension: bool,
) -> Result<(), String> {
    let mut cases = cases(dirs);
    let mut vars = stack.base_vars.clone();
    // As on AWS: the secret settings come from the extension at cold start, none from the
    // environment. The extension lives for the whole phase, as a layer does.
    let _extension = if secrets_extension {
        let extension = SecretsExtension::start(SESSION_TOKEN)
            .await
            .map_err(|e| format!("the secrets extension: {e}"))?;
        let keys = wxpay_shared::secrets::SECRET_KEYS;
        let secret: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| {
                let v = vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                (k.to_string(), Value::from(v.unwrap_or_default()))
            })
            .collect();
        extension.put("wxpay/bench", &Value::Object(secret).to_string());
        vars.retain(|(k, _)| !keys.contains(&k.as_str()));
        vars.push(("WXPAY_SECRET_ID".into(), "wxpay/bench".into()));
        vars.extend(extension.vars());
        println!("  secrets: from the Parameters and Secrets extension (WXPAY_SECRET_ID)");
        Some(extension)
    } else {
        None
    };
    vars.push(("DATABASE_URL".into(), database_url.to_string()));
    vars.push((
        "WECHAT_NOTIFY_URL".into(),
        "https://wxpay.example.com/pay".into(),
    ));
    // Deployed behind an HTTP trigger, as template.yaml pins it: the only shape in which
    // Lambda believes X-WX-OPENID, which the JSAPI orders carry.
    vars.push(("LAMBDA_EVENT_SHAPE".into(), "http".into()));
    let log = work.join("lambda-cold.log");
    let mut orders: Vec<String> = Vec::new();
    let mut notified: HashSet<String> = HashSet::new();
    // One untimed start per binary: it brings the binary into the page cache, as on a
    // warm host (the schema was migrated before, as a deploy step would).
    // Each round's orders are paid and notified in the same round.
    for round in 0..=runs {
        for case in cases.iter_mut() {
            let event = match case.event {
                Event::Order => order_event(),
                Event::Notification => {
                    let no = orders.pop().ok_or("no order left to notify")?;
                    notified.insert(no.clone());
                    Bytes::from(
                        payment_notification_event(&stack.sim, &no)
                            .await?
                            .to_string(),
                    )
                }
            };
            let (init, first_response, answer) = cold_start(&case.bin, &vars, &log, event).await?;
            match case.event {
                Event::Order => orders.push(ordered(&answer)?),
                Event::Notification if answer["statusCode"] != 204 => {
                    return Err(format!("{}: not handled: {answer}", case.label()))
                }
                Event::Notification => {}
            }
            if round > 0 {
                case.init.push(init);
                case.first_response.push(first_response);
            }
        }
    }
    // The notified payments were recorded for real: each reached the backend once.
    let delivered = stack
        .backend
        .deliveries()
        .iter()
        .filter(|d| d.secret_ok)
        .filter(|d| {
            d.payload["outTradeNo"]
                .as_str()
                .is_some_and(|no| notified.contains(no))
        })
        .count();
    if delivered != notified.len() {
        return Err(format!(
            "the backend received {delivered} deliveries for {} notified payments",
            notified.len()
        ));
    }
    println!(
        "  {:<36} {:>30}   {:>30}",
        "first event → binary", "init: exec → first /next", "exec → first response posted"
    );
    for case in &cases {
        let (Some(init), Some(first)) = (
            Spread::of(case.init.clone()),
            Spread::of(case.first_response.clone()),
        ) else {
            continue;
        };
        println!(
            "  {:<36} {:>30}   {:>30}",
            case.label(),
            format!("{} ({}–{})", ms(init.median), ms(init.min), ms(init.max)),
            format!("{} ({}–{})", ms(first.median), ms(first.min), ms(first.max)),
        );
    }
    println!("  medians of {runs} runs (min–max); the builds:");
    for (i, dir) in dirs.iter().enumerate() {
        println!("  ({}) {}", i + 1, dir.display());
    }
    Ok(())
}
