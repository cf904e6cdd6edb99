//! Headless Chromium driven over WebDriver (chromedriver), for the sandbox console's tests.
//!
//! Debian's `chromium` and `chromium-driver` (scripts/install-browser.sh installs them).
//! Without them the tests print a loud SKIPPED and pass, except with `CI=true`, where a
//! missing browser fails them. One browser at a time: the machine has two cores.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Only one browser runs at a time, whichever test's runtime starts it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where screenshots go: `target/sandbox-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sandbox-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/sandbox-screenshots");
    dir
}

impl Browser {
    /// `None` (after a loud note) when Chromium or chromedriver is missing outside CI.
    pub async fn start() -> Option<Browser> {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
        let missing: Vec<&str> = [chromium.as_str(), driver_bin.as_str()]
            .into_iter()
            .filter(|p| !std::path::Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but {missing:?} is missing: the browser tests must run in CI (scripts/install-browser.sh installs chromium and chromium-driver)");
            }
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: the sandbox console's browser tests need {missing:?} (run scripts/install-browser.sh) ***\n"
                );
            });
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().await;
        let port = free_port();
        let log = std::fs::File::create(screenshot_dir().join("chromedriver.log"))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        // Its own process group, which the Chromium it starts joins: see `end`.
        let driver = Command::new(&driver_bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_bin}: {e}"));
        let profile = std::env::temp_dir().join(format!(
            "wxpay-sandbox-chromium-{}-{port}",
            std::process::id()
        ));
        let client = match connect(port, &chromium, &profile).await {
            Ok(c) => c,
            Err(e) => {
                let mut driver = driver;
                end(&mut driver);
                panic!("{e}");
            }
        };
        client
            .set_window_size(1280, 1000)
            .await
            .expect("window size");
        Some(Browser {
            client,
            driver,
            profile,
            _turn: turn,
        })
    }

    /// Waits for `css` to appear (up to 15 s).
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("`{css}` never appeared: {e}"))
    }

    /// Saves a screenshot of the whole window as `target/sandbox-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Sets a form field as pasting into it would.
    pub async fn set_value(&self, css: &str, value: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).value = arguments[1];",
                vec![json!(css), json!(value)],
            )
            .await
            .expect("set the field");
    }
}

async fn connect(port: u16, chromium: &str, profile: &std::path::Path) -> Result<Client, String> {
    let url = format!("http://127.0.0.1:{port}");
    // chromedriver takes a moment to listen.
    for _ in 0..100 {
        if reqwest::get(format!("{url}/status")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&url)
        .await
        .map_err(|e| format!("chromedriver on {url} did not start Chromium: {e}"))
}

/// Ends chromedriver and every Chromium process it started. Killing chromedriver alone
/// left its browser running, reparented to init, after the tests had finished.
fn end(driver: &mut Child) {
    // SAFETY: kill(2) on the process group our own child leads; the child is not reaped yet.
    unsafe {
        libc::kill(-(driver.id() as i32), libc::SIGKILL);
    }
    let _ = driver.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        end(&mut self.driver);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Decodes the QR code in a PNG screenshot, as a phone camera would read the screen.
pub fn decode_qr(png_bytes: &[u8]) -> Result<String, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| format!("not a PNG: {e}"))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("PNG frame: {e}"))?;
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let luma = |x: usize, y: usize| -> u8 {
        let i = (y * w + x) * channels;
        match channels {
            1 | 2 => buf[i],
            _ => {
                ((u32::from(buf[i]) * 299
                    + u32::from(buf[i + 1]) * 587
                    + u32::from(buf[i + 2]) * 114)
                    / 1000) as u8
            }
        }
    };
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, luma);
    let grids = img.detect_grids();
    let grid = grids.first().ok_or("no QR code found in the image")?;
    let (_, content) = grid
        .decode()
        .map_err(|e| format!("QR code does not decode: {e}"))?;
    Ok(content)
}
