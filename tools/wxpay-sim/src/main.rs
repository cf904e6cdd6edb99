//! `wxpay-sim`: a local WeChat Pay API v3 simulator for running the product by hand.
//!
//! Generates a fresh merchant identity on every start, writes the files and variables the
//! product needs, and serves until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wxpay_sim::keys::MerchantKeys;
use wxpay_sim::{PlatformMode, SimConfig, Simulator};

const USAGE: &str = "\
usage: wxpay-sim [--out DIR] [--mode certificate|public-key|mixed]

Starts a WeChat Pay API v3 simulator and writes the merchant key, the platform keys and
a sim.env file with the product's WECHAT_* variables into DIR (default ./sim-keys).

environment:
  SIM_ADDR              listen address (default 127.0.0.1:9100)
  SIM_MODE              like --mode (default certificate)
  SIM_AUTO_REFUND_SECS  complete refunds automatically after this many seconds
  SIM_LOG               log level: error, warn, info (default), debug

control API (no signature needed):
  POST /sim/pay/{out_trade_no}
  POST /sim/login-codes?openid=…      a wx.login() code for GET /sns/jscode2session
  POST /sim/refunds/{out_refund_no}/complete?status=SUCCESS|ABNORMAL|CLOSED
  POST /sim/faults/refund-late?delay_ms=N&times=K   accept the next refund(s), answer late
  POST /sim/faults {\"path\":\"/v3/pay/\",\"kind\":\"status\",\"status\":500}   DELETE /sim/faults
  GET  /sim/orders[/{out_trade_no}]   GET /sim/refunds[/{out_refund_no}]
  POST /sim/pay-silently/{out_trade_no}                 paid, the notification is lost
  POST /sim/refunds/{out_refund_no}/complete-silently?status=SUCCESS
  POST /sim/bill/drop/{out_trade_no|out_refund_no}      leave it out of the trade bill
  POST /sim/bill/amount/{out_trade_no|out_refund_no}?fen=N   the bill shows N fen
  POST /sim/bill/early?on=true   serve today's bill now   POST /sim/bill/reset
  GET  /sim/bill/{yyyy-MM-dd}    the trade bill as GET /v3/bill/tradebill serves it";

struct Args {
    out: PathBuf,
    mode: PlatformMode,
}

fn parse_mode(s: &str) -> Result<PlatformMode, String> {
    match s.to_ascii_lowercase().as_str() {
        "certificate" | "cert" => Ok(PlatformMode::Certificate),
        "public-key" | "publickey" | "public_key" | "pubkey" => Ok(PlatformMode::PublicKey),
        "mixed" => Ok(PlatformMode::Mixed),
        other => Err(format!(
            "unknown mode `{other}` (certificate, public-key or mixed)"
        )),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut out = PathBuf::from("./sim-keys");
    let mut mode = match std::env::var("SIM_MODE") {
        Ok(m) if !m.trim().is_empty() => parse_mode(m.trim())?,
        _ => PlatformMode::Certificate,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        } else if arg == "--out" {
            out = PathBuf::from(args.next().ok_or("--out needs a directory")?);
        } else if let Some(v) = arg.strip_prefix("--out=") {
            out = PathBuf::from(v);
        } else if arg == "--mode" {
            mode = parse_mode(&args.next().ok_or("--mode needs a value")?)?;
        } else if let Some(v) = arg.strip_prefix("--mode=") {
            mode = parse_mode(v)?;
        } else {
            return Err(format!("unknown argument `{arg}`"));
        }
    }
    Ok(Args { out, mode })
}

fn write_file(path: &Path, contents: &str, secret: bool) -> std::io::Result<()> {
    std::fs::write(path, contents)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

/// Writes the key files and `sim.env`; returns the env lines.
fn write_outputs(dir: &Path, keys: &MerchantKeys, sim: &Simulator) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let key_file = dir.join("apiclient_key.pem");
    write_file(&key_file, &keys.private_key_pem, true)?;
    write_file(
        &dir.join("apiclient_public_key.pem"),
        &keys.public_key_pem,
        false,
    )?;

    let config = sim.config();
    let mut env = vec![
        format!("WECHAT_APPID={}", config.appid),
        format!("WECHAT_MCHID={}", config.mchid),
        format!("WECHAT_SERIAL_NO={}", keys.serial_no),
        format!("WECHAT_PRIVATE_KEY_FILE={}", key_file.display()),
        format!("WECHAT_APIV3_KEY={}", config.apiv3_key),
        format!("WECHATPAY_BASE_URL={}", sim.base_url()),
        format!("WECHAT_API_BASE_URL={}", sim.base_url()),
        format!("WECHAT_APP_SECRET={}", config.app_secret),
    ];
    if let Some(cert) = sim.platform_cert_pem() {
        write_file(&dir.join("wechatpay_platform_cert.pem"), &cert, false)?;
    }
    if let Some(id) = sim.public_key_id() {
        let pem = sim.platform_public_key_pem();
        write_file(&dir.join("wechatpay_public_key.pem"), &pem, false)?;
        env.push(format!("WECHAT_PUBLIC_KEY_ID={id}"));
        // One line so the file stays a valid env file; the product accepts literal \n.
        env.push(format!(
            "WECHAT_PUBLIC_KEY=\"{}\"",
            pem.trim_end().replace('\n', "\\n")
        ));
    }
    let mut text = String::from(
        "# Generated by wxpay-sim; valid only for this simulator run.\n\
         # Also set WECHAT_NOTIFY_URL to where the simulator should POST notifications.\n",
    );
    for line in &env {
        text.push_str(line);
        text.push('\n');
    }
    write_file(&dir.join("sim.env"), &text, true)?;
    Ok(env)
}

fn init_logging() {
    let level = match std::env::var("SIM_LOG").unwrap_or_default().as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt().with_max_level(level).init();
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("wxpay-sim: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args().map_err(|e| format!("{e}\n\n{USAGE}"))?;
    init_logging();
    let addr: SocketAddr = std::env::var("SIM_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:9100".to_string())
        .parse()
        .map_err(|e| format!("SIM_ADDR: {e}"))?;
    let auto_refund_after = match std::env::var("SIM_AUTO_REFUND_SECS") {
        Ok(v) if !v.trim().is_empty() => Some(Duration::from_secs_f64(
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("SIM_AUTO_REFUND_SECS: not a number of seconds: {v}"))?,
        )),
        _ => None,
    };

    let keys = tokio::task::spawn_blocking(MerchantKeys::generate)
        .await
        .map_err(|e| e.to_string())?;
    let mut config = SimConfig::for_merchant(&keys);
    config.mode = args.mode;
    config.auto_refund_after = auto_refund_after;
    let sim = Simulator::start_on(config, addr)
        .await
        .map_err(|e| format!("cannot start on {addr}: {e}"))?;
    let env = write_outputs(&args.out, &keys, &sim)
        .map_err(|e| format!("writing {}: {e}", args.out.display()))?;

    println!(
        "wxpay-sim listening on {} ({:?} mode)",
        sim.base_url(),
        args.mode
    );
    println!(
        "wrote keys and sim.env to {}; product variables:",
        args.out.display()
    );
    for line in &env {
        println!("  {line}");
    }
    println!(
        "pay an order:  curl -X POST {}/sim/pay/OUT_TRADE_NO",
        sim.base_url()
    );
    println!("Ctrl-C to stop.");

    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("waiting for Ctrl-C: {e}"))?;
    sim.shutdown();
    Ok(())
}
