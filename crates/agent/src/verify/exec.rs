//! Runs one verify command: `sh -c <command>` in its own process group, stdin closed, stdout
//! and stderr read together into a bounded tail (constant memory whatever the command prints),
//! killed (SIGTERM, SIGKILL [`KILL_GRACE`] later) at its timeout or when the run is stopped.

use crate::process::{GroupGuard, signal_group};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// After SIGTERM to the command's process group, SIGKILL follows this much later.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the command exits, how long its pipes may stay open (a background grandchild).
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What to run and within which limits.
#[derive(Debug, Clone)]
pub struct StepCommand<'a> {
    pub command: &'a str,
    pub cwd: &'a Path,
    /// Variables set on top of the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    /// Variables removed from the inherited environment (secrets).
    pub env_remove: Vec<OsString>,
    pub timeout: Duration,
    /// Bytes of output kept (the tail).
    pub cap: usize,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutput<S> {
    pub exit_code: Option<i64>,
    pub signal: Option<i32>,
    /// Killed at its timeout.
    pub timed_out: bool,
    /// Killed because the run was stopped (the value `stop` resolved with).
    pub stopped: Option<S>,
    pub duration: Duration,
    /// Bytes read from stdout and stderr together.
    pub output_bytes: u64,
    /// The last `cap` bytes of output.
    pub tail: Vec<u8>,
}

impl<S> StepOutput<S> {
    pub fn truncated(&self) -> bool {
        self.output_bytes > self.tail.len() as u64
    }

    pub fn passed(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && self.stopped.is_none()
    }
}

/// A byte ring keeping the last `cap` bytes.
#[derive(Debug)]
pub struct Tail {
    cap: usize,
    buf: VecDeque<u8>,
    total: u64,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Tail {
            cap,
            buf: VecDeque::with_capacity(cap.min(64 * 1024)),
            total: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if chunk.len() >= self.cap {
            self.buf.clear();
            self.buf.extend(&chunk[chunk.len() - self.cap..]);
            return;
        }
        let excess = (self.buf.len() + chunk.len()).saturating_sub(self.cap);
        self.buf.drain(..excess);
        self.buf.extend(chunk);
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf.into()
    }
}

/// Runs `step`; `stop` resolving (a cancel or the run deadline) kills it like a timeout does.
/// `Err` only when the shell cannot be started.
pub async fn run_step<S>(
    step: &StepCommand<'_>,
    stop: impl Future<Output = S>,
) -> std::io::Result<StepOutput<S>> {
    let started = Instant::now();
    let mut command =
        crate::confine::command("/bin/sh".into(), vec!["-c".into(), step.command.into()]);
    command
        .current_dir(step.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for k in &step.env_remove {
        command.env_remove(k);
    }
    for (k, v) in &step.env {
        command.env(k, v);
    }
    let mut child = crate::process::spawn_registered(&mut command)?;
    drop(command);
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let _registered = Registered(child.id());
    let mut guard = GroupGuard(pgid);
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other("the command's pipes are missing"));
    };

    let mut tail = Tail::new(step.cap.max(1));
    let mut out_buf = vec![0u8; 64 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];
    let (mut out_open, mut err_open) = (true, true);
    let mut status = None;
    let mut timed_out = false;
    let mut stopped: Option<S> = None;
    let mut kill_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    let timeout_at = started + step.timeout;
    let far = || Instant::now() + Duration::from_secs(86_400 * 365);
    tokio::pin!(stop);

    while out_open || err_open || status.is_none() {
        let stopping = timed_out || stopped.is_some();
        tokio::select! {
            r = out.read(&mut out_buf), if out_open => match r {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => tail.push(&out_buf[..n]),
            },
            r = err.read(&mut err_buf), if err_open => match r {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => tail.push(&err_buf[..n]),
            },
            st = child.wait(), if status.is_none() => {
                status = Some(st?);
                // Whatever the command left running in its group goes with it.
                signal_group(pgid, Signal::SIGKILL);
                guard.0 = None;
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
            _ = tokio::time::sleep_until(timeout_at), if !stopping && status.is_none() => {
                timed_out = true;
                signal_group(pgid, Signal::SIGTERM);
                kill_at = Some(Instant::now() + KILL_GRACE);
            }
            s = &mut stop, if !stopping && status.is_none() => {
                stopped = Some(s);
                signal_group(pgid, Signal::SIGTERM);
                kill_at = Some(Instant::now() + KILL_GRACE);
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(far)), if kill_at.is_some() && status.is_none() => {
                signal_group(pgid, Signal::SIGKILL);
                kill_at = None;
            }
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(far)), if drain_until.is_some() && (out_open || err_open) => {
                tracing::warn!(command = step.command, "the verify command's output stayed open after it exited; stopped reading");
                out_open = false;
                err_open = false;
            }
        }
    }
    let status = status.ok_or_else(|| std::io::Error::other("the command's status is missing"))?;
    Ok(StepOutput {
        exit_code: status.code().map(i64::from),
        signal: status.signal(),
        timed_out,
        stopped,
        duration: started.elapsed(),
        output_bytes: tail.total(),
        tail: tail.into_bytes(),
    })
}

