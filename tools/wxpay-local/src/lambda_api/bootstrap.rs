//! A function binary started as Lambda starts `bootstrap`.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::RuntimeApi;

/// A function binary started as Lambda starts `bootstrap`. Dropping it kills it.
pub struct Bootstrap {
    child: Child,
    log: PathBuf,
    /// Removed on drop: the directory [`Bootstrap::with_sqlite`] made.
    scratch: Option<PathBuf>,
    /// Taken just before the exec: where Lambda's init phase begins.
    pub spawned_at: Instant,
}

impl Bootstrap {
    /// Starts `bin` with only `vars` and the variables Lambda sets (nothing inherited from
    /// this process), pointed at `api`; stdout and stderr go to `log`.
    pub fn spawn(
        bin: &Path,
        api: &RuntimeApi,
        function_name: &str,
        vars: &[(String, String)],
        log: &Path,
    ) -> std::io::Result<Bootstrap> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .envs(vars.iter().cloned())
            .envs(lambda_vars(api.addr(), function_name))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let spawned_at = Instant::now();
        let child = cmd.spawn()?;
        Ok(Bootstrap {
            child,
            log: log.to_path_buf(),
            scratch: None,
            spawned_at,
        })
    }

    /// For tests: [`Bootstrap::spawn`] with its own SQLite file (`DATABASE_URL` in `vars`
    /// is replaced) and log in a fresh directory, removed when it is dropped.
    pub fn with_sqlite(
        bin: &Path,
        api: &RuntimeApi,
        function_name: &str,
        vars: &[(String, String)],
    ) -> Bootstrap {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "wxpay-{function_name}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        let mut vars: Vec<(String, String)> = vars
            .iter()
            .filter(|(k, _)| k != "DATABASE_URL")
            .cloned()
            .collect();
        let db = format!("sqlite://{}", dir.join("wxpay.db").display());
        vars.push(("DATABASE_URL".into(), db));
        let log = dir.join("function.log");
        let mut function = Bootstrap::spawn(bin, api, function_name, &vars, &log)
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        function.scratch = Some(dir);
        function
    }

    /// Everything the binary logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` once the binary has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// For tests: panics with `msg`, whether the binary still runs, and its log.
    pub fn fail(&mut self, msg: &str) -> ! {
        let status = match self.exited() {
            Some(status) => format!("exited: {status}"),
            None => "still running".to_string(),
        };
        panic!("{msg}\nthe binary is {status}; its log:\n{}", self.logs());
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        // SIGKILL, as Lambda reclaims an instance; wait so no zombie outlives the caller.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.scratch {
            if std::thread::panicking() {
                eprintln!("--- the function's log ---\n{}", self.logs());
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The variables Lambda sets for `bootstrap` besides the function's own.
pub fn lambda_vars(api: SocketAddr, function_name: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/03/12/[$LATEST]0123456789abcdef".into(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/wxpay/{function_name}"),
        ),
        ("AWS_REGION", "ap-east-1".into()),
        ("AWS_SESSION_TOKEN", super::SESSION_TOKEN.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
