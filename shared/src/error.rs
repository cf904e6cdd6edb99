//! The one place errors become envelopes (contract §4): HTTP status, numeric code, and a
//! message that says what to fix and never carries a secret.

use crate::client::ClientError;
use crate::miniprogram::LoginError;
use crate::session::TokenError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    UnknownType(String),
    #[error("unknown packageType `{name}`; known packages: {known}")]
    UnknownPackage { name: String, known: String },
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// WeChat Pay may hold the refund: its amount stays reserved until the same
    /// `outRefundNo`, retried, settles it.
    #[error("refund {out_refund_no} is not settled ({reason}); its amount stays reserved: retry later with the same outRefundNo {out_refund_no}")]
    RefundUnsettled {
        out_refund_no: String,
        reason: String,
    },
    #[error(transparent)]
    WechatPay(#[from] ClientError),
    /// WeChat Pay's trade bill failed its hash or is not in its documented format.
    #[error("the trade bill cannot be used: {0}")]
    BadBill(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    SessionToken(#[from] TokenError),
    /// A feature this deployment has not been configured for; the message names the settings.
    #[error("{0}")]
    NotConfigured(String),
    /// The invocation's deadline came before the work was done. Whatever was written stays
    /// consistent; the same request, retried, finishes it.
    #[error("the call did not finish before the function's deadline")]
    DeadlineExceeded,
    #[error("{0}")]
    Internal(String),
}

/// WeChat Pay codes that mean "the order or refund is in the wrong state", not "bad input".
const WECHAT_STATE_CODES: &[&str] = &[
    "ORDERPAID",
    "ORDER_PAID",
    "ORDERCLOSED",
    "ORDER_CLOSED",
    "NOT_ENOUGH",
    "TRADE_ERROR",
    "USERPAYING",
    "FREQUENCY_LIMITED",
    "ORDER_NO_USED",
    "OUT_TRADE_NO_USED",
];

impl AppError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        AppError::InvalidRequest(msg.into())
    }

    /// (HTTP status, envelope code).
    pub fn status_and_code(&self) -> (u16, i32) {
        match self {
            AppError::InvalidJson(_) => (400, 40001),
            AppError::InvalidRequest(_) => (400, 40002),
            AppError::UnknownType(_) => (400, 40003),
            AppError::UnknownPackage { .. } => (400, 40004),
            AppError::BodyTooLarge { .. } => (413, 41300),
            AppError::MethodNotAllowed(_) => (405, 40500),
            AppError::Unauthenticated(_) => (401, 40100),
            AppError::Forbidden(_) => (403, 40300),
            AppError::NotFound(_) => (404, 40400),
            AppError::Conflict(_) => (409, 40900),
            AppError::RefundUnsettled { .. } => (503, 50300),
            AppError::WechatPay(e) => match e {
                ClientError::Timeout => (504, 50400),
                // WeChat Pay's certificates could not be fetched in time: unavailable, retry.
                ClientError::Verify(crate::certs::VerifyError::CertificatesUnavailable(_)) => {
                    (503, 50320)
                }
                ClientError::Api { status, code, .. } if (400..500).contains(status) => {
                    if WECHAT_STATE_CODES.contains(&code.as_str()) {
                        (409, 40910)
                    } else if *status == 401 || *status == 403 || code == "SIGN_ERROR" {
                        // WeChat Pay refusing *our* credentials is a configuration fault the
                        // caller cannot fix.
                        (502, 50210)
                    } else if *status == 404 {
                        (404, 40410)
                    } else {
                        (400, 40010)
                    }
                }
                _ => (502, 50200),
            },
            AppError::BadBill(_) => (502, 50220),
            AppError::Login(e) => match e {
                LoginError::InvalidCode | LoginError::CodeUsed => (400, 40020),
                LoginError::HighRisk => (403, 40320),
                LoginError::Credentials(_) => (502, 50211),
                LoginError::RateLimited => (502, 50212),
                LoginError::Timeout => (504, 50400),
                LoginError::Other(..) | LoginError::Network(_) | LoginError::Decode(_) => {
                    (502, 50200)
                }
            },
            AppError::SessionToken(_) => (401, 40110),
            AppError::NotConfigured(_) => (503, 50310),
            // A deployment step was missed (`wxpay_functions migrate`): not the caller's
            // fault, and a retry succeeds once it is done.
            AppError::Store(StoreError::Schema(_)) => (503, 50020),
            AppError::Store(_) => (500, 50010),
            AppError::DeadlineExceeded => (504, 50410),
            AppError::Internal(_) => (500, 50000),
        }
    }

    /// What went wrong, as one searchable word: the `outcome` of the invocation's log line.
    pub fn kind(&self) -> &'static str {
        match self {
            AppError::InvalidJson(_) => "invalid_json",
            AppError::InvalidRequest(_) => "invalid_request",
            AppError::UnknownType(_) => "unknown_type",
            AppError::UnknownPackage { .. } => "unknown_package",
            AppError::BodyTooLarge { .. } => "body_too_large",
            AppError::MethodNotAllowed(_) => "method_not_allowed",
            AppError::Unauthenticated(_) => "unauthenticated",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::RefundUnsettled { .. } => "refund_unsettled",
            AppError::WechatPay(ClientError::Timeout) => "wechat_pay_timeout",
            AppError::WechatPay(_) => "wechat_pay",
            AppError::BadBill(_) => "bad_bill",
            AppError::Store(_) => "store",
            AppError::Login(_) => "login",
            AppError::SessionToken(_) => "session_token",
            AppError::NotConfigured(_) => "not_configured",
            AppError::DeadlineExceeded => "deadline_exceeded",
            AppError::Internal(_) => "internal",
        }
    }

    /// The envelope's `msg`.
    pub fn public_message(&self) -> String {
        match self {
            AppError::WechatPay(ClientError::Api { code, message, .. }) => {
                format!("WeChat Pay refused the request: {code}: {message}")
            }
            AppError::WechatPay(ClientError::Timeout) => {
                "WeChat Pay did not answer in time; retry the same request".into()
            }
            AppError::WechatPay(e) => format!("WeChat Pay call failed: {e}"),
            // Names the versions and the command to run; nothing about where the database is.
            AppError::Store(StoreError::Schema(m)) => {
                format!("the order database is not ready for this release; retry later ({m})")
            }
            // Database details stay in the log; the caller only needs to know to retry.
            AppError::Store(_) => "the order database is unavailable; retry later".into(),
            AppError::Internal(_) => "internal error; retry later".into(),
            AppError::DeadlineExceeded => {
                "the call did not finish before the function's deadline; retry the same request"
                    .into()
            }
            other => other.to_string(),
        }
    }
}
