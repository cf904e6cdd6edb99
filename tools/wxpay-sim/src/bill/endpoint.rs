//! `GET /v3/bill/tradebill` and `GET /v3/billdownload/file`.

use std::collections::BTreeMap;

use ring::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY};
use serde_json::json;
use time::{Date, OffsetDateTime, Time};

use crate::bill::desk::{BillDesk, DOWNLOAD_TTL};
use crate::bill::file::render;
use crate::crypto;
use crate::model::{SimOrder, SimRefund};
use crate::reply::Reply;

pub(crate) fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// When day `date`'s bill can be fetched: 10:00 Beijing time the next day.
fn ready_at(date: Date) -> Option<OffsetDateTime> {
    let next = date.next_day()?;
    Some(
        next.with_time(Time::from_hms(10, 0, 0).ok()?)
            .assume_offset(crypto::cst()),
    )
}

/// `GET /v3/bill/tradebill`.
pub(crate) fn trade_bill(
    orders: &BTreeMap<String, SimOrder>,
    refunds: &BTreeMap<String, SimRefund>,
    desk: &mut BillDesk,
    base_url: &str,
    query: &str,
) -> Reply {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let Some(date) = query_param(query, "bill_date").and_then(|d| Date::parse(d, format).ok())
    else {
        return Reply::error(400, "PARAM_ERROR", "bill_date 应为 yyyy-MM-dd 格式的日期");
    };
    match query_param(query, "bill_type").unwrap_or("ALL") {
        "ALL" => {}
        other => {
            return Reply::error(
                400,
                "PARAM_ERROR",
                format!("模拟器只提供 ALL 类型账单，不支持 {other}"),
            )
        }
    }
    if query_param(query, "tar_type").is_some() {
        return Reply::error(400, "PARAM_ERROR", "模拟器不提供压缩账单（tar_type）");
    }
    let now = crypto::now_cst();
    let ready = if desk.tamper.early {
        date <= now.date()
    } else {
        ready_at(date).is_some_and(|t| t <= now)
    };
    if !ready {
        return Reply::error(400, "STATEMENT_CREATING", "账单生成中，请稍后再试");
    }
    let file = match desk.tamper.files.get(&date) {
        Some(file) => Some(file.as_ref().clone()),
        None => render(orders, refunds, &desk.tamper, date),
    };
    let Some(file) = file else {
        return Reply::error(
            400,
            "NO_STATEMENT_EXIST",
            "账单文件不存在，请检查当前商户号在指定日期内是否有成功的交易",
        );
    };
    let mut hash = hex::encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, &file));
    if desk.tamper.wrong_hash {
        hash = hex::encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, b"not the bill"));
    }
    let token = crypto::random_alnum(64);
    desk.offer(token.clone(), file);
    Reply::json(
        200,
        &json!({
            "hash_type": "SHA1",
            "hash_value": hash,
            "download_url": format!("{base_url}/v3/billdownload/file?token={token}"),
        }),
    )
}

/// `GET /v3/billdownload/file?token=…`: the file, or a (signed) error.
pub(crate) fn download(desk: &BillDesk, query: &str) -> Result<Vec<u8>, Reply> {
    let token = query_param(query, "token").unwrap_or_default();
    match desk.downloads.get(token) {
        Some(d) if d.issued.elapsed() < DOWNLOAD_TTL => Ok(d.file.clone()),
        Some(_) => Err(Reply::error(
            400,
            "PARAM_ERROR",
            "下载地址已过期，请重新申请",
        )),
        None => Err(Reply::error(404, "RESOURCE_NOT_EXISTS", "账单文件不存在")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bills_are_ready_at_ten_beijing_time_the_next_day() {
        let d = Date::from_calendar_date(2024, time::Month::March, 31).unwrap();
        let at = ready_at(d).unwrap();
        assert_eq!(at.to_offset(time::UtcOffset::UTC).hour(), 2);
        assert_eq!(at.date().to_string(), "2024-04-01");
    }
}
