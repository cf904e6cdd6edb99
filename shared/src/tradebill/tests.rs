use super::*;

// The layout follows WeChat Pay's "交易账单详细说明" (ALL bill: the detail and summary
// headers, a backtick before every field, fees rounded to the fen and printed with five
// decimals, a refund's fee negative), https://pay.weixin.qq.com/docs/merchant/products/bill-download/format-trade.html,
// and the sample rows of "下载对账单" (https://developers.weixin.qq.com/minigame/dev/wxcloudrun/src/development/pay/order/bill.html).
// A REFUND row prints 0.00 in 应结订单金额 and 订单金额, as WeChat Pay's bills do.
const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

fn payment(no: &str, yuan: &str, fee: &str) -> String {
    payment_with(no, yuan, fee, "")
}

fn payment_with(no: &str, yuan: &str, fee: &str, attach: &str) -> String {
    format!("`2024-05-01 10:00:00,`wx8888888888888888,`1900000001,`0,`,`4200000001{no},`{no},`openid,`JSAPI,`SUCCESS,`OTHERS,`CNY,`{yuan},`0.00,`0,`0,`0.00,`0.00,`,`,`商品,`{attach},`{fee},`0.60%,`{yuan},`0.00,`")
}

/// `settled` (退款金额) and `applied` (申请退款金额) differ when a coupon paid part.
fn refund(no: &str, refund_no: &str, settled: &str, applied: &str, fee: &str) -> String {
    format!("`2024-05-01 11:00:00,`wx8888888888888888,`1900000001,`0,`,`4200000001{no},`{no},`openid,`JSAPI,`REFUND,`ICBC_DEBIT,`CNY,`0.00,`0.00,`5030000{refund_no},`{refund_no},`{settled},`0.00,`ORIGINAL,`SUCCESS,`商品,`,`{fee},`0.60%,`0.00,`{applied},`")
}

fn bill(rows: &[String], summary: &str) -> String {
    let mut s = format!("{HEADER}\r\n");
    for r in rows {
        s.push_str(r);
        s.push_str("\r\n");
    }
    s.push_str(SUMMARY_HEADER);
    s.push_str("\r\n");
    s.push_str(summary);
    s.push_str("\r\n");
    s
}

fn good_bill() -> String {
    bill(
        &[
            payment("A1", "29.90", "0.18000"),
            payment("A2", "0.01", "0.00000"),
            refund("A1", "R1", "9.90", "9.90", "-0.06000"),
        ],
        "`3,`29.91,`9.90,`0.00,`0.12000,`29.91,`9.90",
    )
}

fn parse(text: &str) -> Result<TradeBill, BillError> {
    TradeBill::parse(text.as_bytes())
}

fn parse_chunks(chunks: &[&[u8]]) -> Result<TradeBill, BillError> {
    let mut p = BillParser::new();
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for c in chunks {
        p.feed(c)?;
        for l in p.take_lines() {
            match l {
                BillLine::Row(r) => rows.push(r),
                BillLine::Unreadable { line, reason } => unreadable.push((line, reason)),
            }
        }
    }
    Ok(TradeBill {
        rows,
        unreadable,
        summary: p.finish()?,
    })
}

#[test]
fn yuan_becomes_fen_exactly() {
    for (text, fen) in [
        ("0", Some(0)),
        ("0.00", Some(0)),
        ("0.0", Some(0)),
        ("29.9", Some(2990)),
        ("29.90", Some(2990)),
        ("0.07", Some(7)),
        ("-0.06", Some(-6)),
        ("1.005", None),
        ("1.", Some(100)),
        (".5", None),
        ("", None),
        ("-", None),
        ("1e3", None),
        ("+1", None),
        ("12345678901", None),
        ("１", None),
    ] {
        assert_eq!(yuan_to_fen_signed(text), fen, "{text:?}");
    }
}

