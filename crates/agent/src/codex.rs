//! One codex invocation: spawn it in its own process group, pass its stdout through, relay
//! its stderr, and stop it on request or at the deadline.

use crate::process::{GroupGuard, signal_group};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use super::outcome::{ExitInfo, Stop};
use super::redact::Redactor;
use super::stream::Stream;
use super::{AgentError, StopHandle};
use codex_orchestrator_core::events::{LineDecoder, OrchestratorEvent};

/// After SIGTERM to codex's process group, SIGKILL follows this much later.
pub const KILL_GRACE: Duration = Duration::from_secs(3);
/// After codex exits, how long its stdout/stderr may take to reach EOF (a leftover grandchild
/// can hold the pipe open).
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Lines of codex's stderr kept for error messages.
pub const STDERR_TAIL_LINES: usize = 5;
/// Cap on one kept stderr line (characters).
const STDERR_LINE_CAP: usize = 1000;
/// stderr lines codex prints on every run; relayed, but kept out of error messages.
const STDERR_NOISE: &[&str] = &["Reading additional input from stdin..."];
/// Prefix of relayed stderr lines (keeps them from ever looking like stream JSON).
pub const STDERR_PREFIX: &str = "[codex] ";

/// How the agent runs codex: the binary, its arguments and environment.
#[derive(Debug, Clone)]
pub struct CodexCommand {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub cwd: std::path::PathBuf,
    /// Variables set for codex (on top of the agent's own environment).
    pub env: Vec<(OsString, OsString)>,
    /// Variables removed from codex's environment.
    pub env_remove: Vec<OsString>,
}

/// The deadline and the stop handle an attempt obeys.
#[derive(Debug, Clone)]
pub struct Limits {
    pub stop: StopHandle,
    pub deadline: Instant,
    pub deadline_secs: u64,
}

impl Limits {
    /// The stop that is due now, if any (already requested, or the deadline passed).
    pub fn due(&self) -> Option<Stop> {
        if let Some(reason) = self.stop.reason() {
            return Some(self.stop_of(reason));
        }
        (Instant::now() >= self.deadline).then_some(Stop::Timeout {
            deadline_secs: self.deadline_secs,
        })
    }

    fn stop_of(&self, reason: String) -> Stop {
        if self.stop.is_at_limit() {
            Stop::ResourceLimit { message: reason }
        } else {
            Stop::Cancelled { reason }
        }
    }

