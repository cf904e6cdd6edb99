//! One router instance's process and what the harness knows about it: whether the harness
//! killed or froze it, whether it is up, and how it ended when it ended by itself.
//!
//! Every change of life (spawn, kill, "answered `/healthz`", "exited by itself") is made
//! under one lock, so a call's refusal is never blamed on the product when the harness
//! killed the process, and never excused when the process died by itself.

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Default)]
struct Life {
    child: Option<Child>,
    /// Killed by the harness and not started since: the kill's own restart brings it back.
    held_down: bool,
    /// This process has answered `/healthz`: its exit is a crash, not a failed start.
    answered: bool,
}

impl Life {
    /// How the child ended, when it has.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

/// A process that ended by itself, taken out of its `Life`, to be reported once the lock is
/// released (reporting reads its log).
struct Ended {
    status: ExitStatus,
    answered: bool,
}

pub struct Instance {
    pub index: usize,
    pub port: u16,
    pub log: PathBuf,
    life: Mutex<Life>,
    /// Bumped on every kill, stop and continue: a call that saw it move was interrupted by
    /// the harness, not answered late by the product.
    pub interruptions: AtomicU64,
    stopped: Mutex<bool>,
    /// Answered `/healthz` since it was last started, and not killed since.
    up: AtomicBool,
    /// One start at a time: two would race for the port and orphan a process.
    pub(crate) starting: tokio::sync::Mutex<()>,
    pub in_flight: AtomicU64,
    /// Variables of this instance only (the healer's longer deadline, a skewed clock).
    pub(crate) extra: Vec<(String, String)>,
    /// Exits after the process had answered `/healthz`: each a violation of invariant 5.
    pub crashes: Mutex<Vec<String>>,
    /// Exits before it ever answered (say, its port taken meanwhile): the harness's trouble.
    pub failed_starts: AtomicU64,
    since: Instant,
}

/// How a process that ended by itself is reported.
pub enum Exit {
    Crash,
    FailedStart,
}

impl Instance {
    pub fn new(
        index: usize,
        port: u16,
        log: PathBuf,
        extra: Vec<(String, String)>,
        since: Instant,
    ) -> Instance {
        Instance {
            index,
            port,
            log,
            life: Mutex::new(Life::default()),
            interruptions: AtomicU64::new(0),
            stopped: Mutex::new(false),
            up: AtomicBool::new(false),
            starting: tokio::sync::Mutex::new(()),
            in_flight: AtomicU64::new(0),
            extra,
            crashes: Mutex::new(Vec::new()),
            failed_starts: AtomicU64::new(0),
            since,
        }
    }

    fn life(&self) -> std::sync::MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

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
        self.running_pid().is_some()
    }

    /// How the process ended, when it ended without the harness killing it.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.life().exited()
    }

    /// Dead, and nobody is bringing it back: it ended by itself (recorded here, once), or a
    /// start failed to spawn it. The supervisor starts such an instance again.
    pub fn orphaned(&self) -> Option<Exit> {
        let ended = {
            let mut life = self.life();
            match self.take_ended(&mut life) {
                Some(ended) => ended,
                None if life.child.is_none() && !life.held_down => return Some(Exit::FailedStart),
                None => return None,
            }
        };
        Some(self.report(ended))
    }

    /// Takes a child that ended by itself out of `life`; the caller holds the lock.
    fn take_ended(&self, life: &mut Life) -> Option<Ended> {
        let status = life.exited()?;
        life.child = None;
        self.up.store(false, Ordering::SeqCst);
        Some(Ended {
            status,
            answered: life.answered,
        })
    }

    /// Records how a process ended by itself, with the end of its log.
    fn report(&self, Ended { status, answered }: Ended) -> Exit {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n    ");
        let at = self.since.elapsed().as_secs_f64();
        let n = self.index + 1;
        if answered {
            let crash = format!(
                "instance {n} exited by itself ({status}) at {at:.1} s; its log ended:\n    {tail}"
            );
            eprintln!("{crash}");
            self.crashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(crash);
            Exit::Crash
        } else {
            eprintln!("instance {n} ended before it answered ({status}) at {at:.1} s:\n    {tail}");
            self.failed_starts.fetch_add(1, Ordering::SeqCst);
            Exit::FailedStart
        }
    }

    /// Puts `child` in place of whatever ran before, whose own end, if it ended by itself
    /// unnoticed, is recorded first.
    pub(crate) fn install(&self, child: Child) {
        let ended = {
            let mut life = self.life();
            let ended = self.take_ended(&mut life);
            life.child = Some(child);
            life.held_down = false;
            life.answered = false;
            ended
        };
        if let Some(ended) = ended {
            self.report(ended);
        }
    }

    /// The pid of the running process, to tie a `/healthz` answer to it.
    pub(crate) fn running_pid(&self) -> Option<u32> {
        let mut life = self.life();
        let c = life.child.as_mut()?;
        matches!(c.try_wait(), Ok(None)).then(|| c.id())
    }

    /// Killed by the harness since it was last started: the kill's restart brings it back.
    pub(crate) fn held_down(&self) -> bool {
        self.life().held_down
    }

    /// `/healthz` answered while `pid` ran: up, unless the harness killed it meanwhile.
    pub(crate) fn answered(&self, pid: u32) {
        let mut life = self.life();
        if life.child.as_ref().is_some_and(|c| c.id() == pid) {
            life.answered = true;
            self.up.store(true, Ordering::SeqCst);
        }
    }

    fn signal(&self, sig: i32) -> bool {
        match self.running_pid() {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            Some(pid) => unsafe { libc::kill(pid as i32, sig) == 0 },
            None => false,
        }
    }

    /// SIGKILL, as a platform reclaims an instance mid-call; reaped at once.
    pub fn kill(&self) {
        let ended = {
            let mut life = self.life();
            self.interruptions.fetch_add(1, Ordering::SeqCst);
            self.up.store(false, Ordering::SeqCst);
            // Dead before the harness came: its own end, reported as such.
            let ended = self.take_ended(&mut life);
            if let Some(mut c) = life.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            life.held_down = true;
            life.answered = false;
            ended
        };
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = false;
        if let Some(ended) = ended {
            self.report(ended);
        }
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
