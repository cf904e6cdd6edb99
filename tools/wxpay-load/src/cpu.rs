//! CPU time per request, split by process: the function, the database server and this tool
//! (load generator + simulator + backend). On a 2-core machine the sum is what bounds
//! throughput, so this says where the time goes and what would move the number.

use std::time::Duration;

/// Linux reports utime/stime in clock ticks of USER_HZ, which is 100 on every mainstream
/// architecture; the figures are sums over hundreds of requests, so 10 ms ticks are plenty.
const TICKS_PER_SEC: u64 = 100;

/// user + system CPU time of a process so far.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count fields after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SEC,
    ))
}

/// The local MySQL/MariaDB server, if it runs on this machine and we may read its stats:
/// the first `mariadbd` found. Only a fallback when the server does not say its pid file
/// (see `Database::server_pids`): with a test cluster running, there are several.
pub fn database_server_pid() -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if matches!(comm.trim(), "mariadbd" | "mysqld") {
            return Some(pid);
        }
    }
    None
}

/// CPU of several processes together (the instances of one deployment, the nodes of a
/// cluster); `None` if any cannot be read.
fn total_cpu(pids: &[u32]) -> Option<Duration> {
    pids.iter().map(|p| process_cpu(*p)).sum()
}

/// CPU per request of one phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuPerRequest {
    pub function: Duration,
    pub database: Option<Duration>,
    pub tool: Duration,
    /// Statements the MySQL server executed per request (its `Questions` counter).
    pub statements: Option<f64>,
}

/// Readings at the start of a phase.
pub struct CpuMark {
    function: Option<Duration>,
    database: Option<Duration>,
    tool: Option<Duration>,
}

/// `function_pids`: every instance of the function; `database_pids`: every database server
/// (one, or each node of a cluster; empty when none runs here).
pub fn mark(function_pids: &[u32], database_pids: &[u32]) -> CpuMark {
    CpuMark {
        function: total_cpu(function_pids),
        database: (!database_pids.is_empty())
            .then(|| total_cpu(database_pids))
            .flatten(),
        tool: process_cpu(std::process::id()),
    }
}

impl CpuMark {
    /// CPU spent since the mark, divided over `requests`; `None` for phases too short for
    /// 10 ms ticks to say anything (smoke runs).
    pub fn per_request(
        &self,
        function_pids: &[u32],
        database_pids: &[u32],
        requests: usize,
    ) -> Option<CpuPerRequest> {
        if requests < 100 {
            return None;
        }
        let n = requests as u32;
        let delta = |before: Option<Duration>, now: Option<Duration>| {
            Some(now?.saturating_sub(before?) / n)
        };
        Some(CpuPerRequest {
            function: delta(self.function, total_cpu(function_pids))?,
            database: delta(self.database, total_cpu(database_pids)),
            tool: delta(self.tool, process_cpu(std::process::id()))?,
            statements: None,
        })
    }
}
