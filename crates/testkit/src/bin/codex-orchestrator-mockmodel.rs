//! The scripted mock of the model API as a process: what the tests run in a container on their
//! internal Docker network (see `codex_orchestrator_testkit::docker`).

use clap::Parser;

#[tokio::main]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    let args = codex_orchestrator_testkit::mockmodel::MockModelArgs::parse();
    if let Err(e) = codex_orchestrator_testkit::mockmodel::main(args).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
