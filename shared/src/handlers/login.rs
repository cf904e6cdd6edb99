//! `wxpay_login`: a `wx.login()` code becomes a session token, so a payer can be
//! identified on deployments where no gateway vouches for the openid.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Call;
use crate::error::AppError;
use crate::state::App;
use crate::util::now_utc;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginRequest {
    code: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoginAnswer {
    session_token: String,
    /// Seconds.
    expires_in: i64,
}

/// `wx.login()` codes are short printable strings; anything else is not worth a round trip.
fn valid_code(code: &str) -> bool {
    (1..=256).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_graphic())
}

pub async fn login(app: &App, call: &Call) -> Result<Value, AppError> {
    let login = &app.config.login;
    let (Some(secret), Some(tokens)) = (&login.app_secret, &app.sessions) else {
        return Err(AppError::NotConfigured(
            "login is not enabled on this deployment: set both WECHAT_APP_SECRET and SESSION_SECRET"
                .into(),
        ));
    };
    let req: LoginRequest = call.parse()?;
    if !valid_code(&req.code) {
        return Err(AppError::invalid(
            "field `code` must be the code wx.login() returned (1–256 printable characters)",
        ));
    }
    let openid = app.miniprogram.code_to_openid(secret, &req.code).await?;
    let answer = LoginAnswer {
        session_token: tokens.issue(&openid, now_utc()),
        expires_in: tokens.ttl_secs(),
    };
    tracing::info!("login: session issued");
    serde_json::to_value(answer).map_err(|e| AppError::Internal(e.to_string()))
}
