//! Where a function's secret settings come from at start-up (contract §7, "Secrets").
//!
//! On AWS they live in one Secrets Manager secret, a JSON object whose keys are the
//! settings ([`SECRET_KEYS`]), named by `WXPAY_SECRET_ID` and read once per instance at
//! cold start through the AWS Parameters and Secrets Lambda Extension on localhost. Where
//! the platform's norm is environment variables (CloudBase, SCF, local runs) they come from
//! the environment and `WXPAY_SECRET_ID` is unset. Either way `DATABASE_PASSWORD` joins
//! `DATABASE_URL` here, so the URL in the environment carries no password.
//!
//! Nothing here prints a value: errors name keys, the secret's id and HTTP statuses only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The variable naming the secret (its name or ARN); unset, nothing is fetched.
pub const SECRET_ID_VAR: &str = "WXPAY_SECRET_ID";

/// The keys the secret must hold, each a setting of contract §7. An empty string leaves a
/// setting unset, as an empty environment variable does (`WECHAT_APP_SECRET` and
/// `SESSION_SECRET` empty: no login; `DATABASE_PASSWORD` empty: a user without one).
pub const SECRET_KEYS: &[&str] = &[
    "WECHAT_PRIVATE_KEY",
    "WECHAT_APIV3_KEY",
    "INTERNAL_API_SECRET",
    "WECHAT_APP_SECRET",
    "SESSION_SECRET",
    "DATABASE_PASSWORD",
];

/// The extension's port unless `PARAMETERS_SECRETS_EXTENSION_HTTP_PORT` says otherwise.
const DEFAULT_EXTENSION_PORT: u16 = 2773;
/// The extension starts beside the runtime and may not listen yet, or answer 400 "not
/// ready" until its own init is done: it is asked again for this long, then start-up
/// stops. Lambda's init phase has 10 s.
const READY_WITHIN: Duration = Duration::from_secs(3);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Percent-encodes all but RFC 3986's unreserved characters, so any password fits the
/// URL's userinfo (the MySQL driver decodes it).
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error("the secret {id} is not a JSON object of settings (its SecretString must be {{\"WECHAT_PRIVATE_KEY\": \"…\", …}})")]
    NotAnObject { id: String },
    #[error("the secret {id} has no key {key} (it must hold {keys}; an empty string leaves a setting unset)", keys = SECRET_KEYS.join(", "))]
    MissingKey { id: String, key: String },
    #[error("the secret {id}: {key} must be a string")]
    NotAString { id: String, key: String },
    #[error("the secret {id} holds {key}, which is not one of its settings ({keys})", keys = SECRET_KEYS.join(", "))]
    UnknownKey { id: String, key: String },
    #[error("{key} is set in the environment, and {SECRET_ID_VAR} names a secret that holds it: a secret comes from one place; remove the environment variable")]
    AlsoInEnvironment { key: String },
    #[error("{SECRET_ID_VAR}: {0}")]
    Fetch(String),
    #[error("DATABASE_PASSWORD: {0}")]
    Password(String),
}

/// The settings of this process: the environment, with the secret's keys when
/// `WXPAY_SECRET_ID` names one, and `DATABASE_PASSWORD` merged into `DATABASE_URL`.
pub fn settings_from_env() -> Result<Vec<(String, String)>, SecretError> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let secret_id = vars
        .iter()
        .find(|(k, v)| k == SECRET_ID_VAR && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string());
    let vars = match secret_id {
        Some(id) => {
            let secret_string = fetch_from_extension(&id, &vars)?;
            merge_secret(vars, &id, &secret_string)?
        }
        None => vars,
    };
    with_database_password(vars)
}

