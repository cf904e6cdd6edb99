//! `cargo run -p wxpay-local`: the whole payment flow on this machine, no WeChat account
//! and no MySQL. Starts the router on 127.0.0.1:9000, the WeChat Pay simulator on :9100 and
//! a fake business backend on :9200, with merchant keys of its own and an embedded SQLite
//! store. The first line it prints is the address of the simulator's console.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use wxpay_local::{LocalEnv, LocalOptions};

fn addr(var: &str, default: &str) -> Result<SocketAddr, String> {
    let v = std::env::var(var).unwrap_or_else(|_| default.to_string());
    v.parse().map_err(|_| format!("{var}={v} is not HOST:PORT"))
}

#[tokio::main]
async fn main() -> ExitCode {
    // The functions' own log (each call's summary, retries, failed deliveries), as a
    // deployment writes it: RUST_LOG level, LOG_FORMAT layout, on stderr.
    if let Err(e) = wxpay_shared::logging::init() {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let options = (|| -> Result<LocalOptions, String> {
        Ok(LocalOptions {
            router_addr: addr("ROUTER_ADDR", "127.0.0.1:9000")?,
            sim_addr: addr("SIM_ADDR", "127.0.0.1:9100")?,
            backend_addr: addr("BACKEND_ADDR", "127.0.0.1:9200")?,
            database_url: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "sqlite://wxpay-local.db".into()),
            auto_refund_after: Some(Duration::from_secs(2)),
            refund_frequency_window: Duration::from_secs(60),
            internal_secret: Some(
                std::env::var("INTERNAL_API_SECRET").unwrap_or_else(|_| "local-dev-secret".into()),
            ),
            verbose_backend: true,
            fresh_keys: true,
            // X-WX-OPENID is refused unless you ask to play CloudBase's gateway.
            extra_vars: std::env::var("TRUST_OPENID_HEADER")
                .map(|v| vec![("TRUST_OPENID_HEADER".to_string(), v)])
                .unwrap_or_default(),
            ..LocalOptions::for_tests()
        })
    })();
    let options = match options {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let env = match LocalEnv::start(options.clone()).await {
        Ok(env) => env,
        Err(e) => {
            eprintln!("could not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Local runs reconcile today's bill: there is no "tomorrow at 10:00" to wait for.
    env.sim.serve_bills_early(true);
    let today = time::OffsetDateTime::now_utc()
        .to_offset(wxpay_shared::reconcile::beijing())
        .date();
    let r = &env.router_url;
    let s = env.sim.base_url();
    let secret = options.internal_secret.clone().unwrap_or_default();
    println!(
        "Sandbox console: {s}/   (orders, QR codes, Pay buttons, every notification attempt; cashier at {s}/cashier; no money moves)"
    );
    println!(
        r#"
wxpay functions running locally
  sandbox console      {s}/   cashier: {s}/cashier
  router (all types)   {r}/pay        health: {r}/healthz
  WeChat Pay simulator {s}
  business backend     {b}   (prints every payment and refund event it receives)
  store                {db}
  internal secret      {secret}   (local only; set INTERNAL_API_SECRET to choose)

1. Log in as the mini-program would: wx.login() gives a code (here the simulator hands one
   out for user o_demo_user), and wxpay_login exchanges it for a session token:
   curl -s -X POST '{s}/sim/login-codes?openid=o_demo_user'
   curl -s {r}/pay -d '{{"type":"wxpay_login","code":"CODE"}}'
2. Create a mini-program (JSAPI) order as that user (X-WX-OPENID is refused here, as on
   any gateway that does not set it; TRUST_OPENID_HEADER=true plays CloudBase, which does):
   curl -s {r}/pay -H 'Authorization: Bearer TOKEN' -d '{{"type":"wxpay_order","packageType":"premium"}}'
   …or a Native (QR code) order, which needs no login:
   curl -s {r}/pay -d '{{"type":"wxpay_order","packageType":"basic","tradeType":"NATIVE"}}'
3. Let the simulator pay it (it sends a signed, encrypted notification to the router, and
   sends it again on WeChat Pay's schedule until the router answers 200 or 204; set
   SIM_RETRY_SCALE=0.01 to play the schedule 100 times faster). Or press Pay in the console,
   or paste a JSAPI order's answer into the cashier:
   curl -s -X POST {s}/sim/pay/OUT_TRADE_NO
4. Query it (the order row is now `paid`, and the backend above printed the delivery):
   curl -s {r}/pay -H 'Authorization: Bearer TOKEN' -d '{{"type":"wxpay_query_order_by_out_trade_no","outTradeNo":"OUT_TRADE_NO"}}'
5. List the user's orders, newest first (pass `nextCursor` back as `cursor` for more):
   curl -s {r}/pay -H 'Authorization: Bearer TOKEN' -d '{{"type":"wxpay_order_list","limit":10}}'
6. Totals per status (trusted callers only):
   curl -s {r}/pay -H 'X-Internal-Secret: {secret}' -d '{{"type":"wxpay_stats"}}'
7. Refund part of it (trusted callers only; the simulator completes refunds after 2 s):
   curl -s {r}/pay -H 'X-Internal-Secret: {secret}' -d '{{"type":"wxpay_refund","outTradeNo":"OUT_TRADE_NO","amount":990}}'
8. Reconcile today's trade bill. WeChat Pay makes a day's bill after 10:00 Beijing time the
   next day; this simulator serves today's at once, so `early` asks for it now. First make
   the bill disagree: pay a new order without notifying, and show another amount for one:
   curl -s -X POST {s}/sim/pay-silently/OTHER_OUT_TRADE_NO
   curl -s -X POST '{s}/sim/bill/amount/OUT_TRADE_NO?fen=100'
   curl -s {s}/sim/bill/{today}          (the bill as WeChat Pay would serve it)
   curl -s {r}/pay -H 'X-Internal-Secret: {secret}' -d '{{"type":"wxpay_reconcile","billDate":"{today}","early":true,"dryRun":true}}'
   curl -s {r}/pay -H 'X-Internal-Secret: {secret}' -d '{{"type":"wxpay_reconcile","billDate":"{today}","early":true}}'
   The first order is repaired (paid, backend told once), the second flagged; run it again
   and nothing changes. Results: tables reconciliations and reconciliation_items.

Ctrl-C stops everything."#,
        b = env.backend.url(),
        db = options.database_url,
        today = today,
    );
    let _ = tokio::signal::ctrl_c().await;
    println!("stopped");
    ExitCode::SUCCESS
}
