//! The daily trade bill (交易账单), written from WeChat Pay's documentation:
//!
//! - `GET /v3/bill/tradebill?bill_date=yyyy-MM-dd&bill_type=ALL` answers (signed, like every
//!   API answer) `download_url`, `hash_type: SHA1` and `hash_value`, the SHA1 of the file.
//! - The merchant GETs `download_url` with a signed request; the file comes back **unsigned**
//!   ("该接口响应的信息请求头中不包含微信接口响应的签名值"), so its hash is what proves it.
//! - The file: a header line, one line per payment or refund (every field prefixed with a
//!   backtick so Excel keeps long numbers), then a summary header and one summary line.
//!   Amounts are yuan. Payments are billed on the day they succeeded, refunds on the day
//!   they were accepted, with the status they had when the bill was generated.
//! - WeChat Pay starts generating day D's bill at 09:00 the next day and advises fetching it
//!   after 10:00 Beijing time. Before that (and for today or later) the simulator answers
//!   `400 STATEMENT_CREATING`; a day with no transaction answers `400 NO_STATEMENT_EXIST`.

//!
//! Everything about the bill is here: the file ([`file`]), how tests make it disagree with
//! the truth (`desk`), the two API endpoints (`endpoint`) and the control API routes
//! (`control`). It reads orders and refunds and knows neither the server nor the
//! [`Simulator`](crate::Simulator), which forwards to it.

pub(crate) mod control;
pub(crate) mod desk;
pub(crate) mod endpoint;
pub(crate) mod file;

pub use crate::money::yuan;
pub(crate) use desk::BillDesk;
pub use file::{ALL_HEADER, SUMMARY_HEADER};
