//! Command-line interface: `codex-orchestrator <command>`. Each command is a thin shell over
//! the library; logs go to stderr, machine-readable output to stdout.

use crate::run::{audited_cancel, exit_code_for};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use codex_orchestrator_core::model::{RunId, RunPhase, SecurityMode};
use codex_orchestrator_runner::config::{Config, Overrides};
use codex_orchestrator_runner::docker::DockerRunner;
use codex_orchestrator_runner::{ListFilter, Runner};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// Compact human-readable lines.
    #[default]
    Human,
    /// One JSON object per line, with the current span's fields (e.g. `run_id`).
    Json,
}

impl From<LogFormat> for codex_orchestrator_core::telemetry::LogFormat {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Human => codex_orchestrator_core::telemetry::LogFormat::Human,
            LogFormat::Json => codex_orchestrator_core::telemetry::LogFormat::Json,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "codex-orchestrator",
    version,
    about = "Run the OpenAI Codex CLI in hardened per-run sandboxes and get structured, verified results"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "CODEX_ORCHESTRATOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Default log level (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// Config file (TOML). Default: $XDG_CONFIG_HOME/codex-orchestrator/config.toml if present.
    #[arg(long, global = true, env = "CODEX_ORCHESTRATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where run directories live. Default: $XDG_STATE_HOME/codex-orchestrator.
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one task in a sandbox with a live progress line, then print a summary.
    Run(Box<crate::run::RunArgs>),
    /// Inspect and manage stored runs.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// Work with JSONL event logs.
    #[command(subcommand)]
    Events(EventsCmd),
    /// The in-sandbox agent (the runner image's entrypoint). Reads a RunSpec, prints JSONL.
    Agent(codex_orchestrator_agent::AgentArgs),
    /// The per-run egress proxy (runs in its own container next to a sandbox): forwards only
    /// the model API, checks the run's token and injects the real API key.
    #[command(hide = true)]
    Proxy(codex_orchestrator_egress::ProxyArgs),
    /// The setup proxy (docs/ENVIRONMENTS.md): tunnels HTTPS (CONNECT) to the allowed hosts
    /// only; with a run key, only for a run's setup token.
    #[command(hide = true)]
    ConnectProxy(codex_orchestrator_egress::connect::ConnectProxyArgs),
    /// Build or inspect the runner image.
    Image(crate::image::ImageArgs),
    /// Serve the MCP tools (codex_run, codex_run_status, …) over stdio for an MCP client
    /// (or over streamable HTTP with --http; no authentication, loopback only by default).
    Mcp(McpArgs),
    /// Serve the MCP tools over streamable HTTP for many users: bearer tokens, one tenant per
    /// token, health and metrics endpoints; runs on Kubernetes (CodexRuns) or Docker.
    Gateway(Box<crate::gateway::GatewayArgs>),
    /// Print the CodexRun CustomResourceDefinition (YAML) for `kubectl apply -f -`.
    Crd,
    /// Run the Kubernetes controller that reconciles CodexRun objects into Pods.
    Controller(crate::controller::ControllerArgs),
    /// Clone a git source into a directory (the Pod's init step; HTTP credentials from
    /// $CODEX_ORCHESTRATOR_GIT_USERNAME / $CODEX_ORCHESTRATOR_GIT_PASSWORD).
    Fetch(codex_orchestrator_agent::fetch::FetchArgs),
}