#[test]
fn a_bill_reads_by_column_name_without_backticks() {
    let b = parse(&good_bill()).unwrap();
    assert_eq!(b.rows.len(), 3);
    let a1 = &b.rows[0];
    assert_eq!(a1.kind, RowKind::Payment);
    assert_eq!(a1.out_trade_no, "A1");
    assert_eq!(a1.transaction_id, "4200000001A1");
    assert_eq!((a1.total, a1.settlement_total, a1.fee), (2990, 2990, 18));
    assert_eq!(a1.appid, "wx8888888888888888");
    assert_eq!(a1.out_refund_no, None, "`0 means no refund number");
    assert_eq!(a1.line, 2);
    let r = &b.rows[2];
    assert_eq!(r.kind, RowKind::Refund);
    assert_eq!(r.out_refund_no.as_deref(), Some("R1"));
    assert_eq!(
        (r.total, r.settlement_total),
        (0, 0),
        "a REFUND row's order amounts"
    );
    assert_eq!((r.refund, r.refund_applied, r.fee), (990, 990, -6));
    assert_eq!(r.refund_status.as_deref(), Some("SUCCESS"));
    assert_eq!(
        b.summary,
        BillSummary {
            rows: 3,
            settlement_total: 2991,
            refund_total: 990,
            fee_total: 12,
            order_total: 2991,
        }
    );
    assert!(b.unreadable.is_empty());
}