/// Adds the secret's settings to `vars`; refuses a secret that is not an object of the
/// [`SECRET_KEYS`] as strings, and a secret key also set in the environment.
pub fn merge_secret(
    mut vars: Vec<(String, String)>,
    id: &str,
    secret_string: &str,
) -> Result<Vec<(String, String)>, SecretError> {
    let not_object = || SecretError::NotAnObject { id: id.to_string() };
    let parsed: serde_json::Value =
        serde_json::from_str(secret_string).map_err(|_| not_object())?;
    let serde_json::Value::Object(map) = parsed else {
        return Err(not_object());
    };
    if let Some(key) = map.keys().find(|k| !SECRET_KEYS.contains(&k.as_str())) {
        return Err(SecretError::UnknownKey {
            id: id.to_string(),
            key: shown_key(key),
        });
    }
    let mut settings = BTreeMap::new();
    for key in SECRET_KEYS {
        match map.get(*key) {
            None => {
                return Err(SecretError::MissingKey {
                    id: id.to_string(),
                    key: key.to_string(),
                })
            }
            Some(serde_json::Value::String(v)) => {
                settings.insert(key.to_string(), v.clone());
            }
            Some(_) => {
                return Err(SecretError::NotAString {
                    id: id.to_string(),
                    key: key.to_string(),
                })
            }
        }
    }
    if let Some((key, _)) = vars
        .iter()
        .find(|(k, v)| settings.contains_key(k) && !v.trim().is_empty())
    {
        return Err(SecretError::AlsoInEnvironment { key: key.clone() });
    }
    vars.retain(|(k, _)| !settings.contains_key(k));
    vars.extend(settings);
    Ok(vars)
}

/// Replaces `DATABASE_URL`'s userinfo `user@` with `user:PASSWORD@` when
/// `DATABASE_PASSWORD` is set, and drops `DATABASE_PASSWORD`.
pub fn with_database_password(
    mut vars: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, SecretError> {
    let password = vars
        .iter()
        .find(|(k, _)| k == "DATABASE_PASSWORD")
        .map(|(_, v)| v.clone());
    vars.retain(|(k, _)| k != "DATABASE_PASSWORD");
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Ok(vars);
    };
    let Some((_, url)) = vars.iter_mut().find(|(k, _)| k == "DATABASE_URL") else {
        return Err(SecretError::Password(
            "set, but DATABASE_URL is not: the password joins mysql://USER@HOST/DB".into(),
        ));
    };
    *url = url_with_password(url.trim(), &password).map_err(SecretError::Password)?;
    Ok(vars)
}

fn url_with_password(url: &str, password: &str) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("mysql://") else {
        return Err("only a mysql:// DATABASE_URL takes a password".into());
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Err("DATABASE_URL names no user (mysql://USER@HOST:3306/DB)".into());
    };
    let user = &rest[..at];
    if user.contains(':') {
        return Err(
            "DATABASE_URL carries a password too: keep the password in one place (the secret)"
                .into(),
        );
    }
    if user.is_empty() {
        return Err("DATABASE_URL names no user (mysql://USER@HOST:3306/DB)".into());
    }
    Ok(format!(
        "mysql://{user}:{}{}",
        utf8_percent_encode(password, USERINFO),
        &rest[at..]
    ))
}