    /// Resolves when a stop is requested or the deadline passes.
    pub async fn wait(&self) -> Stop {
        tokio::select! {
            reason = self.stop.stopped() => self.stop_of(reason),
            _ = tokio::time::sleep_until(self.deadline) => Stop::Timeout { deadline_secs: self.deadline_secs },
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    pub exit: ExitInfo,
    /// Set when the agent stopped codex itself.
    pub stop: Option<Stop>,
    /// The last non-empty stderr lines (redacted).
    pub stderr_tail: Vec<String>,
}

/// Spawns codex, streams it through `stream` and waits for it; stops it (SIGTERM to its
/// process group, SIGKILL after [`KILL_GRACE`]) when `limits` say so, emitting
/// `orchestrator.run.cancelled` at that moment. Returns `Err(AgentError::Spawn)` when codex
/// cannot be started, and `Err(AgentError::Output)` when our stdout fails.
pub async fn run_attempt<W: AsyncWrite + Unpin>(
    cmd: &CodexCommand,
    stream: &mut Stream<W>,
    limits: &Limits,
) -> Result<AttemptEnd, AgentError> {
    let mut command = crate::confine::command(cmd.program.clone(), cmd.args.clone());
    command
        .current_dir(&cmd.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in &cmd.env {
        command.env(k, v);
    }
    for k in &cmd.env_remove {
        command.env_remove(k);
    }
    let mut child =
        crate::process::spawn_registered(&mut command).map_err(|source| AgentError::Spawn {
            program: Path::new(&cmd.program).to_path_buf(),
            source,
        })?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    tracing::info!(pid = ?child.id(), "codex started");
    // If we leave early (our stdout failed), codex's whole group goes down with us.
    let mut guard = GroupGuard(pgid);
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(AgentError::Internal("codex pipes missing".into()));
    };
    let stderr_task = tokio::spawn(relay_stderr(stderr, stream.redactor.clone()));

    // Read up to CODEX_READ_CAP so that a command item carrying a long output can be cut to
    // the stream's line cap instead of being dropped whole (crate::stream).
    let mut decoder = LineDecoder::new(crate::stream::CODEX_READ_CAP);
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdout_open = true;
    let mut status: Option<ExitStatus> = None;
    let mut stop: Option<Stop> = None;
    let mut kill_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    let far = || Instant::now() + Duration::from_secs(86_400 * 365);

    while stdout_open || status.is_none() {
        // Not `biased`: a flood of output must not starve the stop and exit branches.
        tokio::select! {
            r = stdout.read(&mut buf), if stdout_open => {
                match r {
                    Ok(0) | Err(_) => {
                        stdout_open = false;
                        decoder.finish(|d| stream.queue_codex(d));
                    }
                    Ok(n) => decoder.push(&buf[..n], |d| stream.queue_codex(d)),
                }
                stream.flush_codex().await?;
            }
            st = child.wait(), if status.is_none() => {
                let st = st.map_err(|e| AgentError::Internal(format!("waiting for codex: {e}")))?;
                tracing::info!(status = %st, "codex exited");
                status = Some(st);
                // Leftover members of codex's group (background commands) go with it.
                signal_group(pgid, Signal::SIGKILL);
                guard.0 = None;
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
            s = limits.wait(), if stop.is_none() && status.is_none() => {
                let reason = s.event_reason();
                tracing::info!(%reason, "stopping codex");
                signal_group(pgid, Signal::SIGTERM);
                kill_at = Some(Instant::now() + KILL_GRACE);
                stop = Some(s);
                stream.emit(&OrchestratorEvent::RunCancelled { reason }).await?;
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(far)), if kill_at.is_some() && status.is_none() => {
                tracing::warn!("codex still alive {KILL_GRACE:?} after SIGTERM; sending SIGKILL");
                signal_group(pgid, Signal::SIGKILL);
                kill_at = None;
            }
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(far)), if drain_until.is_some() && stdout_open => {
                tracing::warn!("codex's stdout stayed open after it exited; stopped reading");
                stdout_open = false;
                decoder.finish(|d| stream.queue_codex(d));
                stream.flush_codex().await?;
            }
        }
    }

    crate::process::unregister_child(pgid.map(|p| p.as_raw() as u32));
    let stderr_tail = match tokio::time::timeout(DRAIN_GRACE, stderr_task).await {
        Ok(Ok(tail)) => tail,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "stderr relay failed");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("codex's stderr stayed open after it exited; stopped relaying");
            Vec::new()
        }
    };
    let exit = status
        .map(|s| ExitInfo {
            code: s.code().map(i64::from),
            signal: s.signal(),
        })
        .unwrap_or_default();
    Ok(AttemptEnd {
        exit,
        stop,
        stderr_tail,
    })
}

/// Copies codex's stderr to ours line by line (prefixed, secrets redacted) and returns the
/// last non-empty lines.
async fn relay_stderr(mut r: impl AsyncRead + Unpin, redactor: Redactor) -> Vec<String> {
    use std::io::Write;
    let mut tail: VecDeque<String> = VecDeque::with_capacity(STDERR_TAIL_LINES);
    let mut partial: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let emit = |line: &[u8], tail: &mut VecDeque<String>| {
        let text = String::from_utf8_lossy(line);
        let text = redactor.redact(text.trim_end_matches('\r'));
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{STDERR_PREFIX}{text}");
        if !text.trim().is_empty() && !STDERR_NOISE.contains(&text.trim()) {
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text.chars().take(STDERR_LINE_CAP).collect());
        }
    };
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while let Some(nl) = chunk.iter().position(|b| *b == b'\n') {
            partial.extend_from_slice(&chunk[..nl]);
            emit(&partial, &mut tail);
            partial.clear();
            chunk = &chunk[nl + 1..];
        }
        // Keep at most a bounded piece of an endless line.
        let room = (64 * 1024usize).saturating_sub(partial.len());
        partial.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    if !partial.is_empty() {
        emit(&partial, &mut tail);
    }
    tail.into_iter().collect()
}
