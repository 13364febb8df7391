//! `codex-orchestrator-agent`: the in-sandbox agent as a small binary of its own, the runner
//! image's entrypoint. It carries only what runs inside a sandbox — the agent with its verify
//! loop (`agent`) and the clone of a git source (`fetch`, a Pod's init step) — and none of the
//! Docker, Kubernetes, MCP or HTTP code. The full `codex-orchestrator` binary offers the same
//! commands with the same flags.

use clap::{Parser, Subcommand};
use codex_orchestrator_core::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "codex-orchestrator-agent",
    version,
    about = "The in-sandbox agent of Codex Orchestrator"
)]
struct Cli {
    /// Log format on stderr: human or json.
    #[arg(
        long,
        global = true,
        default_value = "human",
        env = "CODEX_ORCHESTRATOR_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Default log level (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one task: reads a RunSpec, prints the JSONL stream on stdout.
    Agent(codex_orchestrator_agent::AgentArgs),
    /// Clone a git source into a directory (HTTP credentials from
    /// $CODEX_ORCHESTRATOR_GIT_USERNAME / $CODEX_ORCHESTRATOR_GIT_PASSWORD).
    Fetch(codex_orchestrator_agent::fetch::FetchArgs),
    /// Run a program confined by Landlock away from the given directories (how the agent
    /// starts codex and the verify commands in a sandbox).
    #[command(hide = true)]
    Confine(codex_orchestrator_agent::confine::ConfineArgs),
}

fn main() {
    let cli = Cli::parse();
    // Before anything starts a thread: restrict, then become the program.
    if let Command::Confine(a) = &cli.command {
        let e = codex_orchestrator_agent::confine::main(a.clone());
        eprintln!("error: {e}");
        std::process::exit(126);
    }
    telemetry::init(cli.log_format, &cli.log_level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Agent(a) => codex_orchestrator_agent::main(a)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Command::Fetch(a) => codex_orchestrator_agent::fetch::main(a)
                .await
                .map_err(|e| e.to_string()),
            Command::Confine(_) => Err("confine runs before the runtime starts".to_string()),
        }
    });
    drop(rt);
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