#[derive(Debug, Args)]
pub struct McpArgs {
    /// A directory clients may use as a workspace (repeatable; subdirectories included).
    /// The first one is the default workspace. Default: the current directory.
    #[arg(long = "allowed-root", value_name = "DIR")]
    pub allowed_roots: Vec<PathBuf>,
    /// Allow runs in `full_access` mode (open network).
    #[arg(long)]
    pub allow_full_access: bool,
    /// Security mode of a `codex_run` that names none (readonly | workspace_write |
    /// full_access).
    #[arg(long, default_value = "workspace_write")]
    pub default_mode: SecurityMode,
    /// Longest time, in seconds, a `codex_run` call with `wait: true` blocks.
    #[arg(long, value_name = "SECS", default_value_t = codex_orchestrator_server::mcp::DEFAULT_MAX_WAIT.as_secs())]
    pub max_wait: u64,
    /// Serve streamable HTTP on this address (endpoint /mcp, health check /healthz) instead
    /// of stdio. There is NO authentication: keep it on loopback (e.g. 127.0.0.1:8765); put an
    /// authenticating gateway in front for anything else.
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<std::net::SocketAddr>,
    /// With --http: allow a non-loopback address (only behind an authenticating gateway).
    #[arg(long, requires = "http")]
    pub allow_remote: bool,
    /// Who approves a patch apply (`codex_patch_apply`) and a full_access run: auto (ask the
    /// user through the MCP client where it can — elicitation — otherwise the model-set flag
    /// approve / confirm_full_access is enough), human (always the user; refused when the
    /// client cannot ask), client (the model-set flag is enough; nobody is asked).
    #[arg(long, value_name = "POLICY", default_value = "auto")]
    pub approval: codex_orchestrator_server::mcp::ApprovalPolicy,
}

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Recent runs, newest first.
    List {
        #[arg(long)]
        phase: Option<RunPhase>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// A run's status, result and artifact paths as JSON.
    Show { id: RunId },
    /// Wait for a run to finish (re-attaching to it if needed) and print its status as JSON.
    Wait {
        id: RunId,
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Cancel a run (idempotent).
    Cancel { id: RunId },
    /// Print a page of a run's events as JSONL.
    Events {
        id: RunId,
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Fold a `codex exec --json` log (or an agent stream) and print status and result as JSON.
    Summarize {
        /// File to read, or `-` for stdin.
        file: String,
        /// codex's exit code, if known (improves the verdict for logs without a terminal event).
        #[arg(long)]
        exit_code: Option<i64>,
    },
}

/// A CLI failure: the message is printed as `error: …`; the code is the process exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    pub(crate) fn new(code: i32, m: impl std::fmt::Display) -> Self {
        CliError {
            message: m.to_string(),
            code,
        }
    }
}

impl From<codex_orchestrator_runner::error::RunnerError> for CliError {
    fn from(e: codex_orchestrator_runner::error::RunnerError) -> Self {
        let code = if matches!(
            e,
            codex_orchestrator_runner::error::RunnerError::InvalidRequest(_)
        ) {
            2
        } else {
            1
        };
        CliError::new(code, e)
    }
}

pub(crate) fn load_config(cli: &Cli, ov: Overrides) -> Result<Config, CliError> {
    let ov = Overrides {
        state_dir: cli.state_dir.clone(),
        ..ov
    };
    Config::load(cli.config.as_deref(), &ov).map_err(|e| CliError::new(2, e))
}

/// Runs the parsed command; returns the process exit code.
pub async fn dispatch(cli: Cli) -> Result<i32, CliError> {
    match &cli.command {
        Command::Run(a) => crate::run::run_cmd(&cli, a).await,
        Command::Runs(c) => runs_cmd(&cli, c).await,
        Command::Events(EventsCmd::Summarize { file, exit_code }) => {
            let summary = if file == "-" {
                codex_orchestrator_core::events::summarize(std::io::stdin().lock(), *exit_code)
            } else {
                let f = std::fs::File::open(file)
                    .map_err(|e| CliError::new(2, format!("cannot open {file}: {e}")))?;
                codex_orchestrator_core::events::summarize(std::io::BufReader::new(f), *exit_code)
            }
            .map_err(|e| CliError::new(1, format!("reading {file}: {e}")))?;
            print_json(&summary)?;
            Ok(0)
        }
        Command::Agent(a) => codex_orchestrator_agent::main(a.clone())
            .await
            .map(|_| 0)
            .map_err(|e| CliError::new(1, e)),
        Command::Proxy(a) => codex_orchestrator_egress::main(a.clone())
            .await
            .map(|_| 0)
            .map_err(|e| CliError::new(1, e)),
        Command::ConnectProxy(a) => codex_orchestrator_egress::connect::main(a.clone())
            .await
            .map(|_| 0)
            .map_err(|e| CliError::new(1, e)),
        Command::Image(a) => crate::image::run_cli(a.clone())
            .await
            .map(|_| 0)
            .map_err(|e| CliError::new(1, e)),
        Command::Mcp(a) => {
            let cfg = load_config(
                &cli,
                Overrides {
                    allow_full_access: a.allow_full_access.then_some(true),
                    ..Default::default()
                },
            )?;
            let roots = if a.allowed_roots.is_empty() {
                vec![std::env::current_dir().map_err(|e| CliError::new(2, e))?]
            } else {
                a.allowed_roots.clone()
            };
            let mcp = codex_orchestrator_server::mcp::McpConfig {
                allowed_roots: roots,
                default_workspace: None,
                max_wait: Duration::from_secs(a.max_wait),
                default_mode: a.default_mode,
                client_roots: Default::default(),
                protected: cfg.protected_dirs(),
                approval: a.approval,
            }
            .resolve()
            .map_err(|e| CliError::new(2, e))?;
            match a.http {
                Some(addr) => crate::mcp::http(cfg, mcp, addr, a.allow_remote).await,
                None => crate::mcp::stdio(cfg, mcp).await,
            }
            .map(|_| 0)
            .map_err(|e| CliError::new(1, e))
        }
        Command::Gateway(a) => {
            let cfg = load_config(
                &cli,
                Overrides {
                    allow_full_access: a.allow_full_access.then_some(true),
                    ..Default::default()
                },
            )?;
            crate::gateway::main(cfg, (**a).clone())
                .await
                .map(|_| 0)
                .map_err(|e| CliError::new(1, e))
        }
        Command::Crd => {
            let yaml = codex_orchestrator_kube::crd::crd_yaml().map_err(|e| CliError::new(1, e))?;
            print!("{yaml}");
            Ok(0)
        }
        Command::Controller(a) => crate::controller::main(a.clone())
            .await
            .map(|_| 0)
            .map_err(|e| CliError::new(1, e)),
        Command::Fetch(a) => codex_orchestrator_agent::fetch::main(a.clone())
            .await
            .map(|_| 0)
            .map_err(|e| CliError::new(1, e)),
    }
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::new(1, e))?;
    println!("{s}");
    Ok(())
}

