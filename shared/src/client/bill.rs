//! `GET /v3/bill/tradebill` and the signed download of the file it points to.
//!
//! The tradebill answer is signed and verified like every other; the file is not signed
//! (WeChat Pay documents it so), so its SHA1 must equal the verified `hash_value`. The file
//! is hashed as it arrives and written to a temporary file, never kept whole in memory;
//! only a file whose hash matched is handed on to be read.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use ring::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY};
use serde::Deserialize;

use super::{classify, read_capped, seg, ClientError, WechatPayClient, MAX_ANSWER_BYTES};
use crate::api::ErrorBody;
use crate::tradebill::BillError;

/// Largest bill file read: about a million rows.
pub const MAX_BILL_BYTES: usize = 256 << 20;

/// A large bill takes longer than an API answer.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// The answer of `GET /v3/bill/tradebill`, named as WeChat Pay names it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TradeBillResponse {
    pub hash_type: String,
    pub hash_value: String,
    pub download_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BillDownloadError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("download_url is not on the configured WeChat Pay host; not downloaded")]
    ForeignUrl,
    #[error("hash_type {0} is not SHA1")]
    HashType(String),
    #[error("the bill's SHA1 {got} does not match hash_value {expected}: the download is corrupt or not WeChat Pay's")]
    HashMismatch { expected: String, got: String },
    #[error("the bill is not in WeChat Pay's format: {0}")]
    Format(#[from] BillError),
    #[error("the bill is larger than {limit} bytes; not read")]
    TooLarge { limit: usize },
    #[error("the bill could not be kept in a temporary file: {0}")]
    Spool(String),
}

/// A downloaded bill whose SHA1 matched, in a temporary file removed when this is dropped.
#[derive(Debug)]
pub struct SpooledBill {
    path: PathBuf,
    /// Bytes in the file.
    pub len: u64,
}

impl SpooledBill {
    /// A new temporary file for a bill.
    fn create() -> std::io::Result<(SpooledBill, std::fs::File)> {
        let path =
            std::env::temp_dir().join(format!("wxpay-bill-{}.csv", crate::util::random_alnum(16)));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((SpooledBill { path, len: 0 }, file))
    }

    /// The file from its start, for one pass over it.
    pub fn open(&self) -> std::io::Result<std::io::BufReader<std::fs::File>> {
        std::fs::File::open(&self.path).map(std::io::BufReader::new)
    }

    /// Writes `bytes` as a bill file (tests and benchmarks).
    pub fn from_bytes(bytes: &[u8]) -> std::io::Result<SpooledBill> {
        let (mut spool, mut file) = SpooledBill::create()?;
        file.write_all(bytes)?;
        spool.len = bytes.len() as u64;
        Ok(spool)
    }
}

impl Drop for SpooledBill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl WechatPayClient {
    /// Applies for day `bill_date`'s (`yyyy-MM-dd`, Beijing time) ALL bill.
    pub async fn trade_bill(&self, bill_date: &str) -> Result<TradeBillResponse, ClientError> {
        let path = format!(
            "/v3/bill/tradebill?bill_date={}&bill_type=ALL",
            seg(bill_date)
        );
        self.call(reqwest::Method::GET, &path, None::<&()>)
            .await?
            .ok_or_else(|| ClientError::Decode("empty tradebill answer".into()))
    }

    /// Downloads the bill `answer` points to with a signed request into a temporary file
    /// and checks its SHA1, reading at most `limit` bytes.
    pub async fn download_trade_bill(
        &self,
        answer: &TradeBillResponse,
        limit: usize,
    ) -> Result<SpooledBill, BillDownloadError> {
        if !answer.hash_type.eq_ignore_ascii_case("SHA1") {
            return Err(BillDownloadError::HashType(answer.hash_type.clone()));
        }
        // The request carries the merchant's signature: it goes to WeChat Pay only.
        let path_and_query = download_path(&self.base_url, &answer.download_url)
            .ok_or(BillDownloadError::ForeignUrl)?;
        let mut resp = self
            .signed(&reqwest::Method::GET, path_and_query, "")?
            .timeout(crate::deadline::budget(DOWNLOAD_TIMEOUT))
            .send()
            .await
            .map_err(classify)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = read_capped(resp, MAX_ANSWER_BYTES)
                .await
                .unwrap_or_default();
            let err: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            return Err(ClientError::Api {
                status,
                code: err.code,
                message: err.message,
                verified: false,
            }
            .into());
        }
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(BillDownloadError::TooLarge { limit });
        }
        let spool_error = |e: std::io::Error| BillDownloadError::Spool(e.to_string());
        let (mut spool, file) = SpooledBill::create().map_err(spool_error)?;
        let mut file = std::io::BufWriter::with_capacity(64 * 1024, file);
        let mut sha1 = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
        let mut read = 0usize;
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            read += chunk.len();
            if read > limit {
                return Err(BillDownloadError::TooLarge { limit });
            }
            sha1.update(&chunk);
            file.write_all(&chunk).map_err(spool_error)?;
        }
        file.flush().map_err(spool_error)?;
        spool.len = read as u64;
        let got = hex::encode(sha1.finish());
        if !got.eq_ignore_ascii_case(answer.hash_value.trim()) {
            return Err(BillDownloadError::HashMismatch {
                expected: answer.hash_value.clone(),
                got,
            });
        }
        Ok(spool)
    }
}

/// The path and query of `download_url` when it is on `base_url`'s host (`base_url` has no
/// trailing slash); `None` for anywhere else.
fn download_path<'a>(base_url: &str, download_url: &'a str) -> Option<&'a str> {
    download_url
        .trim()
        .strip_prefix(base_url)
        .filter(|p| p.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::download_path;

    #[test]
    fn the_signed_download_only_goes_to_wechat_pay() {
        let base = "https://api.mch.weixin.qq.com";
        assert_eq!(
            download_path(
                base,
                "https://api.mch.weixin.qq.com/v3/billdownload/file?token=x"
            ),
            Some("/v3/billdownload/file?token=x")
        );
        for foreign in [
            "https://api.mch.weixin.qq.com.evil.example/v3/billdownload/file",
            "https://api.mch.weixin.qq.com@evil.example/v3/billdownload/file",
            "https://evil.example/v3/billdownload/file?u=https://api.mch.weixin.qq.com/",
            "http://api.mch.weixin.qq.com/v3/billdownload/file",
            "https://api.mch.weixin.qq.com",
            "",
        ] {
            assert_eq!(download_path(base, foreign), None, "{foreign}");
        }
    }
}