#[test]
fn column_order_does_not_matter() {
    // Swap 商户订单号 and 微信订单号 in the header and in every row.
    let swap = |line: &str| {
        let mut f: Vec<&str> = line.split(',').collect();
        f.swap(5, 6);
        f.join(",")
    };
    let text: String = good_bill()
        .split("\r\n")
        .enumerate()
        .map(|(i, l)| {
            if (0..4).contains(&i) {
                swap(l)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    let b = parse(&text).unwrap();
    assert_eq!(b.rows[0].out_trade_no, "A1");
    assert_eq!(b.rows[0].transaction_id, "4200000001A1");
}

#[test]
fn any_chunking_gives_the_same_bill() {
    let text = format!("\u{feff}{}", good_bill());
    let whole = parse(&text).unwrap();
    let bytes = text.as_bytes();
    // Every split point, including inside multi-byte characters and between \r and \n.
    for cut in 0..bytes.len() {
        let split = parse_chunks(&[&bytes[..cut], &bytes[cut..]]).unwrap();
        assert_eq!(split, whole, "split at {cut}");
    }
    let bytes: Vec<&[u8]> = bytes.iter().map(std::slice::from_ref).collect();
    assert_eq!(parse_chunks(&bytes).unwrap(), whole, "one byte at a time");
}

#[test]
fn malformed_bills_are_refused_with_the_reason() {
    let good = good_bill();
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "ends before its summary"),
        (
            "header only",
            format!("{HEADER}\r\n"),
            "ends before its summary",
        ),
        (
            "no summary line",
            good.rsplit_once("`3,").unwrap().0.to_string(),
            "ends before its summary",
        ),
        (
            "missing column",
            good.replacen("商户订单号", "订单号", 1),
            "no `商户订单号` column",
        ),
        (
            "summary count off",
            good.replacen("`3,`29.91", "`4,`29.91", 1),
            "总交易单数 is 4, the rows add up to 3",
        ),
        (
            "summary amount off",
            good.replacen("`3,`29.91", "`3,`29.92", 1),
            "应结订单总金额 is 2992, the rows add up to 2991",
        ),
        (
            "refund total off",
            good.replacen("`29.91,`9.90", "`29.91,`9.80", 1),
            "退款总金额 is 980",
        ),
        (
            "a row dropped, summary kept",
            good.replacen(&format!("{}\r\n", payment("A2", "0.01", "0.00000")), "", 1),
            "总交易单数 is 3, the rows add up to 2",
        ),
        (
            "text after the summary",
            format!("{good}`1,`2\r\n"),
            "text after the summary line",
        ),
    ];
    for (name, text, expected) in cases {
        match parse(&text) {
            Ok(b) => panic!("{name}: accepted {} rows", b.rows.len()),
            Err(e) => assert!(e.to_string().contains(expected), "{name}: {e}"),
        }
    }
    let mut p = BillParser::new();
    assert!(
        p.feed(&vec![b'`'; MAX_LINE_BYTES + 1]).is_err(),
        "an endless line"
    );
}

#[test]
fn a_coupon_refund_and_five_decimal_fees_read_as_printed() {
    // 退款金额 (what settled) is less than 申请退款金额 (what was asked): a coupon paid 1.00.
    let text = bill(
        &[
            payment("C1", "260.00", "1.56000"),
            refund("C1", "RC1", "259.00", "260.00", "-1.56000"),
        ],
        "`2,`260.00,`259.00,`0.00,`0.00000,`260.00,`260.00",
    );
    let b = parse(&text).unwrap();
    let r = &b.rows[1];
    assert_eq!((r.refund, r.refund_applied, r.fee), (25900, 26000, -156));
    assert_eq!(b.summary.fee_total, 0, "the summary nets a refund's fee");
    // The summary's 申请退款总金额 is checked against the rows too.
    let off = text.replacen("`0.00000,`260.00,`260.00", "`0.00000,`260.00,`259.00", 1);
    assert!(parse(&off)
        .unwrap_err()
        .to_string()
        .contains("申请退款总金额 is 25900"));
}

#[test]
fn json_with_commas_in_the_attach_stays_in_its_field() {
    let attach = r#"{"plan":"gold","seats":[1,2,3]}"#;
    let text = bill(
        &[payment_with("J1", "29.90", "0.18000", attach)],
        "`1,`29.90,`0.00,`0.00,`0.18000,`29.90,`0.00",
    );
    let b = parse(&text).unwrap();
    assert_eq!(b.rows[0].out_trade_no, "J1");
    assert_eq!((b.rows[0].total, b.rows[0].fee), (2990, 18));
}

#[test]
fn a_row_that_cannot_be_read_is_named_by_its_line_and_the_rest_is_read() {
    // A backtick after a comma inside 商户数据包 splits it where WeChat Pay splits fields.
    let text = bill(
        &[
            payment("B1", "29.90", "0.18000"),
            payment_with("B2", "1.00", "0.01000", "a,`b"),
            payment("B3", "0.01", "0.00000"),
        ],
        "`3,`30.91,`0.00,`0.00,`0.19000,`30.91,`0.00",
    );
    let b = parse(&text).unwrap();
    let read: Vec<&str> = b.rows.iter().map(|r| r.out_trade_no.as_str()).collect();
    assert_eq!(read, ["B1", "B3"]);
    assert_eq!(b.unreadable.len(), 1);
    assert_eq!(b.unreadable[0].0, 3, "the header is line 1");
    assert!(
        b.unreadable[0].1.contains("28 fields"),
        "{:?}",
        b.unreadable
    );
    // The summary's count still has to agree; its amounts cannot be checked.
    let off = text.replacen("`3,`30.91", "`4,`30.91", 1);
    assert!(parse(&off).is_err());

    for (name, bad) in [
        ("an amount past the fen", "`29.901,`0.00"),
        ("not UTF-8", "\u{fffd}"),
    ] {
        let mut bytes = good_bill().replacen("`29.90,`0.00", bad, 1).into_bytes();
        if name == "not UTF-8" {
            let at = bytes
                .windows(3)
                .position(|w| w == "\u{fffd}".as_bytes())
                .unwrap();
            bytes[at] = 0xff;
        }
        let b = TradeBill::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(b.rows.len(), 2, "{name}");
        assert_eq!(b.unreadable[0].0, 2, "{name}");
    }
}

/// A tiny deterministic generator: the same cases on every run, no extra dependency.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn generated_bills_round_trip_and_corruptions_never_panic() {
    let mut rng = Lcg(14);
    for case in 0..200 {
        let n = (rng.next() % 20) as usize;
        let mut rows = Vec::new();
        let (mut total, mut fees) = (0i64, 0i64);
        for i in 0..n {
            let fen = (rng.next() % 1_000_000) as i64 + 1;
            let fee = fen * 6 / 1000;
            total += fen;
            fees += fee;
            rows.push(payment(
                &format!("G{case}_{i}"),
                &format!("{}.{:02}", fen / 100, fen % 100),
                &format!("{}.{:02}", fee / 100, fee % 100),
            ));
        }
        let y = |f: i64| format!("{}.{:02}", f / 100, f % 100);
        let text = bill(
            &rows,
            &format!(
                "`{n},`{},`0.00,`0.00,`{},`{},`0.00",
                y(total),
                y(fees),
                y(total)
            ),
        );
        let b = parse(&text).unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
        assert_eq!(b.rows.len(), n);
        assert_eq!(b.rows.iter().map(|r| r.total).sum::<i64>(), total);

        // Flip one byte anywhere: an error or a bill, never a panic.
        let mut bytes = text.into_bytes();
        let at = (rng.next() as usize) % bytes.len();
        bytes[at] ^= 1 << (rng.next() % 8);
        let mut p = BillParser::new();
        if p.feed(&bytes).is_ok() {
            let _ = p.finish();
        }
    }
}
