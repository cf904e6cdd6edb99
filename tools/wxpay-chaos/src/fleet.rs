//! The router instances: real `wxpay_functions` processes in local HTTP mode, all on one
//! store. Each keeps its port for life, so WeChat Pay's notification retries reach the
//! instance again after a SIGKILL and restart, as they would reach a redeployed URL.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Product variables the caller's shell may hold; never passed on to an instance.
const PRODUCT_VARS: &[&str] = &[
    "WECHAT",
    "API_BASE_URL",
    "INTERNAL_API_SECRET",
    "DATABASE_",
    "FUNCTION_TIMEOUT_MS",
    "OUTBOX_",
    "MIGRATE_ON_START",
    "LOG_FORMAT",
    "METRICS",
    "AWS_LAMBDA_RUNTIME_API",
];

pub struct Instance {
    pub index: usize,
    pub port: u16,
    pub log: PathBuf,
    child: Mutex<Option<Child>>,
    /// Bumped on every kill, stop and continue: a call that saw it move was interrupted by
    /// the harness, not answered late by the product.
    pub interruptions: AtomicU64,
    stopped: Mutex<bool>,
    /// Answered `/healthz` since it was last started, and not killed since.
    up: std::sync::atomic::AtomicBool,
    pub in_flight: AtomicU64,
    /// Variables of this instance only (the healer's longer deadline).
    extra: Vec<(String, String)>,
}

pub struct Fleet {
    pub bin: PathBuf,
    pub vars: Vec<(String, String)>,
    /// The campaign's instances, then one more: the healer, which only the healing phase
    /// calls (the operator's sweep and reconciliation, with a scheduled job's deadline).
    pub instances: Vec<Arc<Instance>>,
}

impl Instance {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn pid(&self) -> Option<i32> {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_ref().map(|c| c.id() as i32)
    }

    fn signal(&self, sig: i32) -> bool {
        match self.pid() {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            Some(pid) => unsafe { libc::kill(pid, sig) == 0 },
            None => false,
        }
    }

    /// SIGKILL, as a platform reclaims an instance mid-call; reaped at once.
    pub fn kill(&self) {
        self.interruptions.fetch_add(1, Ordering::SeqCst);
        self.up.store(false, Ordering::SeqCst);
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }

    /// SIGSTOP: a frozen Lambda sandbox, holding whatever it held.
    pub fn stop(&self) {
        self.interruptions.fetch_add(1, Ordering::SeqCst);
        if self.signal(libc::SIGSTOP) {
            *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        }
    }

    pub fn cont(&self) {
        self.signal(libc::SIGCONT);
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.interruptions.fetch_add(1, Ordering::SeqCst);
    }
}

impl Fleet {
    /// How many instances the campaign calls (the healer excluded).
    pub fn workers(&self) -> usize {
        self.instances.len() - 1
    }

    pub fn healer(&self) -> usize {
        self.instances.len() - 1
    }

    pub fn new(
        bin: PathBuf,
        vars: Vec<(String, String)>,
        n: usize,
        work: &std::path::Path,
        skewed: Vec<(String, String)>,
        database_urls: &[String],
    ) -> Result<Fleet, String> {
        let mut instances = Vec::new();
        for index in 0..=n {
            let mut extra = if index == n {
                vec![(
                    "FUNCTION_TIMEOUT_MS".to_string(),
                    crate::world::HEALER_DEADLINE.as_millis().to_string(),
                )]
            } else if index == n - 1 {
                // The last campaign instance lives with its clock off (libfaketime).
                skewed.clone()
            } else {
                Vec::new()
            };
            // On a cluster, instance i stores through node i (the healer through the first).
            if index < n && !database_urls.is_empty() {
                let url = &database_urls[index % database_urls.len()];
                extra.push(("DATABASE_URL".to_string(), url.clone()));
            }
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free port: {e}"))?
                .port();
            instances.push(Arc::new(Instance {
                index,
                port,
                log: work.join(if index == n {
                    "healer.log".to_string()
                } else {
                    format!("instance-{}.log", index + 1)
                }),
                child: Mutex::new(None),
                interruptions: AtomicU64::new(0),
                stopped: Mutex::new(false),
                up: std::sync::atomic::AtomicBool::new(false),
                in_flight: AtomicU64::new(0),
                extra,
            }));
        }
        Ok(Fleet {
            bin,
            vars,
            instances,
        })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if PRODUCT_VARS.iter().any(|p| n.starts_with(p)) {
                cmd.env_remove(&name);
            }
        }
        cmd.envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        cmd
    }

    /// `wxpay_functions migrate`, the deployment step: instances never migrate themselves.
    pub fn migrate(&self) -> Result<String, String> {
        let out = self
            .command()
            .arg("migrate")
            .output()
            .map_err(|e| {
                format!(
                    "cannot run {} migrate: {e} (build it with `cargo build -p wxpay_functions -p wxpay-chaos`, or pass --bin)",
                    self.bin.display()
                )
            })?;
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text.trim().to_string())
        } else {
            Err(format!("migrate failed ({}): {text}", out.status))
        }
    }

    /// Starts (or restarts) instance `i` on its port and waits for `/healthz`. The log is
    /// appended to, so one file holds every life of the instance.
    pub async fn start(&self, i: usize) -> Result<(), String> {
        let inst = &self.instances[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&inst.log)
            .map_err(|e| format!("cannot open {}: {e}", inst.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = self.command();
        cmd.env("HOST", "127.0.0.1")
            .env("PORT", inst.port.to_string())
            .env("WECHAT_NOTIFY_URL", format!("{}/pay", inst.url()))
            .envs(inst.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        *inst.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(r) = client.get(format!("{}/healthz", inst.url())).send().await {
                if r.status().is_success() {
                    inst.up.store(true, Ordering::SeqCst);
                    return Ok(());
                }
            }
            if !inst.is_running() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "instance {} did not come up on port {} (log {})",
            i + 1,
            inst.port,
            inst.log.display()
        ))
    }

    /// Every instance running and not frozen, for healing.
    pub async fn revive_all(&self) -> Result<(), String> {
        for (i, inst) in self.instances.iter().enumerate() {
            if inst.is_stopped() {
                inst.cont();
            }
            if !inst.is_running() {
                self.start(i).await?;
            }
        }
        Ok(())
    }

    pub fn shutdown(&self) {
        for inst in &self.instances {
            if inst.is_stopped() {
                inst.cont();
            }
            inst.kill();
        }
    }
}