/// One line of `runs list` (pure): id, phase, mode, workspace, and for best of N which
/// attempt of which parent, or how many attempts.
fn list_line(r: &codex_orchestrator_core::model::RunStatus) -> String {
    // Padded as text: the phase's and mode's Display ignore width.
    let mut line = format!(
        "{}  {:<10} {:<16} {}",
        r.run_id,
        r.phase.to_string(),
        r.mode.to_string(),
        r.workspace.display()
    );
    if let Some(a) = &r.attempt_of {
        line.push_str(&format!(
            "  (attempt {} of {} of {})",
            a.attempt, a.of, a.parent
        ));
    } else if !r.attempts.is_empty() {
        line.push_str(&format!("  (best of {})", r.attempts.len()));
    }
    line
}

async fn runs_cmd(cli: &Cli, c: &RunsCmd) -> Result<i32, CliError> {
    let cfg = load_config(cli, Overrides::default())?;
    let runner = DockerRunner::connect(cfg).await?;
    match c {
        RunsCmd::List { phase, limit, json } => {
            let runs = runner
                .list(ListFilter {
                    phase: *phase,
                    workspace: None,
                    limit: *limit,
                })
                .await?;
            if *json {
                print_json(&runs)?;
            } else {
                for r in runs {
                    println!("{}", list_line(&r));
                }
            }
            Ok(0)
        }
        RunsCmd::Show { id } => {
            print_json(&runner.artifacts(id).await?)?;
            Ok(0)
        }
        RunsCmd::Wait { id, timeout } => {
            let st = runner.wait(id, Duration::from_secs(*timeout)).await?;
            print_json(&st)?;
            Ok(exit_code_for(st.phase))
        }
        RunsCmd::Cancel { id } => {
            print_json(&audited_cancel(&runner, id).await?)?;
            Ok(0)
        }
        RunsCmd::Events { id, from, limit } => {
            let page = runner.events(id, *from, *limit).await?;
            for e in &page.events {
                println!("{e}");
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_orchestrator_core::model::{AttemptOf, AttemptState, RunId, RunStatus, SecurityMode};

    #[test]
    fn runs_list_names_attempts_and_their_parent() {
        let parent_id = RunId::parse("20261130061500-0a1b2c3d").unwrap();
        let child_id = RunId::parse("20261130061500-1a2b3c4d").unwrap();
        let mut child =
            RunStatus::new_queued(child_id.clone(), SecurityMode::Readonly, "/w".into());
        child.attempt_of = Some(AttemptOf {
            parent: parent_id.clone(),
            attempt: 2,
            of: 3,
        });
        let mut parent =
            RunStatus::new_queued(parent_id, SecurityMode::WorkspaceWrite, "/w".into());
        parent.attempts = vec![AttemptState::of(2, &child); 3];
        assert_eq!(
            list_line(&child),
            "20261130061500-1a2b3c4d  queued     readonly         /w  (attempt 2 of 3 of 20261130061500-0a1b2c3d)"
        );
        assert_eq!(
            list_line(&parent),
            "20261130061500-0a1b2c3d  queued     workspace_write  /w  (best of 3)"
        );
    }
}
