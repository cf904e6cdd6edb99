//! The mini-program login endpoint, `GET /sns/jscode2session` (auth.code2Session), as the
//! WeChat documentation describes it: the server exchanges a `wx.login()` code for the
//! user's openid and a session key. A code is valid for five minutes and only once; the
//! answer is always HTTP 200, with `errcode`/`errmsg` in the body when it fails:
//! 40013 invalid appid, 40125 invalid appsecret, 40029 invalid code, 40163 code been used,
//! 45011 minute quota reached, 40226 high-risk user blocked.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::crypto;

const CODE_LIFETIME: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct IssuedCode {
    openid: String,
    issued: Instant,
    used: bool,
    /// Answer this WeChat error instead (e.g. 40226, 45011), for tests of the error paths.
    errcode: Option<i64>,
}

/// Codes the simulated `wx.login()` has handed out.
#[derive(Debug, Default)]
pub(crate) struct Logins {
    codes: HashMap<String, IssuedCode>,
}

impl Logins {
    /// What `wx.login()` on the user's phone would return for this openid.
    pub fn issue(&mut self, openid: &str, errcode: Option<i64>) -> String {
        let code = crypto::random_alnum(32);
        self.codes.insert(
            code.clone(),
            IssuedCode {
                openid: openid.to_string(),
                issued: Instant::now(),
                used: false,
                errcode,
            },
        );
        code
    }

    /// Answers one `jscode2session` request (its query string).
    pub fn exchange(&mut self, appid: &str, app_secret: &str, query: &str) -> Value {
        let params: HashMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (decode(k), decode(v))
            })
            .collect();
        let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
        let rid = crypto::random_from(b"0123456789abcdef", 8);
        let error = |code: i64, msg: &str| json!({ "errcode": code, "errmsg": format!("{msg}, rid: {rid}") });

        if get("appid") != appid {
            return error(40013, "invalid appid");
        }
        if get("secret") != app_secret {
            return error(40125, "invalid appsecret");
        }
        if get("grant_type") != "authorization_code" {
            return error(40002, "invalid grant_type");
        }
        let Some(issued) = self.codes.get_mut(get("js_code")) else {
            return error(40029, "invalid code");
        };
        if issued.issued.elapsed() > CODE_LIFETIME {
            return error(40029, "invalid code");
        }
        if issued.used {
            return error(40163, "code been used");
        }
        issued.used = true;
        match issued.errcode {
            Some(45011) => error(
                45011,
                "api minute-quota reach limit, must slower, retry next minute",
            ),
            Some(40226) => error(40226, "high risk user, login is blocked"),
            Some(code) => error(code, "system error"),
            None => json!({
                "openid": issued.openid,
                "session_key": B64.encode(crypto::random_alnum(16)),
            }),
        }
    }
}