/// `GET http://localhost:PORT/secretsmanager/get?secretId=ID` with the session token, as
/// the extension requires; its answer is GetSecretValue's, whose `SecretString` is ours.
fn fetch_from_extension(id: &str, vars: &[(String, String)]) -> Result<String, SecretError> {
    let var = |name: &str| {
        vars.iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let fail = |m: String| SecretError::Fetch(m);
    let token = var("AWS_SESSION_TOKEN").ok_or_else(|| {
        fail("AWS_SESSION_TOKEN is not set: the secrets extension answers only requests that carry it (on Lambda it is always set)".into())
    })?;
    let port = match var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT") {
        None => DEFAULT_EXTENSION_PORT,
        Some(p) => p.parse().map_err(|_| {
            fail(format!(
                "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT must be a port number (got `{p}`)"
            ))
        })?,
    };
    let path = format!(
        "/secretsmanager/get?secretId={}",
        utf8_percent_encode(id, USERINFO)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let started = Instant::now();
        loop {
            let attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, get(port, &path, &token)).await;
            let retry = match attempt {
                Ok(Ok((status, body))) if status.is_success() => {
                    return secret_string(&body).ok_or_else(|| {
                        fail(format!(
                            "the extension's answer for {id} has no SecretString (a binary secret, or not GetSecretValue's answer)"
                        ))
                    });
                }
                Ok(Ok((status, body))) => {
                    // An error answer names the failure, never the secret's value; still,
                    // only its first line and at most 200 bytes are quoted.
                    let text = String::from_utf8_lossy(&body);
                    let line = text.lines().next().unwrap_or("");
                    let shown = &line[..line.floor_char_boundary(200)];
                    let message = format!(
                        "the secrets extension answered {status} for {id}: {shown} (the function's role needs secretsmanager:GetSecretValue on it)"
                    );
                    // 400 "not ready to serve traffic" while the extension initialises.
                    if status != http::StatusCode::BAD_REQUEST || !text.contains("not ready") {
                        return Err(fail(message));
                    }
                    message
                }
                Ok(Err(Get::Connect(e))) => format!(
                    "the secrets extension on localhost:{port} does not answer ({e}); is the AWS Parameters and Secrets Lambda Extension layer attached?"
                ),
                Ok(Err(Get::Http(e))) => return Err(fail(format!("asking the secrets extension: {e}"))),
                Err(_) => format!("the secrets extension on localhost:{port} did not answer within {ATTEMPT_TIMEOUT:?}"),
            };
            if started.elapsed() >= READY_WITHIN {
                return Err(fail(retry));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

enum Get {
    Connect(std::io::Error),
    Http(String),
}

/// One plain-HTTP GET to the extension on this host. A bare HTTP/1.1 connection rather
/// than the WeChat Pay client: building a TLS client (its root store) would cost the cold
/// start more than the request itself.
async fn get(port: u16, path: &str, token: &str) -> Result<(http::StatusCode, bytes::Bytes), Get> {
    use http_body_util::{BodyExt, Empty, Limited};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(Get::Connect)?;
    let http = |e: &dyn std::fmt::Display| Get::Http(e.to_string());
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| http(&e))?;
    let connection = tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, format!("localhost:{port}"))
        .header("X-Aws-Parameters-Secrets-Token", token)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| http(&e))?;
    let response = sender.send_request(request).await.map_err(|e| http(&e))?;
    let status = response.status();
    // A secret is at most 64 KiB; anything much larger is not the extension's answer.
    let body = Limited::new(response.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| http(&e))?
        .to_bytes();
    connection.abort();
    Ok((status, body))
}

fn secret_string(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct GetSecretValue {
        #[serde(rename = "SecretString")]
        secret_string: Option<String>,
    }
    serde_json::from_slice::<GetSecretValue>(body)
        .ok()?
        .secret_string
}

