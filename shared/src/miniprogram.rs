//! The WeChat mini-program server API we use: `GET /sns/jscode2session`
//! (auth.code2Session), which turns a `wx.login()` code into the user's openid.
//!
//! The URL carries the app secret, so no error built here ever includes the URL, and the
//! answer's `session_key` is never even deserialised: nothing can log or store it.

use std::time::Duration;

use serde::Deserialize;

use crate::client::{read_capped, BodyError};
use crate::config::Secret;

/// Answers larger than this are not jscode2session answers.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    /// 40029: unknown, expired (5 minutes) or foreign code.
    #[error("the login code is invalid or expired (WeChat 40029); call wx.login() again and send the new code")]
    InvalidCode,
    /// 40163: a code is good for one exchange only.
    #[error("the login code was already used (WeChat 40163); call wx.login() again and send the new code")]
    CodeUsed,
    /// 40226: WeChat's risk control blocks this user's login.
    #[error("WeChat blocked this login because it rates the user high-risk (WeChat 40226)")]
    HighRisk,
    /// 45011: too many logins this minute.
    #[error("WeChat is rate-limiting logins (WeChat 45011); retry in a minute")]
    RateLimited,
    /// 40013 / 40125: our appid or app secret is wrong — an operator's problem.
    #[error("WeChat refused this deployment's app credentials (WeChat {0}); check WECHAT_APPID and WECHAT_APP_SECRET")]
    Credentials(i64),
    #[error("WeChat login failed: {0} {1}")]
    Other(i64, String),
    #[error("WeChat login did not answer in time; retry")]
    Timeout,
    #[error("WeChat login unreachable: {0}")]
    Network(String),
    #[error("WeChat login answer not understood: {0}")]
    Decode(String),
}

/// What we read of an answer. `session_key` is deliberately absent.
#[derive(Deserialize)]
struct Code2SessionAnswer {
    openid: Option<String>,
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

pub struct MiniProgramClient {
    base_url: String,
    appid: String,
    timeout: Duration,
}

impl MiniProgramClient {
    pub fn new(base_url: &str, appid: &str, timeout: Duration) -> Self {
        MiniProgramClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            appid: appid.to_string(),
            timeout,
        }
    }

    /// The openid WeChat vouches for behind `code`.
    pub async fn code_to_openid(&self, secret: &Secret, code: &str) -> Result<String, LoginError> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/sns/jscode2session", self.base_url),
            [
                ("appid", self.appid.as_str()),
                ("secret", secret.expose()),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ],
        )
        .map_err(|_| LoginError::Network("WECHAT_API_BASE_URL is not a URL".into()))?;
        let request = crate::client::http_client()
            .get(url)
            .timeout(crate::deadline::budget(self.timeout));
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { .. } => LoginError::Decode(e.to_string()),
                BodyError::Read(e) => transport(e),
            })?;
        let answer: Code2SessionAnswer = serde_json::from_slice(&body).map_err(|_| {
            LoginError::Decode(format!("HTTP {status}, not a jscode2session answer"))
        })?;
        match (answer.errcode, answer.openid) {
            (0, Some(openid)) if crate::util::is_valid_openid(&openid) => Ok(openid),
            (0, _) => Err(LoginError::Decode("no valid openid in the answer".into())),
            (40029, _) => Err(LoginError::InvalidCode),
            (40163, _) => Err(LoginError::CodeUsed),
            (40226, _) => Err(LoginError::HighRisk),
            (45011, _) => Err(LoginError::RateLimited),
            (code @ (40013 | 40125), _) => Err(LoginError::Credentials(code)),
            (code, _) => Err(LoginError::Other(code, printable(&answer.errmsg))),
        }
    }
}

/// reqwest's errors name the URL, which carries the app secret: keep only the kind.
fn transport(e: reqwest::Error) -> LoginError {
    if e.is_timeout() {
        LoginError::Timeout
    } else {
        LoginError::Network(e.without_url().to_string())
    }
}

/// WeChat's `errmsg`, shortened and stripped of anything that could break a log line.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}
