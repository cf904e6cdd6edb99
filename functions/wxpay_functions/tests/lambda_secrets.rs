//! The built `wxpay_functions` binary takes its secrets as it does on AWS: no secret is in
//! its environment, `WXPAY_SECRET_ID` names one Secrets Manager secret, and the binary
//! reads it at cold start from the AWS Parameters and Secrets Lambda Extension on localhost
//! (here `wxpay_local::lambda_api::SecretsExtension`, which like the real one answers only
//! a request carrying the function's session token). A secret that is incomplete or not a
//! JSON object stops start-up naming the problem, never a value.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use wxpay_local::lambda_api::{
    http_v2_event as http_v2, Bootstrap, RuntimeApi, SecretsExtension, SESSION_TOKEN,
};
use wxpay_local::{LocalEnv, LocalOptions};
use wxpay_shared::secrets::SECRET_KEYS;

const BIN: &str = env!("CARGO_BIN_EXE_wxpay_functions");
const SECRET_ID: &str = "wxpay/production";
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment `template.yaml` gives a function: the settings, without any secret,
/// and the secret's name and the extension's port.
fn lambda_env(env: &LocalEnv, extension: &SecretsExtension) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = env
        .vars
        .iter()
        .filter(|(k, _)| !SECRET_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    vars.push(("WXPAY_SECRET_ID".into(), SECRET_ID.into()));
    vars.extend(extension.vars());
    vars
}

/// The secret an operator creates: every key, from the local environment's settings.
fn secret_of(env: &LocalEnv) -> Map<String, Value> {
    SECRET_KEYS
        .iter()
        .map(|key| {
            let value = env
                .vars
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                // SQLite here: no database password.
                .unwrap_or_default();
            (key.to_string(), Value::from(value))
        })
        .collect()
}

fn secret_values(secret: &Map<String, Value>) -> Vec<String> {
    secret
        .values()
        .filter_map(Value::as_str)
        .filter(|v| v.len() >= 8)
        .flat_map(|v| {
            // A PEM is also checked line by line: a log could quote any part of it.
            let mut parts: Vec<String> = v
                .lines()
                .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
                .map(String::from)
                .collect();
            parts.push(v.to_string());
            parts
        })
        .collect()
}

async fn exit_of(function: &mut Bootstrap) -> String {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(status) = function.exited() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    function.fail("the binary should have stopped at start-up")
}