/// A key as an error may show it. A key that does not look like a setting's name may be a
/// value put where the key goes (the console's key/value editor makes that easy), so it is
/// not repeated.
fn shown_key(key: &str) -> String {
    let setting_like = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if setting_like {
        key.to_string()
    } else {
        "a key that is not a setting's name (not shown: it may be a value)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_put_where_a_key_goes_is_not_repeated() {
        // The APIv3 key typed into the key column, its name into the value column.
        let apiv3 = "Zq8w3JH1mK0pL7sD5fG2hJ4kL6zX9cV1";
        let mut secret = full_secret();
        secret.remove("WECHAT_APIV3_KEY");
        secret.insert(apiv3.into(), "WECHAT_APIV3_KEY".into());
        let e = merge_secret(
            vec![],
            "wxpay",
            &serde_json::Value::Object(secret).to_string(),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains(apiv3), "{e}");
        assert!(e.contains("not a setting's name"), "{e}");
        // A misspelt setting is still named, so the operator sees what to fix.
        let mut secret = full_secret();
        secret.insert("WECHAT_APIV3KEY".into(), "x".into());
        let e = merge_secret(
            vec![],
            "wxpay",
            &serde_json::Value::Object(secret).to_string(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("WECHAT_APIV3KEY"), "{e}");
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn full_secret() -> serde_json::Map<String, serde_json::Value> {
        SECRET_KEYS
            .iter()
            .map(|k| (k.to_string(), serde_json::Value::from(format!("v-{k}"))))
            .collect()
    }

    #[test]
    fn a_secret_object_becomes_settings_and_a_missing_key_is_named_without_values() {
        let merged = merge_secret(
            vars(&[("WECHAT_MCHID", "1900000001")]),
            "wxpay",
            &serde_json::Value::Object(full_secret()).to_string(),
        )
        .unwrap();
        assert!(merged.contains(&("WECHAT_APIV3_KEY".into(), "v-WECHAT_APIV3_KEY".into())));
        assert!(merged.contains(&("WECHAT_MCHID".into(), "1900000001".into())));

        let mut partial = full_secret();
        partial.remove("SESSION_SECRET");
        let e = merge_secret(
            vec![],
            "wxpay",
            &serde_json::Value::Object(partial).to_string(),
        )
        .unwrap_err();
        let message = e.to_string();
        assert!(message.contains("has no key SESSION_SECRET"), "{message}");
        assert!(!message.contains("v-"), "no value in {message}");

        for not_object in ["[1,2]", "\"v-text\"", "v-not json", ""] {
            let e = merge_secret(vec![], "wxpay", not_object).unwrap_err();
            assert_eq!(e, SecretError::NotAnObject { id: "wxpay".into() });
            assert!(!e.to_string().contains("v-"), "{e}");
        }
        let mut number = full_secret();
        number.insert("WECHAT_APIV3_KEY".into(), 12345.into());
        let e = merge_secret(
            vec![],
            "wxpay",
            &serde_json::Value::Object(number).to_string(),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("12345"), "{e}");
        let mut typo = full_secret();
        typo.insert("WECHAT_APIV3KEY".into(), "v-typo".into());
        let e = merge_secret(
            vec![],
            "wxpay",
            &serde_json::Value::Object(typo).to_string(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("WECHAT_APIV3KEY"), "{e}");
    }

    #[test]
    fn a_secret_setting_also_in_the_environment_is_refused() {
        let e = merge_secret(
            vars(&[("WECHAT_APIV3_KEY", "v-from-env")]),
            "wxpay",
            &serde_json::Value::Object(full_secret()).to_string(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            SecretError::AlsoInEnvironment {
                key: "WECHAT_APIV3_KEY".into()
            }
        );
        assert!(!e.to_string().contains("v-"), "{e}");
    }

    #[test]
    fn the_password_joins_the_url_encoded_and_only_once() {
        let merged = with_database_password(vars(&[
            (
                "DATABASE_URL",
                "mysql://app@db.example.com:3306/pay?ssl-mode=VERIFY_IDENTITY",
            ),
            ("DATABASE_PASSWORD", "p@ss:w/rd?#%é"),
        ]))
        .unwrap();
        assert_eq!(merged.len(), 1, "DATABASE_PASSWORD is consumed: {merged:?}");
        let url = &merged[0].1;
        assert_eq!(
            url,
            "mysql://app:p%40ss%3Aw%2Frd%3F%23%25%C3%A9@db.example.com:3306/pay?ssl-mode=VERIFY_IDENTITY"
        );
        // The driver reads back exactly the password that was merged (ssl-mode is the
        // store's to read, before the driver sees the URL).
        let without_query = url.split('?').next().unwrap_or_default();
        let opts = mysql_async::Opts::from_url(without_query).expect("the driver parses the URL");
        assert_eq!(opts.pass(), Some("p@ss:w/rd?#%é"));
        assert_eq!(opts.user(), Some("app"));
        assert_eq!(opts.ip_or_hostname(), "db.example.com");

        for (url, why) in [
            ("mysql://app:old@db/pay", "carries a password too"),
            ("mysql://db/pay", "names no user"),
            ("sqlite:///tmp/x.db", "only a mysql://"),
        ] {
            let e = with_database_password(vars(&[
                ("DATABASE_URL", url),
                ("DATABASE_PASSWORD", "v-secret"),
            ]))
            .unwrap_err()
            .to_string();
            assert!(e.contains(why) && !e.contains("v-secret"), "{url}: {e}");
        }
        // Empty: a user without a password, the URL unchanged.
        let kept = with_database_password(vars(&[
            ("DATABASE_URL", "mysql://root@127.0.0.1/test"),
            ("DATABASE_PASSWORD", ""),
        ]))
        .unwrap();
        assert_eq!(
            kept,
            vars(&[("DATABASE_URL", "mysql://root@127.0.0.1/test")])
        );
    }
}
