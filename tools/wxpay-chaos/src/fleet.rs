//! The router instances: real `wxpay_functions` processes in local HTTP mode, all on one
//! store. Each keeps its port for life, so WeChat Pay's notification retries reach the
//! instance again after a SIGKILL and restart, as they would reach a redeployed URL.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::instance::Exit;
pub use crate::instance::Instance;

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

pub struct Fleet {
    pub bin: PathBuf,
    pub vars: Vec<(String, String)>,
    /// The campaign's instances, then one more: the healer, which only the healing phase
    /// calls (the operator's sweep and reconciliation, with a scheduled job's deadline).
    pub instances: Vec<Arc<Instance>>,
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
        let since = Instant::now();
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
            let log = work.join(if index == n {
                "healer.log".to_string()
            } else {
                format!("instance-{}.log", index + 1)
            });
            instances.push(Arc::new(Instance::new(index, port, log, extra, since)));
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
        let _one_start = inst.starting.lock().await;
        let pid = match inst.running_pid() {
            Some(pid) => pid,
            None => self.spawn(inst)?,
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(r) = client.get(format!("{}/healthz", inst.url())).send().await {
                if r.status().is_success() {
                    inst.answered(pid);
                    return Ok(());
                }
            }
            if inst.running_pid() != Some(pid) {
                if inst.held_down() {
                    // The schedule killed it while it started; its own restart follows.
                    return Ok(());
                }
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

    fn spawn(&self, inst: &Instance) -> Result<u32, String> {
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
        let pid = child.id();
        inst.install(child);
        Ok(pid)
    }

    /// Watches for instances that ended by themselves — a crash, or a start that did not
    /// come up — and starts them again, as the platform would replace them. Until it does,
    /// their calls are refused, and counted against invariant 5: the harness did not cause
    /// it. Without this, an instance that died by itself stayed dead (and "up") for
    /// minutes, until a random SIGKILL happened to pick it.
    pub async fn supervise(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for (i, inst) in self.instances.iter().enumerate() {
                let Some(exit) = inst.orphaned() else {
                    continue;
                };
                if let Exit::FailedStart = exit {
                    // Whatever kept it from starting may take a moment to pass.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if let Err(e) = self.start(i).await {
                    eprintln!("restart: {e}");
                }
            }
        }
    }

    /// Every instance running and not frozen, for healing.
    pub async fn revive_all(&self) -> Result<(), String> {
        for (i, inst) in self.instances.iter().enumerate() {
            if inst.is_stopped() {
                inst.cont();
            }
            self.start(i).await?;
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