fn http_body(answer: &Value) -> Value {
    let body = answer["body"].as_str().unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reads_its_secrets_once_through_the_extension() {
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let api = RuntimeApi::start().await.expect("the Runtime API listens");
    let extension = SecretsExtension::start(SESSION_TOKEN)
        .await
        .expect("the extension listens");
    let secret = secret_of(&env);
    extension.put(SECRET_ID, &Value::Object(secret.clone()).to_string());
    // The extension starts beside the runtime: its first answers may be "not ready".
    extension.not_ready_for(3);
    let mut function = Bootstrap::with_sqlite(
        Path::new(BIN),
        &api,
        "wxpay-RouterFunction",
        &lambda_env(&env, &extension),
    );
    let headers = json!({ "content-type": "application/json" });

    // Login works as deployed: WECHAT_APP_SECRET and SESSION_SECRET came from the secret.
    let code = env.sim.login_code("oSecretsFromTheStore00000001");
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "POST",
                "/pay",
                headers.clone(),
                Some(json!({"type": "wxpay_login", "code": code}).to_string()),
            ),
            INVOKE_TIMEOUT,
        )
        .await;
    let body = http_body(&answer);
    assert_eq!(
        body["code"], 0,
        "login with the secret's app secret: {answer}"
    );
    let token = body["data"]["sessionToken"]
        .as_str()
        .expect("a session token")
        .to_string();

    // The merchant key from the secret signs the prepay; the token is believed.
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "POST",
                "/pay",
                json!({ "content-type": "application/json", "authorization": format!("Bearer {token}") }),
                Some(r#"{"type":"wxpay_order","packageType":"basic","tradeType":"JSAPI"}"#.into()),
            ),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(http_body(&answer)["code"], 0, "a JSAPI order: {answer}");

    // The internal secret from the secret makes a trusted caller.
    let internal = secret["INTERNAL_API_SECRET"].as_str().unwrap_or_default();
    let mut trusted = headers.clone();
    trusted["x-internal-secret"] = internal.into();
    let answer = api
        .invoke(
            &mut function,
            http_v2(
                "POST",
                "/pay",
                trusted,
                Some(r#"{"type":"wxpay_stats"}"#.into()),
            ),
            INVOKE_TIMEOUT,
        )
        .await;
    assert_eq!(http_body(&answer)["code"], 0, "a trusted call: {answer}");

    assert_eq!(
        extension.served(),
        1,
        "read once, at cold start, and kept for the instance"
    );
    assert_eq!(
        extension.refused(),
        0,
        "every request carried the session token"
    );
    let logs = function.logs();
    for value in secret_values(&secret) {
        assert!(
            !logs.contains(&value),
            "a secret's value reached the log:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_is_incomplete_or_not_an_object_stops_start_up_naming_it() {
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let api = RuntimeApi::start().await.expect("the Runtime API listens");
    let extension = SecretsExtension::start(SESSION_TOKEN)
        .await
        .expect("the extension listens");
    let full = secret_of(&env);
    let values = secret_values(&full);

    let mut without_session = full.clone();
    without_session.remove("SESSION_SECRET");
    type Case = (String, Vec<(String, String)>, &'static str);
    let cases: [Case; 4] = [
        (
            Value::Object(without_session).to_string(),
            vec![],
            "has no key SESSION_SECRET",
        ),
        (
            json!([full["WECHAT_APIV3_KEY"]]).to_string(),
            vec![],
            "is not a JSON object of settings",
        ),
        (
            Value::Object(full.clone()).to_string(),
            // A secret in the environment as well: which one would be used is refused.
            vec![(
                "WECHAT_APIV3_KEY".into(),
                full["WECHAT_APIV3_KEY"].as_str().unwrap_or_default().into(),
            )],
            "WECHAT_APIV3_KEY is set in the environment",
        ),
        (String::new(), vec![], "ResourceNotFoundException"),
    ];
    for (n, (secret_string, extra, says)) in cases.into_iter().enumerate() {
        let id = format!("wxpay/case{n}");
        if !secret_string.is_empty() {
            extension.put(&id, &secret_string);
        }
        let mut vars = lambda_env(&env, &extension);
        vars.retain(|(k, _)| k != "WXPAY_SECRET_ID");
        vars.push(("WXPAY_SECRET_ID".into(), id.clone()));
        vars.extend(extra);
        let mut function =
            Bootstrap::with_sqlite(Path::new(BIN), &api, "wxpay-RouterFunction", &vars);
        let status = exit_of(&mut function).await;
        let logs = function.logs();
        assert!(
            status.contains("exit status: 2"),
            "{id}: exits 2, got {status}:\n{logs}"
        );
        assert!(logs.contains(says), "{id}: says `{says}`:\n{logs}");
        for value in &values {
            assert!(
                !logs.contains(value.as_str()),
                "{id}: a secret's value reached the log:\n{logs}"
            );
        }
    }
    assert_eq!(
        api.polls(),
        0,
        "no instance that failed to start asked for an event"
    );
}

#[tokio::test]
async fn the_extension_fake_answers_only_with_the_session_token() {
    let extension = SecretsExtension::start(SESSION_TOKEN)
        .await
        .expect("the extension listens");
    extension.put(SECRET_ID, r#"{"WECHAT_APIV3_KEY":"k"}"#);
    let url = format!(
        "http://{}/secretsmanager/get?secretId=wxpay%2Fproduction",
        extension.addr()
    );
    let client = reqwest::Client::new();
    let without = client.get(&url).send().await.expect("an answer");
    assert_eq!(without.status(), 401);
    let wrong = client
        .get(&url)
        .header("X-Aws-Parameters-Secrets-Token", "someone-else")
        .send()
        .await
        .expect("an answer");
    assert_eq!(wrong.status(), 401);
    let right = client
        .get(&url)
        .header("X-Aws-Parameters-Secrets-Token", SESSION_TOKEN)
        .send()
        .await
        .expect("an answer")
        .bytes()
        .await
        .expect("a body");
    let right: Value = serde_json::from_slice(&right).expect("JSON");
    assert_eq!(right["Name"], SECRET_ID);
    assert_eq!(right["SecretString"], r#"{"WECHAT_APIV3_KEY":"k"}"#);
    assert_eq!(extension.refused(), 2);
}
