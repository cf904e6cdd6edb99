//! WeChat Pay APIv3 request and response bodies, named as WeChat Pay names them.
//! Amounts are integers of fen.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Amount {
    pub total: i64,
    #[serde(default = "cny")]
    pub currency: String,
}

fn cny() -> String {
    "CNY".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct H5Info {
    #[serde(rename = "type")]
    pub h5_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SceneInfo {
    pub payer_client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h5_info: Option<H5Info>,
}

/// Body of `POST /v3/pay/transactions/{jsapi|native|h5|app}`.
#[derive(Debug, Clone, Serialize)]
pub struct PrepayRequest {
    pub appid: String,
    pub mchid: String,
    pub description: String,
    pub out_trade_no: String,
    pub notify_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    pub amount: Amount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene_info: Option<SceneInfo>,
}

/// Whatever a prepay call answers: `prepay_id` (JSAPI, APP), `code_url` (NATIVE),
/// `h5_url` (H5).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct PrepayResponse {
    pub prepay_id: Option<String>,
    pub code_url: Option<String>,
    pub h5_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TransactionAmount {
    pub total: Option<i64>,
    pub payer_total: Option<i64>,
    pub currency: Option<String>,
    pub payer_currency: Option<String>,
}

/// A transaction, as queried or as decrypted from a `TRANSACTION.*` notification.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Transaction {
    pub appid: Option<String>,
    pub mchid: Option<String>,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub trade_type: Option<String>,
    /// SUCCESS, REFUND, NOTPAY, CLOSED, REVOKED, USERPAYING, PAYERROR.
    pub trade_state: Option<String>,
    pub trade_state_desc: Option<String>,
    pub bank_type: Option<String>,
    pub attach: Option<String>,
    pub success_time: Option<String>,
    pub payer: Option<Payer>,
    pub amount: Option<TransactionAmount>,
}

/// Body of `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close`.
#[derive(Debug, Clone, Serialize)]
pub struct CloseRequest {
    pub mchid: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefundAmountRequest {
    pub refund: i64,
    pub total: i64,
    pub currency: String,
}

/// Body of `POST /v3/refund/domestic/refunds`.
#[derive(Debug, Clone, Serialize)]
pub struct RefundRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    pub out_refund_no: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    pub amount: RefundAmountRequest,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RefundAmount {
    pub total: Option<i64>,
    pub refund: Option<i64>,
    pub payer_total: Option<i64>,
    pub payer_refund: Option<i64>,
    pub currency: Option<String>,
}

/// A refund, as created or queried (`status`) or decrypted from a `REFUND.*`
/// notification (`refund_status`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RefundInfo {
    pub mchid: Option<String>,
    pub refund_id: Option<String>,
    pub out_refund_no: Option<String>,
    pub transaction_id: Option<String>,
    pub out_trade_no: Option<String>,
    pub channel: Option<String>,
    pub user_received_account: Option<String>,
    pub success_time: Option<String>,
    pub create_time: Option<String>,
    /// SUCCESS, CLOSED, PROCESSING, ABNORMAL (API answers).
    pub status: Option<String>,
    /// SUCCESS, CLOSED, ABNORMAL (notifications).
    pub refund_status: Option<String>,
    pub amount: Option<RefundAmount>,
}

impl RefundInfo {
    pub fn state(&self) -> Option<&str> {
        self.refund_status.as_deref().or(self.status.as_deref())
    }
}

/// An encrypted `resource` (notifications) or `encrypt_certificate` (certificate download).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptedResource {
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: Option<String>,
    pub nonce: String,
    #[serde(default)]
    pub original_type: Option<String>,
}

/// The body of a notification, before decryption.
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationBody {
    pub id: Option<String>,
    pub create_time: Option<String>,
    pub event_type: String,
    pub resource_type: Option<String>,
    pub summary: Option<String>,
    pub resource: EncryptedResource,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CertificateEntry {
    pub serial_no: String,
    pub effective_time: String,
    pub expire_time: String,
    pub encrypt_certificate: EncryptedResource,
}

/// `GET /v3/certificates`.
#[derive(Debug, Clone, Deserialize)]
pub struct CertificatesResponse {
    pub data: Vec<CertificateEntry>,
}

/// WeChat Pay's error body.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}
