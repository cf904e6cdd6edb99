//! Parsing a 100,000-row trade bill (`bill_type=ALL`) the way a download arrives: 64 KiB
//! chunks through [`BillParser`], summary check included. Criterion reports rows per second
//! (`thrpt`). The bill is written in WeChat Pay's format with the simulator's header names.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wxpay_shared::tradebill::BillParser;
use wxpay_sim::bill::{yuan, ALL_HEADER, SUMMARY_HEADER};

const ROWS: usize = 100_000;
const CHUNK: usize = 64 * 1024;

fn bill() -> Vec<u8> {
    let mut s = ALL_HEADER.join(",");
    s.push_str("\r\n");
    let (mut total, mut fees) = (0i64, 0i64);
    for i in 0..ROWS {
        let fen = 1 + (i as i64 * 7919) % 100_000;
        let fee = (fen * 6 + 500) / 1000;
        total += fen;
        fees += fee;
        s.push_str(&format!(
            "`2024-05-01 10:{:02}:{:02},`wx8888888888888888,`1900000001,`0,`,`4200000{i:019},`ORDER{i:012},`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,`SUCCESS,`OTHERS,`CNY,`{},`0.00,`0,`0,`0.00,`0.00,`,`,`会员套餐,`gen-1,`{},`0.60%,`{},`0.00,`\r\n",
            (i / 60) % 60,
            i % 60,
            yuan(fen),
            yuan(fee),
            yuan(fen),
        ));
    }
    s.push_str(&SUMMARY_HEADER.join(","));
    s.push_str("\r\n");
    s.push_str(&format!(
        "`{ROWS},`{},`0.00,`0.00,`{},`{},`0.00\r\n",
        yuan(total),
        yuan(fees),
        yuan(total)
    ));
    s.into_bytes()
}

fn parse(c: &mut Criterion) {
    let file = bill();
    let mut group = c.benchmark_group("tradebill");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("parse_100k_rows", |b| {
        b.iter(|| {
            let mut p = BillParser::new();
            let mut rows = 0;
            for chunk in file.chunks(CHUNK) {
                p.feed(black_box(chunk)).expect("feeds");
                rows += p.take_lines().len();
            }
            assert_eq!(rows, ROWS);
            p.finish().expect("a valid bill")
        })
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