/// The tail as text: invalid UTF-8 replaced, a character cut at the start dropped.
pub fn tail_text(tail: &[u8], truncated: bool) -> String {
    let start = if truncated {
        tail.iter()
            .position(|b| (*b & 0xC0) != 0x80)
            .unwrap_or(tail.len())
    } else {
        0
    };
    String::from_utf8_lossy(&tail[start..]).into_owned()
}

/// Unregisters a child from the orphan reaper when dropped.
struct Registered(Option<u32>);

impl Drop for Registered {
    fn drop(&mut self) {
        crate::process::unregister_child(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step<'a>(command: &'a str, cwd: &'a Path, timeout_ms: u64, cap: usize) -> StepCommand<'a> {
        StepCommand {
            command,
            cwd,
            env: vec![("VERIFY_TEST".into(), "yes".into())],
            env_remove: vec!["SECRET_FOR_TEST".into()],
            timeout: Duration::from_millis(timeout_ms),
            cap,
        }
    }

    fn never() -> std::future::Pending<()> {
        std::future::pending()
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = Tail::new(5);
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(t.total(), 7);
        t.push(b"0123456789");
        assert_eq!(t.total(), 17);
        assert_eq!(t.into_bytes(), b"56789");
        assert_eq!(tail_text("é".as_bytes(), false), "é");
        assert_eq!(tail_text(&"é".as_bytes()[1..], true), "");
        assert_eq!(tail_text("aé".as_bytes(), true), "aé");
    }

    #[tokio::test]
    async fn exit_code_output_and_environment() {
        let d = tempfile::tempdir().unwrap();
        let out = run_step(
            &step(
                "echo out; echo err >&2; pwd; echo \"v=$VERIFY_TEST s=${SECRET_FOR_TEST:-unset}\"; exit 3",
                d.path(),
                10_000,
                4096,
            ),
            never(),
        )
        .await
        .unwrap();
        let text = tail_text(&out.tail, out.truncated());
        assert_eq!(out.exit_code, Some(3));
        assert!(!out.passed() && !out.timed_out && out.stopped.is_none());
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
        assert!(
            text.contains(&format!("{}\n", d.path().canonicalize().unwrap().display())),
            "{text}"
        );
        assert!(text.contains("v=yes s=unset"), "{text}");
        assert_eq!(out.output_bytes, text.len() as u64);
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_its_timeout() {
        let d = tempfile::tempdir().unwrap();
        // Ignores SIGTERM, so only the SIGKILL after the grace ends it; its background child
        // holding the pipe goes with the group.
        let out = run_step(
            &step(
                "trap '' TERM; echo started; sleep 600 & sleep 600",
                d.path(),
                300,
                4096,
            ),
            never(),
        )
        .await
        .unwrap();
        assert!(out.timed_out);
        assert_eq!(out.exit_code, None);
        assert_eq!(out.signal, Some(9));
        assert!(!out.passed());
        assert!(out.duration >= Duration::from_millis(300));
        assert!(out.duration < Duration::from_secs(30), "{:?}", out.duration);
        assert_eq!(tail_text(&out.tail, false), "started\n");
    }

    #[tokio::test]
    async fn a_stop_kills_the_command() {
        let d = tempfile::tempdir().unwrap();
        let stop = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            "cancelled"
        };
        let out = run_step(&step("sleep 600", d.path(), 60_000, 4096), stop)
            .await
            .unwrap();
        assert_eq!(out.stopped, Some("cancelled"));
        assert!(!out.timed_out);
        assert_eq!(out.signal, Some(15));
        assert!(!out.passed());
    }

    #[tokio::test]
    async fn a_flood_is_counted_but_only_the_tail_kept() {
        let d = tempfile::tempdir().unwrap();
        let out = run_step(
            &step(
                "head -c 20000000 /dev/zero | tr '\\0' x; echo; echo the-end",
                d.path(),
                60_000,
                1024,
            ),
            never(),
        )
        .await
        .unwrap();
        assert!(out.passed());
        assert_eq!(out.output_bytes, 20_000_000 + 1 + 8);
        assert_eq!(out.tail.len(), 1024);
        assert!(out.truncated());
        assert!(tail_text(&out.tail, true).ends_with("x\nthe-end\n"));
    }
}
