use super::*;

const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

fn payment(no: &str, yuan: &str, fee: &str) -> String {
    format!("`2024-05-01 10:00:00,`wx8888888888888888,`1900000001,`0,`,`4200000001{no},`{no},`openid,`JSAPI,`SUCCESS,`OTHERS,`CNY,`{yuan},`0.00,`0,`0,`0.00,`0.00,`,`,`商品,`,`{fee},`0.60%,`{yuan},`0.00,`")
}

fn refund(no: &str, refund_no: &str, total: &str, yuan: &str, fee: &str) -> String {
    format!("`2024-05-01 11:00:00,`wx8888888888888888,`1900000001,`0,`,`4200000001{no},`{no},`openid,`JSAPI,`REFUND,`OTHERS,`CNY,`{total},`0.00,`5030000{refund_no},`{refund_no},`{yuan},`0.00,`ORIGINAL,`SUCCESS,`商品,`,`{fee},`0.60%,`{total},`{yuan},`")
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
            payment("A1", "29.90", "0.18"),
            payment("A2", "0.01", "0.00"),
            refund("A1", "R1", "29.90", "9.90", "-0.06"),
        ],
        "`3,`29.91,`9.90,`0.00,`0.12,`29.91,`9.90",
    )
}

fn parse(text: &str) -> Result<TradeBill, BillError> {
    let mut p = BillParser::new();
    p.feed(text.as_bytes())?;
    p.finish()
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
    assert_eq!((r.refund, r.fee), (990, -6));
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
        let mut p = BillParser::new();
        p.feed(&bytes[..cut]).unwrap();
        p.feed(&bytes[cut..]).unwrap();
        assert_eq!(p.finish().unwrap(), whole, "split at {cut}");
    }
    let mut p = BillParser::new();
    for b in bytes {
        p.feed(std::slice::from_ref(b)).unwrap();
    }
    assert_eq!(p.finish().unwrap(), whole, "one byte at a time");
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
            "a float-looking amount",
            good.replacen("`29.90,`0.00", "`29.901,`0.00", 1),
            "line 2: 应结订单金额 `29.901` is not an amount",
        ),
        (
            "an extra field (a comma in a name)",
            good.replacen("`商品", "`商,品", 1),
            "line 2: 28 fields",
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
            good.replacen(&format!("{}\r\n", payment("A2", "0.01", "0.00")), "", 1),
            "总交易单数 is 3, the rows add up to 2",
        ),
        (
            "text after the summary",
            format!("{good}`1,`2\r\n"),
            "text after the summary line",
        ),
        (
            "refund without its number",
            good.replacen("`5030000R1,`R1", "`5030000R1,`", 1),
            "without 商户退款单号",
        ),
    ];
    for (name, text, expected) in cases {
        match parse(&text) {
            Ok(b) => panic!("{name}: accepted {} rows", b.rows.len()),
            Err(e) => assert!(e.to_string().contains(expected), "{name}: {e}"),
        }
    }
    let mut p = BillParser::new();
    let mut bytes = good.into_bytes();
    bytes[HEADER.len() + 5] = 0xff;
    assert!(matches!(
        p.feed(&bytes),
        Err(BillError::Malformed { line: 2, .. })
    ));
    let mut p = BillParser::new();
    assert!(
        p.feed(&vec![b'`'; MAX_LINE_BYTES + 1]).is_err(),
        "an endless line"
    );
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
