//! Cold starts: exec → first `/healthz` 200, and exec → first order answered.
//!
//! Plain blocking sockets, not the async client: the clock starts just before the exec, and
//! the only thing between the process binding its port and our request being queued is one
//! short sleep, so the figure is the target's start-up and not the load tool's scheduler.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Between connection attempts while the target is not listening yet. Short against the
/// few milliseconds a Rust start takes; a refused loopback connect costs microseconds.
const POLL: Duration = Duration::from_micros(200);

pub struct Answer {
    pub status: u16,
    pub body: String,
    /// From `since` to the complete answer.
    pub elapsed: Duration,
}

pub fn healthz_request(addr: SocketAddr) -> Vec<u8> {
    format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// `openid`: a mini-program user of the simulator's default app, as a gateway names them.
pub fn order_request(addr: SocketAddr, body: &str, openid: Option<&str>) -> Vec<u8> {
    let openid = openid
        .map(|o| {
            format!(
                "X-WX-OPENID: {o}\r\nX-WX-APPID: {}\r\n",
                wxpay_sim::DEFAULT_APPID
            )
        })
        .unwrap_or_default();
    format!(
        "POST /pay HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{openid}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Connects (retrying while refused), sends `request`, reads the answer to EOF.
/// A connection that is reset before a complete answer counts as "not ready yet".
/// `gone` is asked between attempts whether the process died (then waiting is pointless).
pub fn first_answer(
    addr: SocketAddr,
    request: &[u8],
    since: Instant,
    timeout: Duration,
    gone: &mut dyn FnMut() -> Option<String>,
) -> Result<Answer, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() >= deadline {
            return Err(format!("no answer from {addr} within {timeout:?}"));
        }
        if let Some(status) = gone() {
            return Err(format!("the process exited ({status}) before answering"));
        }
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ));
        if stream.write_all(request).is_err() {
            std::thread::sleep(POLL);
            continue;
        }
        let mut raw = Vec::new();
        if stream.read_to_end(&mut raw).is_err() && raw.is_empty() {
            std::thread::sleep(POLL);
            continue;
        }
        let elapsed = since.elapsed();
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status else {
            std::thread::sleep(POLL);
            continue;
        };
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        return Ok(Answer {
            status,
            body,
            elapsed,
        });
    }
}

/// min / median / max of a series.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub min: Duration,
    pub median: Duration,
    pub max: Duration,
    pub runs: usize,
}

impl Spread {
    pub fn of(mut samples: Vec<Duration>) -> Option<Spread> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let n = samples.len();
        // The middle sample, or the mean of the two middle ones.
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2
        };
        Some(Spread {
            min: samples[0],
            median,
            max: samples[n - 1],
            runs: n,
        })
    }
}
