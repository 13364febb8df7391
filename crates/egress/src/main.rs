//! `codex-orchestrator-egress proxy`: the egress proxy as a small binary of its own, for the
//! runner image (the proxy container of a Docker run). The full `codex-orchestrator` binary
//! offers the same `proxy` command.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "codex-orchestrator-egress",
    version,
    about = "The per-run egress proxy of Codex Orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Forward only the model API, check the run's token and inject the real API key
    /// (settings from the environment).
    Proxy(codex_orchestrator_egress::ProxyArgs),
    /// The setup proxy: tunnel HTTPS (CONNECT) to the allowed hosts only (allowlist from the
    /// environment), one JSON line per decision on stdout.
    ConnectProxy(codex_orchestrator_egress::connect::ConnectProxyArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    let done = match cli.command {
        Command::Proxy(args) => codex_orchestrator_egress::main(args).await,
        Command::ConnectProxy(args) => codex_orchestrator_egress::connect::main(args).await,
    };
    if let Err(e) = done {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
