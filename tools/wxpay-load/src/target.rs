//! The process under test: the Rust router binary or the Node.js reference, started as a
//! separate process so its start-up and memory are its own and can be read from /proc.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cold::Answer;

/// Which implementation to start.
#[derive(Debug, Clone)]
pub enum Kind {
    /// The Rust router (`wxpay_functions`) in local HTTP mode; `label` names its logs and
    /// databases (`rust`, or `baseline` for an earlier build measured alongside).
    Rust { bin: PathBuf, label: &'static str },
    /// `node index.js` in DIR: the Node.js reference.
    Node { node: String, dir: PathBuf },
}

impl Kind {
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Rust { label, .. } => label,
            Kind::Node { .. } => "node",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Kind::Rust { bin, .. } => format!("Rust router {}", bin.display()),
            Kind::Node { dir, .. } => {
                format!("Node.js reference {}", dir.join("index.js").display())
            }
        }
    }
}

/// Prefixes of the environment variables the functions read (contract §7), plus the Lambda
/// switch; the caller's values of these are never passed on.
const PRODUCT_VARS: &[&str] = &[
    "WECHAT",
    "API_BASE_URL",
    "INTERNAL_API_SECRET",
    "DATABASE_URL",
    "PRICE_CACHE_TTL_SECS",
    "DEFAULT_PRICES",
    "OUTBOX_",
    "TRUST_OPENID_HEADER",
    "LAMBDA_EVENT_SHAPE",
    "AWS_LAMBDA_RUNTIME_API",
];

/// A started process and where it listens. Dropping it kills the process.
pub struct Running {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// Taken just before the exec, for cold-start timings.
    pub spawned_at: Instant,
}

/// A loopback port nobody listens on right now. The port is released before the target
/// binds it; on a benchmark machine nothing else races for it.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Running {
    /// Starts `kind` on a free loopback port with `vars` (the product's environment).
    /// WECHAT_NOTIFY_URL is set here because it names the port.
    pub fn start(kind: &Kind, vars: &[(String, String)], log: &Path) -> Result<Running, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = match kind {
            Kind::Rust { bin, .. } => Command::new(bin),
            Kind::Node { node, dir } => {
                let mut c = Command::new(node);
                c.arg("index.js").current_dir(dir);
                c
            }
        };
        // Only our product variables: a WECHAT_PUBLIC_KEY or DATABASE_URL left in the
        // caller's shell must not change what is measured. Without AWS_LAMBDA_RUNTIME_API the
        // binary serves local HTTP on HOST:PORT.
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if PRODUCT_VARS.iter().any(|p| n.starts_with(p)) {
                cmd.env_remove(&name);
            }
        }
        cmd.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("WECHAT_NOTIFY_URL", format!("http://{addr}/pay"))
            .stdin(Stdio::null());
        let out = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot reuse {}: {e}", log.display()))?;
        cmd.stdout(out).stderr(err);
        let spawned_at = Instant::now();
        let child = cmd.spawn().map_err(|e| match kind {
            Kind::Rust { bin, .. } => format!(
                "cannot start {}: {e} (build it with `cargo build --release -p wxpay_functions`, or pass --bin)",
                bin.display()
            ),
            Kind::Node { node, .. } => format!("cannot start `{node}`: {e}"),
        })?;
        Ok(Running {
            child,
            addr,
            log: log.to_path_buf(),
            spawned_at,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited (it should not, while we measure).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// The last lines the process wrote, to explain a failure.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Peak and current resident set size, in bytes, from /proc/PID/status.
    pub fn memory(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
                .map(|kb| kb * 1024)
        };
        Some(Memory {
            peak_rss: field("VmHWM:")?,
            rss: field("VmRSS:")?,
        })
    }

    /// The first complete answer to `request`, timed from the exec; see [`crate::cold`].
    /// Errors carry the end of the process's log.
    pub fn first_answer(&mut self, request: &[u8], timeout: Duration) -> Result<Answer, String> {
        let (addr, since) = (self.addr, self.spawned_at);
        let child = &mut self.child;
        let mut gone = || match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        };
        crate::cold::first_answer(addr, request, since, timeout, &mut gone)
            .map_err(|e| format!("{e}:\n{}", self.log_tail(20)))
    }

    /// Polls `GET /healthz` until it answers 200 (or `timeout`); the time since the exec.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let a = self.first_answer(&crate::cold::healthz_request(self.addr), timeout)?;
        if a.status == 200 {
            Ok(a.elapsed)
        } else {
            Err(format!("/healthz answered {}: {}", a.status, a.body))
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SIGKILL, as a platform reclaims an instance; wait so no zombie outlives the run.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub peak_rss: u64,
    pub rss: u64,
}
